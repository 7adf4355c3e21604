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

from densenet.errors import UsageError

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


def to_rgb8(img):
    """A PIL image as a uint8 (H, W, 3) array: colour kept, grey repeated, alpha onto black."""
    if img.mode == 'P':
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    if img.mode == 'RGB':
        return onp.asarray(img, dtype=onp.uint8), []
    if img.mode in ('RGBA', 'RGBa'):
        alpha = onp.asarray(img.getchannel('A'), dtype=onp.float64)[..., None] / 255
        rgb = onp.asarray(img.convert('RGB'), dtype=onp.float64) * alpha
        return onp.clip(onp.rint(rgb), 0, 255).astype(onp.uint8), ['alpha composited on black']
    if img.mode in ('CMYK', 'YCbCr', 'LAB', 'HSV'):
        return onp.asarray(img.convert('RGB'), dtype=onp.uint8), [f'converted {img.mode} to RGB']
    gray, notes = to_gray8(img)  # every single-channel mode, with its full range
    return onp.repeat(gray[..., None], 3, axis=2), notes + ['grayscale repeated to RGB']


def is_grayscale(path):
    """Whether an image file has a single channel (read from its header, not decoded)."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return img.mode in ('1', 'L', 'LA', 'La', 'I', 'F') or img.mode.startswith('I;16')
    except OSError:
        return True  # unreadable: decoding names it


def read_image(path, channels=1):
    """(uint8 (H, W) grayscale, or (H, W, 3) for channels=3, array, notes) of an image
    file; ImageError if unreadable."""
    if channels not in (1, 3):
        raise ValueError(f'channels must be 1 or 3, got {channels}')
    try:
        return (to_gray8 if channels == 1 else to_rgb8)(_open(path))
    except ImageError as e:
        if str(e).startswith(f'{path}:'):
            raise
        raise ImageError(f'{path}: {e}') from None
