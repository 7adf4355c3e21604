"""Scoring a model on a loader: loss, accuracy and predictions; and timing its inference."""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence

import mxnet as mx
import numpy as onp
from mxnet import gluon

from densenet.data.batches import BatchLoader
from densenet.system.files import pyplot, save_figure
from densenet.system.hints import Array


def evaluate(model: Callable[[Array], Array], loader: Iterable[tuple[Array, Array]],
             ctxs: Sequence[mx.Context]) -> tuple[float, float, onp.ndarray]:
    """The mean loss, accuracy and predictions of `model` over `loader`, in inference mode.

    Args:
        model: anything called on a batch that returns logits: a DenseNet, a
            `densenet.models.tta.FlipAverage`, or any `densenet.deploy.Predictor`
            (every engine and precision).
        loader: batches of (images, labels).
        ctxs: the devices; each batch is split over them.

    Returns:
        (mean loss, accuracy, predictions).
    """
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    total_loss, correct, n, preds = 0.0, 0, 0, []
    for X, y in loader:
        Xs = gluon.utils.split_and_load(X, ctxs, even_split=False)
        ys = gluon.utils.split_and_load(y, ctxs, even_split=False)
        for Xi, yi in zip(Xs, ys, strict=True):
            Y_hat = model(Xi)
            total_loss += float(loss_fn(Y_hat, yi).sum())
            p = Y_hat.argmax(axis=1).astype('int32')
            correct += int((p == yi).sum())
            n += yi.shape[0]
            preds.append(p.asnumpy())
    return total_loss / n, correct / n, onp.concatenate(preds)


def time_inference(model: Callable[[Array], Array], loader: BatchLoader,
                   ctxs: Sequence[mx.Context], side: int | None = None) -> float:
    """Seconds per inference batch: the best of two, timed after one batch that builds
    the graph.

    Args:
        model: called on a batch, returns logits.
        loader: the batches.
        ctxs: the devices.
        side: resize the batches to `side` x `side` first (None: as they are).

    Returns:
        The seconds per batch.
    """
    resize = loader.resize
    loader.resize = (side, side) if side else resize
    try:
        times = []
        for X, _ in itertools.islice(loader, 3):
            tic = time.time()
            model(X.as_in_context(ctxs[0])).wait_to_read()
            times.append(time.time() - tic)
    finally:
        loader.resize = resize
    return min(times[1:] or times)


def confusion_matrix(labels: onp.ndarray, preds: onp.ndarray, num_classes: int) -> onp.ndarray:
    """Counts[i, j] of images of class i predicted as class j.

    Args:
        labels: the true classes.
        preds: the predicted classes.
        num_classes: the class count.

    Returns:
        The (num_classes, num_classes) matrix.
    """
    confusion = onp.zeros((num_classes, num_classes), dtype=onp.int64)
    onp.add.at(confusion, (onp.asarray(labels), onp.asarray(preds)), 1)
    return confusion


def plot_confusion(confusion: onp.ndarray, names: list[str], path: str) -> None:
    """Write the confusion matrix as a PNG, with the counts written in (up to 30 classes).

    Args:
        confusion: the matrix.
        names: the class names.
        path: the PNG file.
    """
    n = len(names)
    size = max(5.5, 0.45 * n + 2)
    fig, ax = pyplot().subplots(figsize=(size + 1, size), layout='tight')
    im = ax.imshow(confusion, cmap='Blues')
    ax.set_xticks(range(n), names, rotation=45, ha='right')
    ax.set_yticks(range(n), names)
    ax.set(xlabel='predicted', ylabel='true')
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, confusion[i, j], ha='center', va='center', fontsize=7,
                        color='white' if confusion[i, j] > confusion.max() / 2 else 'black')
    fig.colorbar(im)
    save_figure(fig, path)
