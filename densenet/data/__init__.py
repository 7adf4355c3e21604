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

__all__ = ['DataModule', 'FashionMNIST', 'ImageFolder', 'CLASSES', 'TRAIN_SIZE', 'BatchLoader',
           'to_tensor', 'check_data_dir', 'check_folder', 'find_or_download', 'load_split']
