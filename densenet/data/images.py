"""Reading image files as the 8-bit grayscale the models were trained on.

PIL's own ``convert('L')`` clips 16- and 32-bit images (a 0..65535 ramp
becomes almost all 255) and drops alpha onto whatever the colour channels
hold. Here every mode keeps its real range: 16-bit values are scaled by
255/65535, 32-bit integers by their PNG/TIFF 16-bit range as well, floats are
read as [0, 1] (or [0, 255] when they exceed 1); palette images are expanded;
transparent pixels are composited onto black, Fashion-MNIST's background (onto
white for the photo conversion of `densenet.data.inputs`, whose photos had
white backgrounds); the EXIF orientation is applied.

Huge images: a file whose width x height exceeds a pixel limit is refused
before it is decoded, with an `ImageError` naming the file, its size and the
limit (a small PNG can hold a 20000x20000 image that takes gigabytes once
decoded: a "decompression bomb"). The limit is PIL's ``Image.MAX_IMAGE_PIXELS``
(89,478,485 pixels unless changed), or the environment variable
``DENSENET_MAX_IMAGE_PIXELS``: a pixel count (``400000000``, ``400_000_000``),
or ``none`` (or ``0``) for no limit, for images that are meant to be that
large. PIL itself warns (``DecompressionBombWarning``) between one and two
times its limit and raises above; here every image over the limit is the same
error, and no warning reaches stderr. While a file is opened, PIL's module-wide
limit is set to this one and then restored (not thread-safe against other
threads changing it).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as onp
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.Image import Image as PILImage

from densenet.errors import UsageError

#: The environment variable that sets the pixel limit (a count, or none).
MAX_PIXELS_ENV = 'DENSENET_MAX_IMAGE_PIXELS'
SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


class ImageError(UsageError):
    """A file that is missing, not a readable image, or larger than `max_image_pixels`."""


def max_image_pixels() -> int | None:
    """The most pixels (width x height) an image file may have.

    ``DENSENET_MAX_IMAGE_PIXELS`` when set (a count; ``none`` or ``0``: no limit),
    else PIL's ``Image.MAX_IMAGE_PIXELS``.

    Returns:
        The limit, or None for no limit.

    Raises:
        UsageError: the variable is set to something that is not a count.
    """
    if not (text := os.environ.get(MAX_PIXELS_ENV, '').strip()):
        return Image.MAX_IMAGE_PIXELS
    if text.lower() in ('none', 'off', '0'):
        return None
    with contextlib.suppress(ValueError):  # not a whole number: the error below
        value = int(text.replace(',', ''))
        if value >= 1:
            return value
    raise UsageError(f'{MAX_PIXELS_ENV}={text!r} is not a pixel count: give a whole '
                     'number such as 400000000, or none for no limit')


@contextlib.contextmanager
def _pil_limit(limit: int | None) -> Iterator[None]:
    """PIL's own decompression-bomb checks at `limit` (None: off) for the block, its
    warning between one and two times the limit raised as an error."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _open(path: str | os.PathLike[str]) -> PILImage:
    """The decoded image of a file, EXIF orientation applied; ImageError if it is missing,
    unreadable, or over `max_image_pixels` (checked from its header, before decoding)."""
    limit = max_image_pixels()
    try:
        with _pil_limit(None):  # the header only; its size is checked here, below
            img = Image.open(path)
        w, h = img.size
        if limit is not None and w * h > limit:
            img.close()
            raise ImageError(f'{path}: {w}x{h} pixels ({w * h:,}) is over the limit of '
                             f'{limit:,} pixels, a guard against decompression bombs; if the '
                             f'image is meant to be this large, set {MAX_PIXELS_ENV}={w * h} '
                             '(or more) to allow it')
        with _pil_limit(limit):  # PIL checks the frames of animated files as it decodes
            img.load()
    except FileNotFoundError:
        raise ImageError(f'{path}: no such file') from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        img.close()  # a frame of an animated file larger than the image itself
        raise ImageError(f'{path}: a frame is over the limit of {limit:,} pixels ({e}); if '
                         f'the image is meant to be this large, set {MAX_PIXELS_ENV} higher '
                         'to allow it') from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f'{path}: not a readable image ({e})') from None
    return ImageOps.exif_transpose(img)


def to_gray8(img: PILImage, background: int = 0) -> tuple[onp.ndarray, list[str]]:
    """A PIL image as a uint8 (H, W) array with its full range.

    Args:
        img: the image, of any mode.
        background: the gray level that transparent pixels are composited onto.

    Returns:
        (the array, notes on what was converted).

    Raises:
        ImageError: a float image holding NaN or infinite values.
    """
    if img.mode == 'L':
        return onp.asarray(img, dtype=onp.uint8), []
    notes = [f'converted {img.mode} to grayscale']
    if img.mode == 'P':  # a palette, maybe with a transparent entry
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    alpha = None
    if img.mode in ('LA', 'RGBA', 'PA', 'La', 'RGBa'):
        alpha = onp.asarray(img.getchannel('A'), dtype=onp.float64) / 255
        img = img.convert('RGB' if img.mode.startswith('RGB') else 'L')
    if img.mode in SIXTEEN_BIT:
        gray = onp.asarray(img, dtype=onp.float64) * (255 / 65535)
    elif img.mode == 'F':
        values = onp.asarray(img, dtype=onp.float64)
        gray = values * (255 if onp.nanmax(values) <= 1 else 1)
    else:  # 1, RGB, CMYK, YCbCr, LAB, HSV: PIL's own conversion keeps the range
        gray = onp.asarray(img.convert('L'), dtype=onp.float64)
    if alpha is not None:
        gray = gray * alpha + background * (1 - alpha)
    if not onp.isfinite(gray).all():
        raise ImageError('holds NaN or infinite values')
    return onp.clip(onp.rint(gray), 0, 255).astype(onp.uint8), notes


def to_rgb8(img: PILImage) -> tuple[onp.ndarray, list[str]]:
    """A PIL image as a uint8 (H, W, 3) array: colour kept, grey repeated, alpha onto black.

    Args:
        img: the image, of any mode.

    Returns:
        (the array, notes on what was converted).
    """
    if img.mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    if img.mode in ('RGB', 'CMYK', 'YCbCr', 'LAB', 'HSV'):
        notes = [] if img.mode == 'RGB' else [f'converted {img.mode} to RGB']
        return onp.asarray(img.convert('RGB'), dtype=onp.uint8), notes
    if img.mode in ('RGBA', 'RGBa'):
        alpha = onp.asarray(img.getchannel('A'), dtype=onp.float64)[..., None] / 255
        rgb = onp.asarray(img.convert('RGB'), dtype=onp.float64) * alpha
        return onp.clip(onp.rint(rgb), 0, 255).astype(onp.uint8), ['alpha composited on black']
    gray, notes = to_gray8(img)  # every single-channel mode, with its full range
    return onp.repeat(gray[..., None], 3, axis=2), notes + ['grayscale repeated to RGB']


def is_grayscale(path: str | os.PathLike[str]) -> bool:
    """Whether an image file has a single channel (read from its header, not decoded).

    Args:
        path: the file.

    Returns:
        True for a single-channel (or unreadable) file.
    """
    try:
        with _pil_limit(None), Image.open(path) as img:  # a huge one: decoding names it
            return img.mode in ('1', 'L', 'LA', 'La', 'I', 'F') or img.mode.startswith('I;16')
    except OSError:
        return True  # unreadable: decoding names it


def read_image(path: str | os.PathLike[str], channels: int = 1,
               background: int = 0) -> tuple[onp.ndarray, list[str]]:
    """An image file as uint8 grayscale or RGB, with its real range (see the module).

    Args:
        path: the file (PNG, JPEG, TIFF, ... of any PIL mode).
        channels: 1 for (H, W) grayscale, 3 for (H, W, 3) RGB.
        background: grayscale only: the level transparent pixels go onto (0: black).

    Returns:
        (the array, notes on what was converted).

    Raises:
        ValueError: `channels` is neither 1 nor 3.
        ImageError: the file is missing, unreadable, or over `max_image_pixels`.
    """
    if channels not in (1, 3):
        raise ValueError(f'channels must be 1 or 3, got {channels}')
    img = _open(path)  # its errors name the file; the conversion's do not
    try:
        return to_gray8(img, background) if channels == 1 else to_rgb8(img)
    except ImageError as e:
        raise ImageError(f'{path}: {e}') from None
