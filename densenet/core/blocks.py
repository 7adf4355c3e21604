"""The book's building blocks: conv_block, DenseBlock and transition_block.

They are Gluon HybridBlocks. Called without ``hybridize()`` they run the same
imperative operators as the d2l code (BatchNorm, ReLU, Conv2D and
``np.concatenate`` along the channel axis); hybridized, the same graph runs as
one cached symbol. Faster or leaner ways to compute the same values live in
densenet.modes.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from mxnet import np, npx
from mxnet.gluon import nn

npx.set_np()  # the book's arrays are mxnet.numpy ones (d2l sets this too)


def conv_block(num_channels: int) -> nn.HybridSequential:
    """BatchNorm -> ReLU -> 3x3 convolution with `num_channels` outputs (the book's).

    Args:
        num_channels: output channels of the convolution.

    Returns:
        The three layers as a `nn.HybridSequential`.
    """
    blk = nn.HybridSequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=3, padding=1))
    return blk


class DenseBlock(nn.HybridBlock):
    """`num_convs` conv blocks; each one's output is concatenated onto its input.

    With ``c`` input channels the output has ``c + num_convs * num_channels``
    channels: the block's growth rate is `num_channels`.

    Args:
        num_convs: the number of layers.
        num_channels: the channels each layer adds (the growth rate).
        layer: builds each layer from the growth rate: the book's `conv_block`;
            DenseNet-BC passes its bottleneck layer.
    """

    def __init__(self, num_convs: int, num_channels: int,
                 layer: Callable[[int], nn.HybridBlock] = conv_block) -> None:
        super().__init__()
        self.net = nn.HybridSequential()
        for _ in range(num_convs):
            self.net.add(layer(num_channels))

    def hybrid_forward(self, F: ModuleType, X: np.ndarray) -> np.ndarray:
        for blk in self.net:
            Y = blk(X)
            # Concatenate input and output of each block along the channels
            X = F.np.concatenate((X, Y), axis=1)
        return X


def transition_block(num_channels: int, use_bias: bool = True,
                     pool: str = 'avg') -> nn.HybridSequential:
    """BatchNorm -> ReLU -> 1x1 conv to `num_channels` -> 2x2 average (or max) pool.

    The pool has stride 2, so the height and width are halved (floored for odd
    sizes, as MXNet's 'valid' pooling convention does).

    Args:
        num_channels: output channels of the 1x1 convolution.
        use_bias: give the convolution a bias: the book's has one; DenseNet-BC's (and
            the model zoo's) has none.
        pool: 'avg', the book's average pooling, or 'max' for max pooling (the
            chapter's first exercise); both 2x2 with stride 2.

    Returns:
        The four layers as a `nn.HybridSequential`.

    Raises:
        ValueError: `pool` is neither 'avg' nor 'max'.
    """
    if pool not in ('avg', 'max'):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    pooling = nn.AvgPool2D if pool == 'avg' else nn.MaxPool2D
    blk = nn.HybridSequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=1, use_bias=use_bias),
            pooling(pool_size=2, strides=2))
    return blk
