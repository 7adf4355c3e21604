"""Reading image files as the 8-bit grayscale the models were trained on.

PIL's own ``convert('L')`` clips 16- and 32-bit images (a 0..65535 ramp
becomes almost all 255) and drops alpha onto whatever the colour channels
hold. Here every mode keeps its real range: 16-bit values are scaled by
255/65535, 32-bit integers by their PNG/TIFF 16-bit range as well, floats are
read as [0, 1] (or [0, 255] when they exceed 1); palette images are expanded;
transparent pixels are composited onto black, Fashion-MNIST's background; the
EXIF orientation is applied.
"""
import numpy as onp

from .errors import UsageError

SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


class ImageError(UsageError):
    """A file that is missing or not a readable image."""


def _open(path):
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ImageError(f'{path}: no such file') from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f'{path}: not a readable image ({e})') from None
    return ImageOps.exif_transpose(img)


def to_gray8(img):
    """A PIL image as a uint8 (H, W) array with its full range, and notes on what changed."""
    notes, mode = [], img.mode
    if mode == 'L':
        return onp.asarray(img, dtype=onp.uint8), notes
    notes.append(f'converted {mode} to grayscale')
    if mode == 'P':  # a palette, maybe with a transparent entry
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
        mode = img.mode
    alpha = None
    if mode in ('LA', 'RGBA', 'PA', 'La', 'RGBa'):
        alpha = onp.asarray(img.getchannel('A'), dtype=onp.float64) / 255
        img = img.convert('RGB' if mode.startswith('RGB') else 'L')
        mode = img.mode
    if mode in SIXTEEN_BIT:
        gray = onp.asarray(img, dtype=onp.float64) * (255 / 65535)
    elif mode == 'F':
        values = onp.asarray(img, dtype=onp.float64)
        gray = values * (255 if onp.nanmax(values) <= 1 else 1)
    else:  # 1, RGB, CMYK, YCbCr, LAB, HSV: PIL's own conversion keeps the range
        gray = onp.asarray(img.convert('L'), dtype=onp.float64)
    if alpha is not None:
        gray = gray * alpha
    if not onp.isfinite(gray).all():
        raise ImageError('holds NaN or infinite values')
    return onp.clip(onp.rint(gray), 0, 255).astype(onp.uint8), notes


def read_image(path):
    """(uint8 (H, W) grayscale array, notes) of an image file; ImageError if unreadable."""
    try:
        return to_gray8(_open(path))
    except ImageError as e:
        if str(e).startswith(f'{path}:'):
            raise
        raise ImageError(f'{path}: {e}') from None
