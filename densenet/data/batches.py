"""Batches of decoded uint8 images, built a whole batch at a time (Fashion-MNIST and
image folders alike): the book's Resize + ToTensor, and the training augmentation."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as onp
from d2l import mxnet as d2l
from mxnet import np, npx

from densenet.errors import UsageError
from densenet.system.hints import Array

npx.set_np()


def resized(images: onp.ndarray, size: Sequence[int]) -> Array:
    """The book's Resize on a whole batch (bilinear, as Gluon's transforms.Resize).

    Args:
        images: uint8 (N, h, w) or (N, h, w, C).
        size: (height, width).

    Returns:
        uint8 (N, H, W, C), an MXNet array.
    """
    X = np.array(images[..., None] if images.ndim == 3 else images)
    return X if tuple(size) == X.shape[1:3] else npx.image.resize(X, tuple(size))


def to_tensor(images: onp.ndarray, resize: Sequence[int]) -> Array:
    """The book's Resize + ToTensor on a whole batch.

    Args:
        images: uint8 (N, h, w) or (N, h, w, C).
        resize: (height, width).

    Returns:
        float32 (N, C, H, W) in [0, 1].
    """
    return npx.image.to_tensor(resized(images, resize))


def training_part(n: int, limit: int | None = None,
                  shard: tuple[int, int] | None = None) -> slice:
    """The slice of `n` training images that `limit` and `shard` keep.

    Args:
        n: the number of training images.
        limit: keep the first N.
        shard: (i, count): the i-th of `count` equal contiguous parts; the remainder is
            dropped so that every worker takes the same steps.

    Returns:
        The slice.

    Raises:
        UsageError: a `limit` below 1, or too few images for the workers.
    """
    if limit is not None and limit < 1:
        raise UsageError(f'limit must be a positive number of images, got {limit}')
    stop = n if limit is None else min(n, limit)
    index, count = shard or (0, 1)
    size = stop // count
    if shard and size < 1:
        raise UsageError(f'{stop} training images cannot be split over {count} workers')
    return slice(index * size, (index + 1) * size)


def validation_part(n: int, limit: int | None = None) -> onp.ndarray:
    """Which of `n` validation images a run scores: all, or `limit` spread evenly over them.

    Evenly spaced, not the first ones, so that a split stored class by class (an image
    folder's) keeps every class in its share. `densenet train --val-limit N` and
    `densenet evaluate --limit N` pick the same images.

    Args:
        n: the number of validation images.
        limit: how many to keep (None: all).

    Returns:
        The sorted indices.

    Raises:
        UsageError: a `limit` below 1.
    """
    if limit is None or limit >= n:
        return onp.arange(n)
    if limit < 1:
        raise UsageError(f'the validation limit must be a positive number of images, got {limit}')
    return onp.unique(onp.linspace(0, n - 1, limit).round().astype(onp.int64))


def augment_batch(images: onp.ndarray, rng: onp.random.RandomState,
                  pad: int = 2) -> onp.ndarray:
    """Random horizontal flip and random shift by up to `pad` pixels (zero fill).

    Args:
        images: uint8 (N, H, W) or (N, H, W, C).
        rng: the random state.
        pad: the largest shift.

    Returns:
        The augmented images, a new array.
    """
    n, h, w = images.shape[:3]
    padded = onp.pad(images, [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 3))
    flip = rng.rand(n) < 0.5
    dy, dx = rng.randint(0, 2 * pad + 1, size=(2, n))
    out = onp.empty_like(images)
    for i in range(n):
        crop = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


def erase_boxes(n: int, h: int, w: int, rng: onp.random.RandomState, p: float,
                area: tuple[float, float] = (0.02, 0.4),
                aspect: tuple[float, float] = (0.3, 1 / 0.3),
                ) -> tuple[onp.ndarray, onp.ndarray, onp.ndarray, onp.ndarray]:
    """Random erasing's rectangles (Zhong et al., 2017) for `n` images of h x w.

    With probability `p` an image gets a box of a random share `area` of its
    pixels and a log-uniform aspect ratio (height over width), clipped to the
    image, at a random place.

    Args:
        n: the number of images.
        h: their height.
        w: their width.
        rng: the random state.
        p: the share of images that get a box.
        area: the range of the box's share of the pixels.
        aspect: the range of its height-to-width ratio.

    Returns:
        int arrays (top, left, height, width); height 0 where nothing is erased.
    """
    chosen = rng.rand(n) < p
    share = rng.uniform(area[0], area[1], n)
    ratio = onp.exp(rng.uniform(onp.log(aspect[0]), onp.log(aspect[1]), n))
    bh = onp.clip(onp.rint(onp.sqrt(share * h * w * ratio)), 1, h).astype(int)
    bw = onp.clip(onp.rint(onp.sqrt(share * h * w / ratio)), 1, w).astype(int)
    top = (rng.rand(n) * (h - bh + 1)).astype(int)
    left = (rng.rand(n) * (w - bw + 1)).astype(int)
    return top, left, onp.where(chosen, bh, 0), bw


def erase_batch(images: onp.ndarray, rng: onp.random.RandomState, p: float,
                ) -> tuple[onp.ndarray, tuple[onp.ndarray, ...]]:
    """Random erasing: each chosen box is filled with uniformly random pixel values.

    Args:
        images: uint8 (N, H, W) or (N, H, W, C).
        rng: the random state.
        p: the share of images that get a box (`erase_boxes`).

    Returns:
        (a new array, the boxes).
    """
    boxes = erase_boxes(len(images), images.shape[1], images.shape[2], rng, p)
    out = images.copy()
    for i, (t, left, bh, bw) in enumerate(zip(*boxes, strict=True)):
        if bh:
            out[i, t:t + bh, left:left + bw] = rng.randint(0, 256, size=(bh, bw) + images.shape[3:])
    return out, boxes


def training_min_last(batch_size: int) -> int:
    """The smallest last batch a training epoch takes: a quarter of a batch.

    A step on a handful of images normalises with BatchNorm statistics of those
    few and jolts the weights and the running statistics. The book's
    Fashion-MNIST epochs (batches of 128) keep every image.

    Args:
        batch_size: images per batch.

    Returns:
        The smallest size of a last batch that is kept.
    """
    return -(-batch_size // 4)


class Rows:
    """Rows `index` of an array (a memory map stays one: rows are read per batch).

    Args:
        array: the array or memory map.
        index: the rows.
    """

    def __init__(self, array: onp.ndarray, index: Sequence[int] | onp.ndarray) -> None:
        self.array, self.index = array, onp.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int | slice | onp.ndarray) -> onp.ndarray:
        return self.array[self.index[idx]]


class BatchLoader:
    """Batches of a decoded split, transformed a whole batch at a time.

    Values equal the book's per-sample ``transform_first(Resize, ToTensor)``
    pipeline; doing it per batch keeps Python out of the per-image loop. The
    shuffled order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run
    sees the same batches as an uninterrupted one.

    Args:
        images: uint8 images (N, H, W[, C]), or `Rows` of a memory map.
        labels: their labels.
        batch_size: images per batch.
        resize: (height, width).
        shuffle: a new order every epoch.
        seed: the order's and the augmentation's seed.
        augment: flip and shift the images.
        drop_last: leave out a last batch smaller than `batch_size`.
        pad: the largest shift of `augment`.
        erase: random erasing of this share of the images (`erase_batch`).
        min_last: a last batch of fewer images is left out (`training_min_last`).
    """

    def __init__(self, images: onp.ndarray | Rows, labels: onp.ndarray, batch_size: int,
                 resize: Sequence[int], shuffle: bool = False, seed: int = 0,
                 augment: bool = False, drop_last: bool = False, pad: int = 2,
                 erase: float = 0.0, min_last: int = 1) -> None:
        self.images, self.labels, self.batch_size, self.resize = images, labels, batch_size, resize
        self.shuffle, self.seed, self.augment, self.drop_last = shuffle, seed, augment, drop_last
        self.pad, self.erase, self.min_last, self.epoch = pad, erase, min_last, 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.labels), self.batch_size)
        if self.drop_last:
            return full
        # A split smaller than min_last is still one batch: an epoch always has a step.
        return full + (1 if rest and (rest >= self.min_last or not full) else 0)

    def set_epoch(self, epoch: int) -> None:
        """Continue at epoch `epoch` (a resumed run), so its batches are that epoch's.

        Args:
            epoch: the epoch index, from 0.
        """
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Array, Array]]:
        rng = onp.random.RandomState((self.seed * 100003 + self.epoch) % 2**32)
        self.epoch += 1
        n = len(self.labels)
        order = rng.permutation(n) if self.shuffle else onp.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.images[idx]
            if self.augment:
                images = augment_batch(images, rng, self.pad)
            if self.erase:
                images, _ = erase_batch(images, rng, self.erase)
            yield to_tensor(images, self.resize), np.array(self.labels[idx])


class ArrayDataModule(d2l.DataModule):
    """A d2l DataModule whose splits are arrays: what `FashionMNIST` and `ImageFolder`
    share. Their constructors save the hyperparameters (``batch_size``, ``seed``,
    ``augment``, ``erase``, ``shard``) and set ``train_arrays``, ``val_arrays`` and
    ``size``, the (height, width) the images are resized to.

    Attributes:
        pad: the largest shift of the training augmentation.
    """
    pad = 2

    def get_dataloader(self, train: bool) -> BatchLoader:
        """The training or validation batches.

        Args:
            train: the training split (shuffled, augmented and erased when asked, its last
                batch as `training_min_last` and, for a distributed worker, `drop_last`
                says) or the validation one.

        Returns:
            A `BatchLoader`.
        """
        images, labels = self.train_arrays if train else self.val_arrays
        return BatchLoader(images, labels, self.batch_size, self.size, shuffle=train,
                           seed=self.seed, augment=self.augment and train, pad=self.pad,
                           erase=self.erase if train else 0.0,
                           drop_last=train and self.shard is not None,
                           min_last=training_min_last(self.batch_size) if train else 1)


class DataModule(Protocol):
    """What every dataset (`FashionMNIST`, `ImageFolder`) gives training, evaluation and
    deployment.

    Attributes:
        name: the dataset's name in a run's metadata ('fashion-mnist', 'folder:NAME').
        classes: the class names, by label.
        channels: the images' channels, 1 or 3.
        side: the square side the images are resized to.
        batch_size: images per batch.
        train_arrays: the training split: uint8 images (or `Rows` of a memory map), labels.
        val_arrays: the validation split, the same way.
    """
    name: str
    classes: Sequence[str]
    channels: int
    side: int
    batch_size: int
    train_arrays: tuple[onp.ndarray | Rows, onp.ndarray]
    val_arrays: tuple[onp.ndarray | Rows, onp.ndarray]

    def train_dataloader(self) -> BatchLoader:
        """The training batches."""

    def val_dataloader(self) -> BatchLoader:
        """The validation batches."""


def unaugmented_train_loader(data: DataModule, shuffle: bool = False,
                             seed: int = 0) -> BatchLoader:
    """The training images of a data module without augmentation or erasing, at its side.

    Args:
        data: the data module.
        shuffle: draw the order from the loader's own generator (seeded by `seed`), so
            that no batch holds one class only; False keeps the stored order.
        seed: the order's seed.

    Returns:
        The `BatchLoader`.
    """
    return BatchLoader(*data.train_arrays, data.batch_size, (data.side, data.side),
                       shuffle=shuffle, seed=seed)
