"""Test-time augmentation: a model's logits averaged over an image and its mirror image."""
from __future__ import annotations

from collections.abc import Callable

from mxnet import np

from densenet.system.hints import Array


class FlipAverage:
    """Logits averaged over each image and its left-right mirror (``--tta``).

    Called on a batch (N, C, H, W), it returns the mean of `model`'s logits on
    the batch and on the batch flipped left to right (the flip the training
    augmentation uses).

    Args:
        model: the model, or any callable from a batch to logits.
    """

    def __init__(self, model: Callable[[Array], Array]) -> None:
        self.model = model

    def __call__(self, X: Array) -> Array:
        """The flip-averaged logits of a batch.

        Args:
            X: the batch, (N, C, H, W).

        Returns:
            The logits, (N, num_classes).
        """
        return (self.model(X) + self.model(np.flip(X, axis=3))) / 2
