"""The data: Fashion-MNIST found offline-first (fashion_mnist), image folders (image_folder),
image files read safely (images), and the batches both feed the model (batches); both
datasets are a `DataModule`."""
from densenet.data.batches import BatchLoader, DataModule, to_tensor
from densenet.data.fashion_mnist import (
    CLASSES,
    TRAIN_SIZE,
    FashionMNIST,
    check_data_dir,
    find_or_download,
    load_split,
)
from densenet.data.image_folder import ImageFolder, check_folder
from densenet.errors import UsageError


def check_sources(folder: str | None, data_dir: str | None) -> None:
    """Check --data and --data-dir before anything is built: one dataset, and readable.

    Args:
        folder: the image folder (--data), or None.
        data_dir: the Fashion-MNIST folder (--data-dir), or None.

    Raises:
        UsageError: both are given, or the one given is not what it should be.
    """
    if folder and data_dir:
        raise UsageError('--data (an image folder) and --data-dir (Fashion-MNIST) name two '
                         'datasets: give one')
    if data_dir:
        check_data_dir(data_dir)
    if folder:
        check_folder(folder)


def open_data(batch_size: int, side: int, folder: str | None = None, *,
              root: str | None = None, channels: int | None = None, convert: bool = False,
              val_split: float = 0.2, seed: int = 0, augment: bool = False,
              limit: int | None = None, val_limit: int | None = None,
              shard: tuple[int, int] | None = None, holdout: int = 0, erase: float = 0.0,
              skip_bad_images: bool = False) -> DataModule:
    """The data module that training and evaluation read: the image folder `folder`, or
    Fashion-MNIST (found in `root`, else where `find_or_download` looks).

    Args:
        batch_size: images per batch.
        side: the square side the images are resized to.
        folder: an image folder (one sub-folder per class), or None for Fashion-MNIST.
        root: where the Fashion-MNIST files are.
        channels: a folder's channels (None: what its images have).
        convert: make a folder's images like Fashion-MNIST's (`ImageFolder`).
        val_split: a folder's share of validation images, when it has no val/ split.
        seed: the split's and the augmentation's seed.
        augment: flip and shift the training images.
        limit: train on the first `limit` images.
        val_limit: validate on the first `val_limit` images.
        shard: (i, n): a distributed worker's part of the training images.
        holdout: Fashion-MNIST: validate on this many held-out training images.
        erase: the probability of random erasing per training image.
        skip_bad_images: leave out a folder's unreadable images instead of stopping.

    Returns:
        The data module.
    """
    if folder:
        return ImageFolder(folder, batch_size=batch_size, resize=side, channels=channels,
                           convert=convert, val_split=val_split, seed=seed, augment=augment,
                           limit=limit, shard=shard, skip_bad_images=skip_bad_images,
                           erase=erase, val_limit=val_limit)
    return FashionMNIST(batch_size=batch_size, resize=(side, side), root=root, limit=limit,
                        augment=augment, seed=seed, shard=shard, holdout=holdout, erase=erase,
                        val_limit=val_limit)


__all__ = ['DataModule', 'FashionMNIST', 'ImageFolder', 'open_data', 'CLASSES', 'TRAIN_SIZE',
           'BatchLoader', 'to_tensor', 'check_sources', 'find_or_download',
           'load_split']
