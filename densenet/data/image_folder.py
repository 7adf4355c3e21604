"""Your own images: a folder with one sub-folder of PNG/JPEG files per class.

`ImageFolder` serves it as `densenet.data.FashionMNIST` serves Fashion-MNIST.
Every image is decoded once (in `num_workers` processes), converted to
grayscale or RGB, resized to the square training side as the book resizes
(bilinear), and kept in an uint8 ``.npy`` cache on disk that training reads
through a memory map: a folder larger than memory is never held in it, and
later runs at the same side start at once. A cache is keyed by every file's
path, size and modification time, so an edited folder is decoded again.

A file that cannot be decoded (not an image, damaged, or more pixels than
`densenet.data.images.max_image_pixels` allows) stops the decoding with its
one-line error, or with ``skip_bad_images`` is left out and counted.
"""
from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as onp
from PIL import Image

from densenet.data.batches import ArrayDataModule, Rows, resized, training_part, validation_part
from densenet.data.images import ImageError, is_grayscale, max_image_pixels, read_image
from densenet.data.inputs import as_fashion_mnist
from densenet.errors import UsageError
from densenet.system.files import atomic_text, atomic_write, user_cache

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')
CACHE_VERSION = 1
LAYOUT_HELP = ('an image folder holds one sub-folder of images per class (DIR/cat/1.png, '
               'DIR/dog/2.jpg, ...), or train/ and val/ folders laid out that way')


def _scan_classes(folder: str, what: str) -> tuple[list[str], list[tuple[str, int]], int]:
    """(class names, [(path, label)], ignored file count) of one class-per-folder tree."""
    classes = sorted(d for d in os.listdir(folder)
                     if not d.startswith('.') and os.path.isdir(os.path.join(folder, d)))
    if len(classes) < 2:
        raise UsageError(f'{what} {folder}: {len(classes)} class folder(s) '
                         f'({", ".join(classes) or "none"}); a classifier needs at least two. '
                         + LAYOUT_HELP[0].upper() + LAYOUT_HELP[1:])
    items, ignored = [], 0
    for label, name in enumerate(classes):
        paths = []  # the class folder's images, recursively, sorted; other files are counted
        for parent, dirs, files in os.walk(os.path.join(folder, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            names = sorted(n for n in files if not n.startswith('.'))
            paths += [os.path.join(parent, n) for n in names if n.lower().endswith(EXTENSIONS)]
            ignored += sum(not n.lower().endswith(EXTENSIONS) for n in names)
        if not paths:
            raise UsageError(f'{what} {folder}: class folder {name}/ has no images '
                             f'({", ".join(EXTENSIONS)}); add images or remove the folder')
        items += [(p, label) for p in paths]
    return classes, items, ignored


def scan(root: str, what: str = '--data') -> tuple[list[str], list[tuple[str, int]],
                                                   list[tuple[str, int]] | None, int]:
    """The classes and image files of an image folder.

    Args:
        root: the folder: one sub-folder per class, or train/ and val/ laid out so.
        what: how the folder is named in messages (the flag).

    Returns:
        (classes, train items, val items or None, count of ignored non-image files);
        an item is (path, class index).

    Raises:
        UsageError: no such folder, a file, fewer than two classes, a class without
            images, val/ without train/, or train/ and val/ with different classes.
    """
    if not os.path.isdir(root):
        problem = 'is a file, not a folder' if os.path.exists(root) else 'no such folder'
        raise UsageError(f'{what} {root}: {problem}; ' + LAYOUT_HELP)
    train, val = os.path.join(root, 'train'), os.path.join(root, 'val')
    if os.path.isdir(val) and not os.path.isdir(train):
        raise UsageError(f'{what} {root}: has val/ but no train/; add train/ with the same '
                         'class folders, or put the class folders in ' + root + ' itself')
    classes, items, ignored = _scan_classes(train if os.path.isdir(train) else root, what)
    if not os.path.isdir(val):
        return classes, items, None, ignored
    val_classes, val_items, val_ignored = _scan_classes(val, what)
    if val_classes != classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        raise UsageError(f'{what} {root}: train/ and val/ hold different classes (only in '
                         f'train/: {", ".join(only_train) or "-"}; only in val/: '
                         f'{", ".join(only_val) or "-"}); give both the same class folders')
    return classes, items, val_items, ignored + val_ignored


def check_folder(root: str, what: str = '--data') -> None:
    """Check that `root` is laid out as an image folder (nothing decoded).

    Args:
        root: the folder.
        what: how the folder is named in messages.

    Raises:
        UsageError: as `scan`.
    """
    scan(root, what)


def stratified_split(labels: onp.ndarray, val_share: float,
                     seed: int) -> tuple[onp.ndarray, onp.ndarray]:
    """Hold out a share of every class, chosen with a seed.

    Args:
        labels: the class index of every image.
        val_share: the share of each class to hold out (at least one image of a
            class with two or more).
        seed: the seed of the choice.

    Returns:
        (train indices, val indices).
    """
    rng = onp.random.RandomState(seed)
    held_out = onp.zeros(len(labels), bool)
    for c in onp.unique(labels):
        idx = rng.permutation(onp.flatnonzero(labels == c))
        k = min(max(int(round(len(idx) * val_share)), 1), len(idx) - 1)
        held_out[idx[:k]] = True
    return onp.flatnonzero(~held_out), onp.flatnonzero(held_out)


def _decode(path: str, channels: int, convert: bool) -> onp.ndarray | str:
    """One file as uint8 (H, W[, 3]) at its own size, or the error text (worker side): an
    unreadable file and one over the pixel limit alike."""
    try:  # convert: a Fashion-MNIST model's photos, made like its training images
        return (as_fashion_mnist(path) if convert else read_image(path, channels))[0]
    except ImageError as e:
        return str(e)


def _decoded(paths: Sequence[str], channels: int, num_workers: int | None,
             convert: bool = False) -> Iterator[onp.ndarray | str]:
    """The decoded files in order, from `num_workers` processes (0: this one; None: one per
    core)."""
    decode = functools.partial(_decode, channels=channels, convert=convert)
    if num_workers == 0:
        yield from map(decode, paths)
        return
    # Workers only run PIL; they are forked before any of them touches MXNet.
    with multiprocessing.get_context('fork').Pool(num_workers) as pool:
        yield from pool.imap(decode, paths, chunksize=16)


def default_cache_dir() -> str:
    """Where decoded folders are cached.

    Returns:
        ``image-folder`` in the user's cache folder (`densenet.system.files.user_cache`).
    """
    return user_cache('image-folder')


def _cache_key(paths: Sequence[str], side: int, channels: int, convert: bool = False) -> str:
    """The cache's name: every file's path, size and time, the side and channels, and the
    pixel limit when it is not PIL's default (it decides which files are unreadable)."""
    parts: list[int | str | None] = [CACHE_VERSION, side, channels]
    if convert:
        parts.append('fashion-mnist photos')
    limit = max_image_pixels()  # a bad DENSENET_MAX_IMAGE_PIXELS stops here, before decoding
    if limit != Image.MAX_IMAGE_PIXELS:
        parts.append(limit)
    h = hashlib.sha256(json.dumps(parts).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f'{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()[:24]


def decode_to_cache(paths: Sequence[str], side: int, channels: int,
                    cache_dir: str | None = None, num_workers: int | None = None,
                    skip_bad_images: bool = False,
                    log: Callable[[str], object] = print,
                    convert: bool = False) -> tuple[onp.ndarray, list[int]]:
    """Decode and resize every file once, into an on-disk cache.

    The cache is keyed by every file's path, size and modification time, the
    side and the channels, so a later run at that side opens it at once and an
    edited folder is decoded again.

    Args:
        paths: the image files.
        side: the square side to resize to.
        channels: 1 (grayscale) or 3 (RGB).
        cache_dir: the cache folder (default `default_cache_dir`).
        num_workers: decoding processes (default: one per core).
        skip_bad_images: leave unreadable files out instead of stopping.
        log: where notes go.
        convert: make each file a Fashion-MNIST image first
            (`densenet.data.inputs.as_fashion_mnist`: photos converted as the
            dataset's were); `channels` must be 1.

    Returns:
        (uint8 memmap (N, side, side[, 3]), indices of the unreadable files).

    Raises:
        UsageError: an unreadable file, unless `skip_bad_images` (nothing is cached then).
        DiskFull: the disk filled up while the cache was written (nothing is cached then).
    """
    cache_dir = cache_dir or default_cache_dir()
    key = _cache_key(paths, side, channels, convert)
    array_path, bad_path = (os.path.join(cache_dir, key + ext) for ext in ('.npy', '.json'))
    if not (os.path.isfile(array_path) and os.path.isfile(bad_path)):
        created = not os.path.isdir(cache_dir)  # atomic_write makes it
        shape = (len(paths), side, side) + ((3,) if channels == 3 else ())
        bad: list[int] = []

        def write(tmp: str) -> None:
            out = onp.lib.format.open_memmap(tmp, mode='w+', dtype=onp.uint8, shape=shape)
            for i, image in enumerate(_decoded(paths, channels, num_workers, convert)):
                if isinstance(image, str):
                    if not skip_bad_images:
                        raise UsageError(f'{image}; remove it, or pass --skip-bad-images to '
                                         'train without it')
                    bad.append(i)
                    continue
                if image.shape[:2] != (side, side):
                    image = resized(image[None], (side, side)).asnumpy().reshape(shape[1:])
                out[i] = image
            out.flush()

        try:
            atomic_write(array_path, write)  # no half-written cache
        finally:  # after an error, leave no trace
            if created and os.path.isdir(cache_dir) and not os.listdir(cache_dir):
                os.rmdir(cache_dir)
        atomic_text(bad_path, json.dumps({'unreadable': bad}))
    with open(bad_path) as f:
        bad = json.load(f)['unreadable']
    if bad and not skip_bad_images:
        raise UsageError(f'{paths[bad[0]]}: not a readable image; remove it, or pass '
                         f'--skip-bad-images to train without it ({len(bad)} such files)')
    if bad:
        log(f'skipped {len(bad)} unreadable image(s), e.g. {paths[bad[0]]}')
    return onp.load(array_path, mmap_mode='r'), bad


class ImageFolder(ArrayDataModule):
    """A folder of class sub-folders as a d2l DataModule (train/val dataloaders), and a
    `densenet.data.batches.DataModule`.

    The folder names are the class names (sorted). Images are decoded once into
    an on-disk cache (`decode_to_cache`) and read through a memory map. Its batches
    are `densenet.data.batches.ArrayDataModule`'s.

    Args:
        root: the folder; ``train/`` and ``val/`` inside are used as they are.
        batch_size: images per batch.
        resize: the square side every image is resized to (an int, or a pair).
        channels: 1 or 3; None takes 1 when every image is single-channel.
        val_split: without ``val/``, the share of every class held out (stratified,
            seeded).
        seed: the split, shuffling and augmentation seed.
        augment: flip and shift training images by up to 1/14 of the side.
        limit: keep N training images drawn at random.
        shard: (i, n): a distributed worker's part of the training images.
        num_workers: decoding processes (default: one per core).
        skip_bad_images: leave unreadable files out (counted) instead of stopping.
        cache_dir: the cache folder (default ``$DENSENET_CACHE``).
        log: where notes go.
        erase: random erasing of this share of the training images.
        val_limit: validate on this many images, spread evenly over the validation
            split (`densenet.data.batches.validation_part`); None: all of them.
        convert: read every file as a Fashion-MNIST image (photos converted as the
            dataset's were: `densenet.data.inputs.as_fashion_mnist`), for a model
            trained on Fashion-MNIST.

    Raises:
        UsageError: a folder that cannot be trained on (see `scan`), a bad
            `channels`, an unreadable image, or no readable images left in a split.
    """

    def __init__(self, root: str, batch_size: int = 64,
                 resize: int | tuple[int, ...] | list[int] = 96,
                 channels: int | None = None, val_split: float = 0.2, seed: int = 0,
                 augment: bool = False, limit: int | None = None,
                 shard: tuple[int, int] | None = None, num_workers: int | None = None,
                 skip_bad_images: bool = False, cache_dir: str | None = None,
                 log: Callable[[str], object] = print, erase: float = 0.0,
                 val_limit: int | None = None, convert: bool = False) -> None:
        super().__init__(root=root, num_workers=num_workers)
        self.save_hyperparameters()
        side = resize[0] if isinstance(resize, (tuple, list)) else int(resize)
        classes, items, val_items, ignored = scan(root, 'ImageFolder')
        if ignored:
            log(f'{root}: ignored {ignored} file(s) that are not images ({", ".join(EXTENSIONS)})')
        items_all = items + (val_items or [])
        if channels is None:  # with convert: Fashion-MNIST's images, whatever the files are
            channels = 1 if convert or all(is_grayscale(p) for p, _ in items_all) else 3
        if channels not in (1, 3):
            raise UsageError(f'channels must be 1 or 3, got {channels}')
        if convert and channels != 1:
            raise UsageError('convert makes Fashion-MNIST images, which have 1 channel, '
                             f'not {channels}')
        self.paths = [p for p, _ in items_all]
        labels = onp.array([c for _, c in items_all], dtype=onp.int32)
        images, bad = decode_to_cache(self.paths, side, channels, cache_dir, num_workers,
                                      skip_bad_images, log, convert)
        if val_items is None:
            train_idx, val_idx = stratified_split(labels, val_split, seed)
        else:
            train_idx, val_idx = onp.arange(len(items)), onp.arange(len(items), len(items_all))
        train_idx, val_idx = onp.setdiff1d(train_idx, bad), onp.setdiff1d(val_idx, bad)
        for split, index in (('training', train_idx), ('validation', val_idx)):
            if not len(index):
                raise UsageError(f'ImageFolder {root}: no readable {split} images left; '
                                 'add images')
        # A seeded order, so that limit and shard take a mix of classes.
        train_idx = onp.random.RandomState(seed).permutation(train_idx)
        self.train_index = onp.sort(train_idx[training_part(len(train_idx), limit, shard)])
        self.val_index = val_idx[validation_part(len(val_idx), val_limit)]
        self.train_arrays = (Rows(images, self.train_index), labels[self.train_index])
        self.val_arrays = (Rows(images, self.val_index), labels[self.val_index])
        self.classes, self.channels, self.side, self.size = classes, channels, side, (side, side)
        self.name = 'folder:' + os.path.basename(os.path.abspath(root))
        self.pad = max(1, round(side / 14))
