"""Test-time augmentation: a model's logits averaged over an image and its mirror image."""
from __future__ import annotations

from typing import Callable

from mxnet import np

from densenet.system.hints import Array


class FlipAverage:
    """Called on a batch (N, C, H, W), returns the mean of `model`'s logits on the batch
    and on the batch flipped left to right (the flip the training augmentation uses)."""

    def __init__(self, model: Callable[[Array], Array]) -> None:
        self.model = model

    def __call__(self, X: Array) -> Array:
        return (self.model(X) + self.model(np.flip(X, axis=3))) / 2
