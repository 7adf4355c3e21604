"""Odd images read as a reader expects: 16-bit, float, palette, alpha, EXIF orientation."""
import numpy as onp
import pytest
from PIL import Image

from densenet.data.images import ImageError, read_image

pytestmark = pytest.mark.slow


def _ramp16():
    return (onp.arange(28 * 28).reshape(28, 28) * (65535 / (28 * 28 - 1))).astype(onp.uint16)


def test_16_bit_images_keep_their_range(tmp_path):
    path = str(tmp_path / 'ramp16.png')
    ramp = _ramp16()
    Image.fromarray(ramp).save(path)
    gray, notes = read_image(path)
    # convert('L') made 99.5% of these pixels 255; scaled, they follow the ramp.
    assert gray.dtype == onp.uint8 and gray.min() == 0 and gray.max() == 255
    assert (gray == 255).mean() < 0.01
    assert onp.array_equal(gray, onp.rint(ramp / 257).astype(onp.uint8))
    assert notes == ['converted I;16 to grayscale']


def test_float_palette_alpha_and_exif_orientation(tmp_path):
    ramp = _ramp16() / 65535
    Image.fromarray(ramp.astype(onp.float32), 'F').save(tmp_path / 'f.tiff')
    assert onp.array_equal(read_image(str(tmp_path / 'f.tiff'))[0],
                           onp.rint(ramp * 255).astype(onp.uint8))
    rgba = onp.zeros((28, 28, 4), onp.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 128  # light grey, half transparent, over black
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    assert set(read_image(str(tmp_path / 'a.png'))[0].ravel()) == {round(200 * 128 / 255)}
    levels = (onp.arange(28 * 28).reshape(28, 28) % 4 * 80).astype(onp.uint8)
    Image.fromarray(levels).convert('P').save(tmp_path / 'p.png')
    assert onp.array_equal(read_image(str(tmp_path / 'p.png'))[0], levels)
    tall = onp.zeros((40, 20), onp.uint8)
    tall[0, :] = 255  # top row white
    img = Image.fromarray(tall)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / 'o.jpg', exif=exif, quality=100)
    shown = read_image(str(tmp_path / 'o.jpg'))[0]
    assert shown.shape == (20, 40) and shown[:, -1].mean() > 200  # the top row is now right
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    with pytest.raises(ImageError, match='bad.png: not a readable image'):
        read_image(str(tmp_path / 'bad.png'))
