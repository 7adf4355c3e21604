"""The batch a network takes: its input channels, and one batch of zeros that fixes its
deferred parameter shapes."""
from __future__ import annotations

from mxnet import autograd, np
from mxnet.gluon import nn


def input_channels(net: nn.Block) -> int:
    """The input channels of a network: its first convolution's, or 1 while deferred.

    Args:
        net: a network (a model's ``.net``).

    Returns:
        The channel count.
    """
    first = next(iter(net.collect_params().values()))
    return first.shape[1] if len(first.shape) == 4 and first.shape[1] > 0 else 1


def fix_shapes(net: nn.Block, side: int, channels: int | None = None) -> None:
    """One forward pass of zeros (1, channels, side, side) on the network's device, so
    that every deferred parameter shape is known; no value changes except the draws of
    parameters initialised now, which depend on their shapes only.

    Args:
        net: a network (a model's ``.net``).
        side: the square side of the zeros.
        channels: their channels (default: `input_channels`).
    """
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    with autograd.pause():
        net(np.zeros((1, channels or input_channels(net), side, side), ctx=ctx))
