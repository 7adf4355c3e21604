"""Write the images that README and the tutorials use, into examples/images/.

    python examples/make_images.py [--data-dir DIR]

All of them come from Fashion-MNIST's test split (MIT licence, Zalando
Research), which the shipped weights never trained on:

- ``CLASS.png`` (spaces as hyphens: ``ankle-boot.png``): one 28x28 test image of
  each class, as the dataset stores it;
- ``photos/CLASS.jpg``: photo-style versions of four of them, made by
  `photo_style`: a dark garment on a light background, 300x300 RGB, enlarged,
  placed off-centre, slightly tinted and noisy, saved as JPEG, the kind of
  picture a shop's catalogue holds;
- ``folder/CLASS/N.png``: ten test images of each of three classes, a small
  image folder laid out one sub-folder per class, as ``densenet train --data``
  reads one.

The images are a function of the test split alone: running the script again
writes the same files.
"""
from __future__ import annotations

import argparse
import os

import numpy as onp
from PIL import Image

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'images')
PHOTOS = ('sneaker', 'bag', 'trouser', 'ankle boot')
FOLDER = ('trouser', 'sneaker', 'bag')
PER_CLASS = 10


def photo_style(image: onp.ndarray, rng: onp.random.RandomState,
                side: int = 300) -> onp.ndarray:
    """A 28x28 Fashion-MNIST image as a catalogue photo: RGB, `side` x `side`, the garment
    dark on a light background, enlarged 6 to 9 times and placed at random.

    Args:
        image: uint8 (28, 28), light garment on black.
        rng: the random state (scale, place, background, tint, noise).
        side: the photo's side.

    Returns:
        uint8 (side, side, 3).
    """
    size = round(28 * rng.uniform(6, 9))
    background = rng.uniform(225, 250)
    garment = 255 - onp.asarray(Image.fromarray(image).resize((size, size),
                                                               Image.Resampling.BICUBIC),
                                float)
    photo = onp.full((side, side), background)
    top, left = rng.randint(0, side - size + 1, 2)
    photo[top:top + size, left:left + size] = onp.minimum(garment, background)
    tint = rng.uniform(0.92, 1.0, 3)
    rgb = photo[..., None] * tint + rng.normal(0, 2.5, (side, side, 3))
    return onp.clip(onp.rint(rgb), 0, 255).astype(onp.uint8)


def _file(name: str) -> str:
    return name.replace(' ', '-')


def main(argv: list[str] | None = None) -> None:
    import densenet  # noqa: F401  (first: it sets MXNet's thread count)
    from densenet.data import CLASSES, load_split
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files')
    parser.add_argument('--out', default=HERE, help='where to write (default: %(default)s)')
    args = parser.parse_args(argv)
    images, labels = load_split('val', root=args.data_dir)
    first = {c: onp.flatnonzero(labels == i) for i, c in enumerate(CLASSES)}
    os.makedirs(os.path.join(args.out, 'photos'), exist_ok=True)
    for c, index in first.items():
        Image.fromarray(images[index[0]]).save(os.path.join(args.out, f'{_file(c)}.png'))
    rng = onp.random.RandomState(0)
    for c in PHOTOS:
        Image.fromarray(photo_style(images[first[c][0]], rng)).save(
            os.path.join(args.out, 'photos', f'{_file(c)}.jpg'), quality=90)
    for c in FOLDER:
        folder = os.path.join(args.out, 'folder', c)
        os.makedirs(folder, exist_ok=True)
        for i in first[c][1:1 + PER_CLASS]:
            Image.fromarray(images[i]).save(os.path.join(folder, f'{i}.png'))


if __name__ == '__main__':
    main()
