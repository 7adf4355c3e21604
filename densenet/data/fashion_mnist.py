"""Fashion-MNIST for the book's training recipe, found or fetched offline-first.

`FashionMNIST` is a drop-in for ``d2l.FashionMNIST`` that reads the official
IDX files from the first place that has them (``root``, ``$DENSENET_DATA``,
Gluon's cache, Debian's ``dataset-fashion-mnist``), verifies their content, and
only then downloads from the official source.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from typing import cast

import numpy as onp
from d2l import mxnet as d2l
from mxnet import gluon, np
from mxnet.gluon.data.vision import transforms

from densenet.data.batches import ArrayDataModule, training_part, validation_part
from densenet.errors import UsageError
from densenet.system.files import atomic_bytes

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
OFFICIAL_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'

# SHA-256 of the decompressed official files: Gluon's mirror, Zalando's and
# Debian's .gz wrappers differ, their contents do not.
FILES: dict[str, tuple[str, int]] = {
    'train-images-idx3-ubyte':
        ('c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888', 60000),
    'train-labels-idx1-ubyte':
        ('bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9', 60000),
    't10k-images-idx3-ubyte':
        ('5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b', 10000),
    't10k-labels-idx1-ubyte':
        ('0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34', 10000),
}
SPLITS: dict[str, tuple[str, str]] = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'val': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
TRAIN_SIZE = FILES[SPLITS['train'][1]][1]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
#: The ten classes, by label (as d2l's FashionMNIST.text_labels names them).
CLASSES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker',
           'bag', 'ankle boot')

HOW_TO_GET = (
    'Get Fashion-MNIST in one of three ways: (1) apt-get install dataset-fashion-mnist '
    f'(files land in {DEBIAN_DIR}); (2) allow the download from {OFFICIAL_URL} '
    '(or set $DENSENET_DATA_URL to a mirror); (3) put the four IDX files '
    '(.gz or raw) in a folder and pass root=... / --data-dir or set $DENSENET_DATA.')


def candidate_dirs(root: str | None = None) -> list[str]:
    """Where the IDX files are looked for, in order.

    `root`, ``$DENSENET_DATA``, Gluon's cache (``$MXNET_HOME/datasets/fashion-mnist``,
    default ``~/.mxnet``), then Debian's ``/usr/share/datasets/fashion-mnist``.

    Args:
        root: a folder searched first (None: none).

    Returns:
        The folders.
    """
    mxnet_home = os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet'))
    dirs = [root, os.environ.get('DENSENET_DATA'),
            os.path.join(mxnet_home, 'datasets', 'fashion-mnist'), DEBIAN_DIR]
    return [d for d in dirs if d]


def _file_in(folder: str, name: str) -> str | None:
    paths = (os.path.join(folder, name + '.gz'), os.path.join(folder, name))
    return next((path for path in paths if os.path.isfile(path)), None)


def check_data_dir(folder: str) -> None:
    """Check that `folder` (a user's --data-dir) holds all four IDX files.

    The library searches on when `root` lacks them; a folder named on the
    command line is what the user meant, so it is refused instead.

    Args:
        folder: the folder.

    Raises:
        UsageError: it is not a folder, or lacks one of the files (.gz or raw).
    """
    search = ', or leave --data-dir out to search ' + ', '.join(candidate_dirs())
    if not os.path.isdir(folder):
        raise UsageError(f'--data-dir {folder}: no such folder; give the folder holding the '
                         'four Fashion-MNIST IDX files' + search)
    if missing := [name for name in FILES if not _file_in(folder, name)]:
        raise UsageError(f'--data-dir {folder}: {", ".join(missing)} (.gz or raw) missing; '
                         'put all four IDX files there' + search)


def locate(root: str | None = None) -> dict[str, str] | None:
    """The first folder of `candidate_dirs` that holds all four files.

    Args:
        root: a folder searched first.

    Returns:
        {name: path}, or None when no folder has them.
    """
    for folder in candidate_dirs(root):
        paths = {name: _file_in(folder, name) for name in FILES}
        if all(paths.values()):
            return cast('dict[str, str]', paths)
    return None


def _fix_hint(path: str) -> str:
    if '://' in path:
        return ('nothing was kept; the source serves another file: check '
                '$DENSENET_DATA_URL, or get the data another way')
    if path.startswith(DEBIAN_DIR):
        return 'reinstall it (apt-get install --reinstall dataset-fashion-mnist)'
    return (f'delete {path} so that it is fetched again, or point root= / '
            '$DENSENET_DATA at a good copy')


def decode_idx(raw: bytes, name: str, path: str) -> onp.ndarray:
    """Check an IDX file's bytes against the official file `name` and decode them.

    Args:
        raw: the decompressed bytes.
        name: the official file's name.
        path: the file, for the error message.

    Returns:
        The images (uint8, (N, 28, 28)) or labels (uint8, (N,)).

    Raises:
        ValueError: naming the file and the fix: too short, a wrong magic number,
            count, size or label, or content that differs from the official file
            (SHA-256).
    """
    def bad(what: str) -> UsageError:
        return UsageError(f'{path}: {what}; {_fix_hint(path)}')
    sha, count = FILES[name]
    is_images = 'images' in name
    magic, header = (IMAGE_MAGIC, 16) if is_images else (LABEL_MAGIC, 8)
    if len(raw) < header:
        raise bad(f'only {len(raw)} bytes, shorter than an IDX header')
    # The header: big-endian 32-bit magic number, count and, for images, rows and columns.
    got_magic, got_count, *dims = onp.frombuffer(raw, '>u4', header // 4).tolist()
    if got_magic != magic:
        raise bad(f'wrong magic number {got_magic} (an IDX {"image" if is_images else "label"} '
                  f'file starts with {magic}); it is not {name}')
    if got_count != count:
        raise bad(f'holds {got_count} items, expected {count}')
    if dims not in ([], [28, 28]):
        raise bad(f'images are {dims[0]}x{dims[1]}, expected 28x28')
    shape = (count, *dims)
    if len(raw) != header + math.prod(shape):
        raise bad(f'{len(raw)} bytes, expected {header + math.prod(shape)} (truncated?)')
    if hashlib.sha256(raw).hexdigest() != sha:
        raise bad('content differs from the official file (SHA-256 mismatch)')
    arr = onp.frombuffer(raw, dtype=onp.uint8, offset=header).reshape(shape)
    if not is_images and arr.max() > 9:
        raise bad(f'label {arr.max()} outside 0..9')
    return arr


def _decompressed(data: bytes, path: str) -> bytes:
    """The bytes of an IDX file, gunzipped when `path` ends in .gz."""
    try:
        return gzip.decompress(data) if path.endswith('.gz') else data
    except (EOFError, OSError, zlib.error) as e:
        raise UsageError(f'{path}: cannot be decompressed, the file is truncated or '
                         f'corrupt ({e}); {_fix_hint(path)}') from None


_CACHE: dict[tuple[str, int, int], onp.ndarray] = {}


def load_file(path: str, name: str) -> onp.ndarray:
    """Decode and verify one IDX file, once per (path, size, mtime).

    Args:
        path: the file (.gz or raw).
        name: the official file's name.

    Returns:
        Its array (see `decode_idx`).

    Raises:
        ValueError: the file is damaged or not the official one.
    """
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        with open(path, 'rb') as f:
            _CACHE[key] = decode_idx(_decompressed(f.read(), path), name, path)
    return _CACHE[key]


def download(folder: str, base_url: str | None = None,
             timeout: float = 60) -> dict[str, str]:
    """Fetch the four official files into `folder`, each verified before it is written.

    Args:
        folder: where to write them.
        base_url: the source (default ``$DENSENET_DATA_URL``, else the official one).
        timeout: seconds per request.

    Returns:
        {name: path} of the written files.

    Raises:
        UsageError: a download that broke off or cannot be decompressed (nothing is
            kept).
        ValueError: a file whose content is not the official one.
    """
    base_url = (base_url or os.environ.get('DENSENET_DATA_URL') or OFFICIAL_URL).rstrip('/') + '/'
    paths = {}
    for name in FILES:
        url = base_url + name + '.gz'
        try:  # a body shorter than its Content-Length raises IncompleteRead
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = resp.read()
        except http.client.HTTPException as e:
            raise UsageError(f'{url}: the download broke off ({e!r}); nothing was kept, run '
                             'again or use another way. ' + HOW_TO_GET) from None
        decode_idx(_decompressed(body, url), name, url)
        paths[name] = os.path.join(folder, name + '.gz')
        atomic_bytes(paths[name], body)
    return paths


def find_or_download(root: str | None = None, allow_download: bool = True,
                     base_url: str | None = None) -> dict[str, str]:
    """The verified files, found offline first, else downloaded into the first writable place.

    Args:
        root: a folder searched first.
        allow_download: download when no folder has the files.
        base_url: the download source (default ``$DENSENET_DATA_URL``, else the official one).

    Returns:
        {name: path} of the four files.

    Raises:
        FileNotFoundError: the files are nowhere and could not be downloaded (the
            message says where they were looked for and how to get them).
    """
    if paths := locate(root):
        return paths
    if not allow_download:
        raise FileNotFoundError('Fashion-MNIST not found in ' + ', '.join(candidate_dirs(root))
                                + '. ' + HOW_TO_GET)
    error = 'no writable folder'
    for folder in [d for d in candidate_dirs(root) if d != DEBIAN_DIR]:
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK):
                continue
            return download(folder, base_url)
        except (urllib.error.URLError, OSError) as e:
            error = f'{folder}: {e}'
            break  # the network, not the folder, failed: stop here
    raise FileNotFoundError(f'Fashion-MNIST is not on this machine and could not be '
                            f'downloaded ({error}). ' + HOW_TO_GET)


def load_split(split: str, root: str | None = None,
               allow_download: bool = True) -> tuple[onp.ndarray, onp.ndarray]:
    """The images and labels of one split.

    Args:
        split: 'train' or 'val' (the test split, the book's validation data).
        root: a folder searched first.
        allow_download: download when no folder has the files.

    Returns:
        (images uint8 (N, 28, 28), labels int32 (N,)).

    Raises:
        FileNotFoundError: the files are nowhere and could not be downloaded.
    """
    paths = find_or_download(root, allow_download)
    images_name, labels_name = SPLITS[split]
    return (load_file(paths[images_name], images_name),
            load_file(paths[labels_name], labels_name).astype(onp.int32))


class FashionMNIST(ArrayDataModule, d2l.FashionMNIST):
    """Fashion-MNIST as ``d2l.FashionMNIST(batch_size, resize)`` serves it, offline-first.

    Batches are built a whole batch at a time, with the values of the book's
    per-sample Resize + ToTensor (``train`` and ``val`` hold that pipeline as the
    book's datasets). The files are found and verified by `find_or_download`. A
    `densenet.data.batches.DataModule`: its ``side`` is ``resize[0]``; its batches are
    `densenet.data.batches.ArrayDataModule`'s.

    Args:
        batch_size: images per batch.
        resize: (height, width) every image is resized to.
        root: a folder searched first for the IDX files.
        limit: keep the first N training images.
        augment: random flips and shifts of training images.
        seed: the shuffling and augmentation seed.
        allow_download: download when no folder has the files.
        shard: (i, n): keep the i-th of n equal contiguous parts of the training
            images (a distributed worker's share; the remainder is dropped so that
            every worker runs the same number of steps).
        holdout: validate on the last N training images instead of the test split
            (to choose settings without looking at it) and train on the rest.
        erase: random erasing of this share of the training images.
        val_limit: validate on this many images, spread evenly over the validation
            split (`densenet.data.batches.validation_part`); None: all of them.

    Raises:
        UsageError: a `holdout` that leaves no training or no validation images, or
            a `limit` or `shard` that cannot be met.
        FileNotFoundError: the files are nowhere and could not be downloaded.
    """

    def __init__(self, batch_size: int = 64, resize: Sequence[int] = (28, 28),
                 root: str | None = None, limit: int | None = None,
                 augment: bool = False, seed: int = 0, allow_download: bool = True,
                 shard: tuple[int, int] | None = None, holdout: int = 0,
                 erase: float = 0.0, val_limit: int | None = None) -> None:
        d2l.DataModule.__init__(self, root=root, num_workers=0)
        self.save_hyperparameters()
        images, labels = load_split('train', root, allow_download)
        if not 0 <= holdout < len(labels):
            raise UsageError(f'holdout must be between 1 and {len(labels) - 1} training '
                             f'images, got {holdout}')
        n = len(labels) - holdout
        val = (images[n:], labels[n:]) if holdout else load_split('val', root, allow_download)
        part, keep = training_part(n, limit, shard), validation_part(len(val[1]), val_limit)
        self.train_arrays = images[part], labels[part]
        self.val_arrays = val[0][keep], val[1][keep]
        self.classes, self.channels, self.name = CLASSES, 1, 'fashion-mnist'
        self.side, self.size = int(resize[0]), tuple(resize)
        trans = transforms.Compose([transforms.Resize(resize), transforms.ToTensor()])
        self.train, self.val = (
            gluon.data.ArrayDataset(np.array(x[..., None]), y).transform_first(trans)
            for x, y in (self.train_arrays, self.val_arrays))
