"""Image files made to look like a model's training images.

Fashion-MNIST was made from Zalando's product photos (Xiao, Rasul and
Vollgraf, 2017, section 2): the uniform background trimmed, the longest edge
resized to 28 pixels, the image extended to 28x28, the intensities negated and
converted to grayscale, so that a garment is light on a black background.
`fashion_mnist_form` applies those steps to any photo, so that a model trained
on Fashion-MNIST sees its kind of input; an image already in that form (28x28,
dark background) passes unchanged.
"""
from __future__ import annotations

import os

import numpy as onp
from PIL import Image

from densenet.data.images import read_image

#: Fashion-MNIST's images are 28x28 grayscale.
FASHION_MNIST_SIDE = 28
#: The conversion's name in the weights' metadata (`densenet.models.preprocess`).
FASHION_MNIST_PHOTO = 'fashion-mnist'
#: A pixel is part of the object when it differs from the background by more than this.
OBJECT_THRESHOLD = 24
#: The border counts as one uniform background when 90% of it is within this of its median.
UNIFORM_SPREAD = 32


def fashion_mnist_form(gray: onp.ndarray,
                       side: int = FASHION_MNIST_SIDE) -> tuple[onp.ndarray, list[str]]:
    """A grayscale photo converted as Fashion-MNIST's photos were.

    The background is the median of the border pixels. On a uniform background
    the object's bounding box is cut out; a light background is negated; the
    background level becomes 0 (the range stretched back to 0..255); the longest
    edge is fitted to `side` and the image centred on a black `side` x `side`
    square.

    Args:
        gray: uint8 (H, W).
        side: the square side (Fashion-MNIST's 28).

    Returns:
        (uint8 (side, side), the steps taken; empty when `gray` already has the
        form: `side` x `side` on a black background, within `OBJECT_THRESHOLD`).
    """
    border = onp.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]]).astype(float)
    background = float(onp.median(border))
    if gray.shape == (side, side) and background <= OBJECT_THRESHOLD:
        return gray, []
    steps = []
    image = gray.astype(float)
    if onp.percentile(onp.abs(border - background), 90) <= UNIFORM_SPREAD:
        rows, cols = onp.nonzero(onp.abs(image - background) > OBJECT_THRESHOLD)
        if len(rows) and (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) != (
                0, 0, *gray.shape):
            image = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            steps.append('background trimmed')
    if background > 127:  # a light background
        image, background = 255 - image, 255 - background
        steps.append('negated (light background)')
    if background > 0:
        image = (image - background) * (255 / (255 - background))
    h, w = image.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(onp.clip(onp.rint(image), 0, 255).astype(onp.uint8))
    small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    out = onp.zeros((side, side), onp.uint8)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = onp.asarray(small)
    steps.append(f'fit {w}x{h} into {side}x{side}')
    return out, steps


def as_fashion_mnist(path: str | os.PathLike[str],
                     convert: bool = True) -> tuple[onp.ndarray, list[str]]:
    """A file as a 28x28 uint8 grayscale array, as Fashion-MNIST's images are.

    Args:
        path: the image file.
        convert: apply `fashion_mnist_form` (photos); False only resizes to 28x28.

    Returns:
        (the array, notes on the conversions made).

    Raises:
        ImageError: the file is unreadable (a UsageError).
    """
    # Transparent pixels: white, the background of the photos the dataset was made from.
    gray, notes = read_image(path, background=255 if convert else 0)
    if convert:
        gray, steps = fashion_mnist_form(gray)
        return gray, notes + steps
    side = FASHION_MNIST_SIDE
    if gray.shape != (side, side):
        notes.append(f'resized {gray.shape[1]}x{gray.shape[0]} to {side}x{side}')
        gray = onp.asarray(Image.fromarray(gray).resize((side, side), Image.Resampling.BILINEAR))
    return gray, notes
