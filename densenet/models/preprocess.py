"""How an image becomes a model's input: one definition per model and weights.

A `Preprocess` is read from the weights' metadata (`densenet.models.params`)
and used by ``densenet predict`` and ``evaluate``, the data modules (their
side and channels) and every engine; `densenet.deploy.export` writes
`Preprocess.to_dict` into each export (ONNX ``metadata_props``, OpenVINO's
runtime info, a JSON file beside the MXNet symbol), so that a deployer can
prepare images with numpy alone:

1. read the file as 8-bit grayscale (``channels`` 1) or RGB (3);
2. where ``convert`` is ``fashion-mnist`` and the image is not already
   ``source_size`` x ``source_size`` on a dark background, convert it as
   Fashion-MNIST's photos were (`densenet.data.inputs.fashion_mnist_form`);
   otherwise, where ``source_size`` is set, resize it to that side;
3. resize to ``input_size`` x ``input_size``, bilinear with half-pixel
   centres and clamped edges (OpenCV's ``INTER_LINEAR``, ONNX ``Resize``
   with ``coordinate_transformation_mode=half_pixel``);
4. ``(x * scale - mean) / std`` per channel, as float32 in ``layout``
   (``NCHW``).

``polarity`` says what the model expects to see: ``light-on-dark`` (a light
object on a black background, Fashion-MNIST's) or ``as-is``.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as onp

from densenet.data.images import read_image
from densenet.data.inputs import FASHION_MNIST_PHOTO, FASHION_MNIST_SIDE, as_fashion_mnist
from densenet.models.meta import Meta


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """The preprocessing of one model's weights (see the module for each step).

    Attributes:
        input_size: the square side the model sees.
        channels: 1 (grayscale) or 3 (RGB).
        classes: the class names, in label order.
        source_size: the side images are first made (Fashion-MNIST: 28), or None.
        convert: the photo conversion (``fashion-mnist``), or None.
        polarity: ``light-on-dark`` or ``as-is``.
        resize: the resize method.
        scale: the factor applied to the 8-bit values.
        mean: per channel, subtracted after scaling.
        std: per channel, divided by after that.
        layout: the input's axes.
    """

    input_size: int
    channels: int
    classes: tuple[str, ...]
    source_size: int | None = None
    convert: str | None = None
    polarity: str = 'as-is'
    resize: str = 'bilinear'
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = 'NCHW'

    @classmethod
    def for_dataset(cls, dataset: str | None, input_size: int, channels: int,
                    classes: Sequence[str]) -> Preprocess:
        """The preprocessing of a model trained on `dataset` (Fashion-MNIST's includes its
        photo conversion; an image folder's reads files at the model's channels)."""
        if dataset == 'fashion-mnist':
            return cls(int(input_size), 1, tuple(map(str, classes)), FASHION_MNIST_SIDE,
                       FASHION_MNIST_PHOTO, 'light-on-dark')
        return cls(int(input_size), int(channels), tuple(map(str, classes)))

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Preprocess:
        """The preprocessing that `to_dict` (an export's metadata) describes.

        Args:
            fields: every field by name, as JSON values.

        Returns:
            The preprocessing.
        """
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in fields.items()}
        return cls(**values)

    @classmethod
    def from_meta(cls, meta: Meta) -> Preprocess:
        """The preprocessing that params metadata describes.

        Args:
            meta: the metadata (``input_size``, ``channels``, ``classes``, ``dataset``
                and ``preprocess``; see `densenet.models.params.describe`). Without
                ``preprocess`` (a run written by release 0.1.0's first builds), the
                dataset's preprocessing.

        Returns:
            The preprocessing.
        """
        if 'preprocess' not in meta:
            return cls.for_dataset(meta.get('dataset'), meta['input_size'], meta['channels'],
                                   meta['classes'])
        return cls.from_dict({**meta['preprocess'], 'input_size': int(meta['input_size']),
                              'channels': int(meta['channels']),
                              'classes': list(map(str, meta['classes']))})

    def steps(self) -> dict[str, object]:
        """What the metadata's ``preprocess`` field holds: every field but the side,
        the channels and the classes, which the metadata keeps at its top level."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ('input_size', 'channels', 'classes')}

    def to_dict(self) -> dict[str, object]:
        """Every field, as JSON values (what each export carries).

        Returns:
            The fields by name.
        """
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def read(self, path: str | os.PathLike[str],
             convert: bool = True) -> tuple[onp.ndarray, list[str]]:
        """One image file as uint8, before the final resize.

        Args:
            path: the file.
            convert: apply the photo conversion where the model has one.

        Returns:
            ((H, W) or (H, W, 3) uint8, notes on what was done).

        Raises:
            ImageError: the file is missing or unreadable.
        """
        if self.convert == FASHION_MNIST_PHOTO:
            return as_fashion_mnist(path, convert)
        return read_image(path, self.channels)

    def tensor(self, images: Sequence[onp.ndarray]) -> onp.ndarray:
        """Images from `read` as the model's float32 input batch.

        Args:
            images: uint8 arrays, (H, W) or (H, W, C), of any sizes.

        Returns:
            float32 (N, C, input_size, input_size).
        """
        side = self.input_size
        X = onp.stack([resize_bilinear(onp.atleast_3d(image).astype(onp.float32), side, side)
                       .transpose(2, 0, 1) for image in images]) * onp.float32(self.scale)
        mean, std = (onp.asarray(v, onp.float32).reshape(1, -1, 1, 1)
                     for v in (self.mean, self.std))
        return ((X - mean) / std).astype(onp.float32)

    def __call__(self, paths: Sequence[str | os.PathLike[str]],
                 convert: bool = True) -> tuple[onp.ndarray, list[list[str]]]:
        """Image files as one input batch.

        Args:
            paths: the files.
            convert: apply the photo conversion where the model has one.

        Returns:
            (float32 (N, C, input_size, input_size), each file's notes).
        """
        read = [self.read(p, convert) for p in paths]
        return self.tensor([image for image, _ in read]), [notes for _, notes in read]


def resize_bilinear(x: onp.ndarray, height: int, width: int) -> onp.ndarray:
    """Bilinear resize with half-pixel centres and clamped edges (OpenCV's INTER_LINEAR).

    Args:
        x: float (H, W, C).
        height: the new height.
        width: the new width.

    Returns:
        float32 (height, width, C).
    """
    def taps(n_in: int, n_out: int) -> tuple[onp.ndarray, onp.ndarray, onp.ndarray]:
        src = onp.clip((onp.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = onp.floor(src).astype(int)
        return lo, onp.minimum(lo + 1, n_in - 1), (src - lo).astype(onp.float32)

    if x.shape[:2] == (height, width):
        return x.astype(onp.float32)
    r0, r1, fr = taps(x.shape[0], height)
    c0, c1, fc = taps(x.shape[1], width)
    rows = x[r0] * (1 - fr)[:, None, None] + x[r1] * fr[:, None, None]
    return (rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]
            ).astype(onp.float32)
