"""Image files as a trained model's own data looked: what ``densenet predict`` feeds it."""
from __future__ import annotations

from typing import Any

import numpy as onp
from PIL import Image

from densenet.data.images import read_image

#: Fashion-MNIST's images are 28x28 grayscale.
FASHION_MNIST_SIDE = 28


def as_fashion_mnist(path: str) -> tuple[onp.ndarray, list[str]]:
    """A file as a 28x28 uint8 grayscale array (full range kept).

    Args:
        path: the image file.

    Returns:
        (the array, notes on the conversions made).

    Raises:
        ImageError: the file is unreadable (a UsageError).
    """
    gray, notes = read_image(path)
    side = FASHION_MNIST_SIDE
    if gray.shape != (side, side):
        notes.append(f'resized {gray.shape[1]}x{gray.shape[0]} to {side}x{side}')
        gray = onp.asarray(Image.fromarray(gray).resize((side, side), Image.Resampling.BILINEAR))
    return gray, notes


def read_for_model(meta: dict[str, Any], path: str) -> tuple[onp.ndarray, list[str]]:
    """An image file as the model's training data looked.

    Fashion-MNIST models see 28x28 grayscale first (as their data was); folder
    models the file at its own size, with their channel count.

    Args:
        meta: the model's metadata (`densenet.models.params`).
        path: the image file.

    Returns:
        (the array, notes on the conversions made).

    Raises:
        ImageError: the file is unreadable.
    """
    if meta.get('dataset') == 'fashion-mnist':
        return as_fashion_mnist(path)
    return read_image(path, meta['channels'])
