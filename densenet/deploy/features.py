"""Embeddings: the pooled features that enter a model's classifier, for a dataset's splits,
saved as one ``.npz`` file."""
from __future__ import annotations

from collections.abc import Sequence

import mxnet as mx
import numpy as onp

from densenet.data.batches import DataModule, unaugmented_train_loader
from densenet.data.image_folder import ImageFolder
from densenet.models.classifier import CheckedClassifier
from densenet.system.files import atomic_write


def extract_features(model: CheckedClassifier, data: DataModule, splits: Sequence[str],
                     ctxs: Sequence[mx.Context], classes: Sequence[str]) -> dict[str, onp.ndarray]:
    """The pooled features that enter the classifier, for the images of `splits`.

    Args:
        model: the trained model.
        data: the data module (an `ImageFolder`'s files are listed too).
        splits: 'train' and/or 'val', in order.
        ctxs: the devices.
        classes: the class names.

    Returns:
        {'features', 'labels', 'split', 'classes'[, 'paths']}, as arrays.
    """
    feats, labels, which = [], [], []
    for split in splits:
        for X, y in data.val_dataloader() if split == 'val' else unaugmented_train_loader(data):
            feats.append(model.forward_features(X.as_in_context(ctxs[0])).asnumpy())
            labels.append(y.asnumpy())
            which += [split] * len(y)
    arrays = {'features': onp.concatenate(feats), 'labels': onp.concatenate(labels),
              'split': onp.array(which), 'classes': onp.array([str(c) for c in classes])}
    if isinstance(data, ImageFolder):
        index = {'train': data.train_index, 'val': data.val_index}
        arrays['paths'] = onp.array([data.paths[i] for s in splits for i in index[s]])
    return arrays


def save_features(path: str, arrays: dict[str, onp.ndarray]) -> None:
    """Write `arrays` as the .npz file `path`, atomically.

    Args:
        path: the file.
        arrays: the arrays by name.

    Raises:
        DiskFull: the disk filled up.
    """
    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:  # a file object: savez would add .npz to a temporary name
            onp.savez(f, **arrays)
    atomic_write(path, write)
