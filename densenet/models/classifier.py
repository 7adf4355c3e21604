"""`CheckedClassifier`: what the package's models add to the book's d2l.Classifier.

Input and label checks with a clear error, the smallest input side a network
accepts (traced from its layers), the pooled features, and a new classifier for
fine-tuning. It computes nothing the book's model does not.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as onp
from d2l import mxnet as d2l
from mxnet import autograd, gluon, init, np
from mxnet.gluon import nn

from densenet.system.hints import Array
from densenet.system.mxcompat import block_cache, is_hybridized, layer_kwargs, leaves


def _out_size(layer: nn.Block, size: tuple[int, ...]) -> tuple[int, ...]:
    """Spatial (h, w) after a Conv2D or pooling leaf layer; others keep it."""
    kw = layer_kwargs(layer)
    if isinstance(layer, (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D,
                          nn.GlobalAvgPool2D, nn.GlobalMaxPool2D)):
        if kw.get('global_pool'):
            return (1, 1) if min(size) >= 1 else (0, 0)
        # each argument is one int or one per spatial axis
        k, s, p, d = (onp.broadcast_to(kw.get(arg, 1), 2)
                      for arg in ('kernel', 'stride', 'pad', 'dilate'))
        span = onp.array(size) + 2 * p - d * (k - 1) - 1
        if (span < 0).any():
            return (0, 0)
        ceil = kw.get('pooling_convention') == 'full'  # pooling that rounds up
        return tuple(int(n) + 1 for n in (-(-span // s) if ceil else span // s))
    return size


def spatial_trace(net: nn.Block,
                  size: int | tuple[int, int]) -> Iterator[tuple[nn.Block, tuple[int, ...]]]:
    """The spatial size after every leaf layer of `net` for a square input.

    Args:
        net: a network of Gluon layers.
        size: the input side, or (height, width).

    Yields:
        (layer, (h, w)), one per leaf layer, in order.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    for layer in leaves(net):
        hw = _out_size(layer, hw)
        yield layer, hw


def min_input_size(net: nn.Block, limit: int = 4096) -> int:
    """Smallest square side for which no layer of `net` shrinks below 1x1.

    Args:
        net: a network of Gluon layers.
        limit: the largest side tried.

    Returns:
        The side in pixels.

    Raises:
        ValueError: no side up to `limit` fits the network.
    """
    for side in range(1, limit + 1):
        if all(min(hw) >= 1 for _, hw in spatial_trace(net, side)):
            return side
    raise ValueError(f'no input size up to {limit} fits this network')


class CheckedClassifier(d2l.Classifier):
    """A d2l.Classifier that refuses bad batches and labels with a clear error.

    MXNet itself would clip out-of-range labels into range, truncate
    fractional ones, fail on a dtype mismatch with "requires uniform type"
    or on an empty batch with an internal check, and turn NaN pixels into
    finite logits; every one of those becomes a ValueError naming the fix.

    The checks of a batch's shape and dtype run on every call; those that read
    values (NaN pixels, labels), which wait for the device, run on the first
    batch of each shape only, so that training never waits on them.
    """

    #: The registry name and constructor arguments `registry.get_model` built it from.
    registry_name: str = ''
    registry_kwargs: dict[str, Any] = {}

    def _checked(self) -> set[tuple[str, tuple[int, ...]]]:
        """The (kind, shape) pairs that have passed the value checks."""
        return block_cache(self, '_checked_shapes', set)

    def min_input_size(self) -> int:
        """Smallest square image side this network accepts.

        Returns:
            The side in pixels, computed from the network's layers.
        """
        return block_cache(self, '_min_size', lambda: min_input_size(self.net))

    def stem_weight(self) -> gluon.Parameter:
        """The first convolution's weight (looked up once: forward calls this per batch).

        Returns:
            The weight `gluon.Parameter`.
        """
        return block_cache(self, '_stem', lambda: next(iter(self.net.collect_params().values())))

    def check_input(self, X: Array) -> None:
        """Check a batch before it reaches MXNet.

        Args:
            X: a batch of images, (N, C, H, W).

        Raises:
            ValueError: naming the problem and the fix: not 4-D, empty, another channel
                count than the model's, smaller than `min_input_size`, a dtype other
                than the model's (an integer batch: divide by 255), or NaN or infinite
                values (in the first batch of its shape).
        """
        if X.ndim != 4:
            raise ValueError(
                f'DenseNet expects a 4-D batch (N, C, H, W), got shape {X.shape}; '
                'add the missing axes, e.g. X.reshape(1, 1, H, W) for one grayscale image')
        if X.shape[0] == 0:
            raise ValueError(f'empty batch (shape {X.shape}): pass at least one image')
        stem = self.stem_weight()
        if stem.shape[1] > 0 and X.shape[1] != stem.shape[1]:
            raise ValueError(
                f'this DenseNet was built for {stem.shape[1]}-channel images, '
                f'got {X.shape[1]} channels in shape {X.shape}; convert the images '
                'or build a new model for this channel count')
        side = self.min_input_size()
        if min(X.shape[2:]) < side:
            raise ValueError(
                f'images of {X.shape[2]}x{X.shape[3]} are too small for this DenseNet: '
                f'its pooling stages need at least {side}x{side} (the book resizes '
                'Fashion-MNIST to 96x96, e.g. FashionMNIST(resize=(96, 96)))')
        if X.dtype != stem.dtype:
            want = onp.dtype(stem.dtype).name
            scale = (' / 255 (images go in as values in [0, 1], as ToTensor makes them)'
                     if onp.issubdtype(X.dtype, onp.integer) else '')
            raise ValueError(f'this DenseNet computes in {want}, got a batch of '
                             f'{onp.dtype(X.dtype).name}; convert it with '
                             f'X.astype("{want}"){scale}')
        if ('input', X.shape) in self._checked():
            return
        with autograd.pause():
            if not bool(np.isfinite(X).all()):
                raise ValueError(f'the batch of shape {X.shape} holds NaN or infinite values; '
                                 'check how the images were read and scaled')
        self._checked().add(('input', X.shape))

    def check_labels(self, Y: Array | onp.ndarray) -> None:
        """Check that every label is a class index.

        Args:
            Y: the labels of a batch.

        Raises:
            ValueError: a label outside ``0..num_classes-1`` or not a whole number (in
                the first batch of its shape).
        """
        if ('labels', Y.shape) in self._checked():
            return
        y = Y if isinstance(Y, onp.ndarray) else Y.asnumpy()
        classes = self.net[-1].weight.shape[0]
        bad = y[~(onp.isfinite(y) & (y == onp.round(y)) & (y >= 0) & (y < classes))]
        if bad.size:
            shown = [float(f'{v:.4g}') for v in bad[:3]]
            raise ValueError(f'labels must be class indices 0..{classes - 1} (whole numbers) '
                             f'for this {classes}-class model, got {shown}; fix the labels '
                             'or build the model with num_classes covering them')
        self._checked().add(('labels', Y.shape))

    def forward(self, X: Array) -> Array:
        """The logits of a checked batch.

        Args:
            X: a batch of images, (N, C, H, W), float in [0, 1].

        Returns:
            The logits, (N, num_classes).

        Raises:
            ValueError: a bad batch (see `check_input`).
        """
        self.check_input(X)
        return self.net(X)

    def forward_features(self, X: Array) -> Array:
        """The pooled features that enter the classifier.

        Args:
            X: a batch of images, (N, C, H, W).

        Returns:
            The features, shape (N, num_features).
        """
        self.check_input(X)
        for i in range(len(self.net) - 1):
            X = self.net[i](X)
        return X.reshape(X.shape[0], -1)

    def reset_classifier(self, num_classes: int) -> CheckedClassifier:
        """Replace the final Dense layer by a new, Xavier-initialised one.

        For fine-tuning to other classes; the saved parameter names stay the same.

        Args:
            num_classes: outputs of the new layer.

        Returns:
            The model itself.

        Raises:
            ValueError: `num_classes` is not a positive integer.
        """
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(f'num_classes must be a positive integer, got {num_classes!r}')
        head = nn.Dense(num_classes, in_units=self.num_features)
        head.initialize(init.Xavier(), ctx=self.net[-1].weight.list_ctx())
        self.net.register_child(head, str(len(self.net) - 1))  # same name; the graph is dropped
        if is_hybridized(self.net):
            head.hybridize()
        self.num_classes = self.hparams['num_classes'] = num_classes
        self._checked().clear()  # labels are checked against the new count
        return self

    def classifier_params(self) -> gluon.ParameterDict:
        """The final Dense layer's parameters (what --freeze-features trains).

        Returns:
            Their `gluon.ParameterDict`.
        """
        return self.net[-1].collect_params()

    def loss(self, Y_hat: Array, Y: Array, averaged: bool = True) -> Array:
        """d2l's softmax cross-entropy, on checked labels.

        Args:
            Y_hat: the logits, (N, num_classes).
            Y: the labels, (N,).
            averaged: return the mean over the batch rather than one loss per example.

        Returns:
            The loss.

        Raises:
            ValueError: a bad label (see `check_labels`).
        """
        self.check_labels(Y)
        return super().loss(Y_hat, Y, averaged)

