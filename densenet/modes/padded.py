"""The padded trace: a network's training graph with every tensor in whole channel blocks.

oneDNN keeps a tensor in its blocked layout (8 or 16 channels side by side) only
where the channel count is a whole number of blocks, and joins tensors in that
layout only at whole-block offsets. DenseNet-BC's growth rate of 12 and its
compressed transitions (108, 150 channels) are neither, and one plain tensor
makes the layers after it plain too: BatchNorm runs its slow plain-layout kernel
and the 1x1 convolutions run as im2col + GEMM.

`trace_padded` traces the same network with zero channels inserted: each
convolution gets zero filters up to a multiple of `whole_blocks()`, so every
layer's new features and every transition's output are whole blocks, and the
layers that read such a tensor get their parameters spread out to match:
BatchNorm's scale (1) and shift (0) and a convolution's or the classifier's
input weights (0) at the zero channels. A zero channel stays zero through
BatchNorm (its batch mean and variance are 0), ReLU, pooling and dropout, and
adds nothing to the next convolution, so the real channels carry the book's
values. The spreading is part of the graph, so gradients reach the model's own
parameters.

BatchNorm updates its running statistics in place, and MXNet lets an operator
write only into a graph variable: the padded BatchNorms get running statistics
of their own (`PaddedStat`), which the graph executor (mirror.py) fills from the
model's before a training step and copies back after it.
"""
from __future__ import annotations

import dataclasses

import mxnet as mx
import numpy as onp
from mxnet.gluon import Parameter, nn

from densenet.core.blocks import DenseBlock
from densenet.modes.fused import (
    FusedBatchNorm,
    bn_relu,
    conv_blocks,
    feeds_convolution,
    keeps_layout,
    whole_blocks_of,
)
from densenet.system.machine import CHANNEL_BLOCK
from densenet.system.mxcompat import activation_type, dense_flattens, layer_kwargs
from densenet.system.runtime import capabilities


def whole_blocks() -> int:
    """The channel multiple the padded trace pads to: oneDNN's channel block on this CPU,
    16 where it may use AVX-512 and 8 otherwise (its concatenation joins blocked
    tensors only at whole-block offsets).

    Returns:
        The multiple.
    """
    return 2 * CHANNEL_BLOCK if capabilities().get('avx512') else CHANNEL_BLOCK


#: Layers that map a zero channel to zero and keep the channels where they are.
_ZERO_KEEPING = (nn.Dropout, nn.MaxPool2D, nn.AvgPool2D, nn.GlobalAvgPool2D,
                 nn.GlobalMaxPool2D)


class Unpaddable(Exception):
    """The network has a layer the padded trace does not know how to spread."""


@dataclasses.dataclass(frozen=True)
class Channels:
    """Where a padded tensor's real channels are: `first` real ones and `first_pad` zeros,
    then `layers` groups of `growth` real ones and `growth_pad` zeros (a dense block's
    input and its layers' new features). ``Channels(0)`` is a tensor of unknown width
    without zeros (the network's input)."""
    first: int
    first_pad: int = 0
    layers: int = 0
    growth: int = 0
    growth_pad: int = 0

    @property
    def real(self) -> int:
        """The real channels."""
        return self.first + self.layers * self.growth

    @property
    def padded(self) -> int:
        """All channels, zeros included."""
        return self.first + self.first_pad + self.layers * (self.growth + self.growth_pad)

    @property
    def has_zeros(self) -> bool:
        """Whether any channel is a zero one."""
        return self.padded != self.real

    def join(self, new: Channels) -> Channels:
        """The channels of ``concat(this tensor, new)``, `new` being a layer's new features.

        Raises:
            Unpaddable: the result is not of this form (an unknown width, or layers of
                other widths).
        """
        if new.layers or not self.first:
            raise Unpaddable('a dense block whose input or new features are not one '
                             'convolution output')
        if self.layers and (self.growth, self.growth_pad) != (new.first, new.first_pad):
            raise Unpaddable('dense layers of different widths in one tensor')
        return dataclasses.replace(self, layers=self.layers + 1, growth=new.first,
                                   growth_pad=new.first_pad)

    def spread_values(self, value: onp.ndarray, axis: int, fill: float) -> onp.ndarray:
        """`value` (the real channels along `axis`) with `fill` at the zero channels.

        Args:
            value: the real values.
            axis: the channel axis.
            fill: the value at the zero channels.

        Returns:
            The spread array, ``self.padded`` long along `axis`.
        """
        if not self.has_zeros:
            return value
        out = onp.full((*value.shape[:axis], self.padded, *value.shape[axis + 1:]), fill,
                       value.dtype)
        where: list[slice | onp.ndarray] = [slice(None)] * value.ndim
        where[axis] = self.positions()
        out[tuple(where)] = value
        return out

    def positions(self) -> onp.ndarray:
        """The indices of the real channels among all, in order."""
        step = self.growth + self.growth_pad
        grown = (self.first + self.first_pad + step * onp.arange(self.layers)[:, None]
                 + onp.arange(self.growth)[None, :])
        return onp.concatenate([onp.arange(self.first), grown.ravel()]).astype('int64')

    def spread(self, F: mx.sym, x: mx.sym.Symbol, shape: tuple[int, ...], axis: int,
               fill: float, dtype: str) -> mx.sym.Symbol:
        """`x` (of `shape`, the real channels along `axis`) with `fill` inserted at the
        zero channels' places: a graph of splits, reshapes and concatenations.

        Args:
            F: the symbol namespace.
            x: the real values.
            shape: `x`'s shape.
            axis: the channel axis of `x`.
            fill: the value at the zero channels (0 or 1).
            dtype: `x`'s dtype.

        Returns:
            The spread symbol, ``self.padded`` long along `axis`.
        """
        if not self.has_zeros:
            return x
        before, after = shape[:axis], shape[axis + 1:]

        def filled(*size: int) -> mx.sym.Symbol:
            make = F.np.ones if fill else F.np.zeros
            return make((*before, *size, *after), dtype=dtype)
        if not self.layers:
            return F.np.concatenate([x, filled(self.first_pad)], axis=axis)
        first, grown = F.np.split(x, [self.first], axis=axis)
        parts = [first] + ([filled(self.first_pad)] if self.first_pad else [])
        grown = grown.reshape((*before, self.layers, self.growth, *after))
        if self.growth_pad:
            grown = F.np.concatenate([grown, filled(self.layers, self.growth_pad)],
                                     axis=axis + 1)
        parts.append(grown.reshape((*before, self.layers * (self.growth + self.growth_pad),
                                    *after)))
        return F.np.concatenate(parts, axis=axis)


@dataclasses.dataclass
class PaddedStat:
    """A padded BatchNorm's own running statistic: `param` (a running mean or variance)
    spread over `channels`, `fill` at the zero channels, named `name` in the graph."""
    name: str
    param: Parameter
    channels: Channels
    fill: float

    def __post_init__(self) -> None:
        self._index: dict[mx.Context, tuple[mx.nd.NDArray, mx.nd.NDArray]] = {}

    @property
    def shape(self) -> tuple[int]:
        """The padded array's shape."""
        return (self.channels.padded,)

    def _indices(self, ctx: mx.Context) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
        """(where each padded entry comes from in ``[*real, fill]``, where the real ones are)."""
        if ctx not in self._index:
            real = self.channels.positions()
            source = onp.full(self.channels.padded, self.channels.real)
            source[real] = onp.arange(self.channels.real)
            self._index[ctx] = (mx.nd.array(source, ctx=ctx, dtype='int64'),
                                mx.nd.array(real, ctx=ctx, dtype='int64'))
        return self._index[ctx]

    def load(self, padded: mx.nd.NDArray) -> None:
        """Fill `padded` (on one device) from the parameter's values there.

        Args:
            padded: the graph's array of this statistic.
        """
        real = self.param.data(padded.ctx).as_nd_ndarray()
        source, _ = self._indices(padded.ctx)
        extra = mx.nd.full((1,), self.fill, ctx=padded.ctx, dtype=padded.dtype)
        mx.nd.take(mx.nd.concat(real, extra, dim=0), source, out=padded)

    def store(self, padded: mx.nd.NDArray) -> None:
        """Copy `padded`'s real entries into the parameter's values on its device.

        Args:
            padded: the graph's array of this statistic.
        """
        _, real = self._indices(padded.ctx)
        mx.nd.take(padded, real, out=self.param.data(padded.ctx).as_nd_ndarray())


class _Trace:
    """One walk over a network that emits the padded graph (see the module): spreading
    the parameters in the graph, or with `frozen` as values of new graph variables
    (`values`), the running statistics included, for an inference graph."""

    def __init__(self, multiple: int, frozen: bool = False) -> None:
        self.multiple, self.frozen = multiple, frozen
        self.stats: dict[str, PaddedStat] = {}
        self.values: dict[str, onp.ndarray] = {}
        self.pooled = False  # the spatial axes are 1x1 (after a global pooling)
        # the tensor at hand is in oneDNN's blocked layout (a fused BatchNorm needs its
        # input so: fused.py); the network's input is not
        self.blocked = False
        self.feeds_convolution = False  # the layer at hand and the next feed one

    def spread(self, param: Parameter, ch: Channels, axis: int, fill: float,
               extra: int = 0) -> mx.sym.Symbol:
        """`param` spread over `ch` along `axis`, with `extra` zero entries appended along
        axis 0 (a convolution's zero filters)."""
        if self.frozen:
            value = ch.spread_values(param.list_data()[0].asnumpy(), axis, fill)
            value = onp.concatenate([value, onp.zeros((extra, *value.shape[1:]), value.dtype)])
            return self.constant(f'{param.name}__padded', value)
        shape, dtype = param.shape, param.dtype
        spread = ch.spread(mx.sym, param.var().as_np_ndarray(), shape, axis, fill, dtype)
        if not extra:
            return spread
        rest = list(shape[1:])  # the spread shape after axis 0
        if axis == 1:
            rest[0] = ch.padded if ch.has_zeros else shape[1]
        zeros = mx.sym.np.zeros((extra, *rest), dtype=dtype)
        return mx.sym.np.concatenate([spread, zeros])

    def constant(self, name: str, value: onp.ndarray) -> mx.sym.Symbol:
        """A graph variable `name` whose value is `value`."""
        self.values[name] = value
        return mx.sym.var(name, shape=value.shape, dtype=value.dtype).as_np_ndarray()

    def walk(self, net: nn.HybridBlock, data: mx.sym.Symbol) -> mx.sym.Symbol:
        """`net`'s output on `data`."""
        out, ch = self.layer(net, data, Channels(0))
        if ch.has_zeros:
            raise Unpaddable('the network ends in a padded tensor')
        return out

    def layer(self, blk: nn.Block, x: mx.sym.Symbol, ch: Channels
              ) -> tuple[mx.sym.Symbol, Channels]:
        """`blk` applied to `x` whose channels are `ch`: the output and its channels."""
        if isinstance(blk, DenseBlock):
            # For training each layer's input joins the block's input and all new
            # features so far in one concatenation (the book's chain joins the previous
            # join and the newest features: the same tensor). Then, but for the block's
            # input, no tensor a BatchNorm reads is joined again: the gradients that
            # concatenations hand back (MXNet writes them in the plain layout) add up
            # with one another, not with a BatchNorm's blocked gradient, which MXNet
            # would first reorder (that sum took a fifth of a DenseNet-BC-100 step).
            # Inference keeps the chain, which measured faster at batch 1.
            pieces, blocked = [x.as_nd_ndarray()], self.blocked
            for layer in blk.net:
                y, new = self.layer(layer, x, ch)
                y = y.as_nd_ndarray()
                pieces = [x.as_nd_ndarray(), y] if self.frozen else [*pieces, y]
                x = mx.sym.concat(*pieces, dim=1).as_np_ndarray()
                ch = ch.join(new)
                # oneDNN joins blocked tensors into a blocked one
                blocked = self.blocked = blocked and self.blocked
            return x, ch
        if isinstance(blk, (nn.HybridSequential, nn.Sequential)):
            children = list(blk)
            for i, child in enumerate(children):
                self.feeds_convolution = feeds_convolution(children, i)
                x, ch = self.layer(child, x, ch)
            return x, ch
        if isinstance(blk, nn.Conv2D):
            self.pooled = False
            self.blocked = conv_blocks(blk, ch.padded or blk.weight.shape[1], self.blocked)
            return self.conv(blk, x, ch)
        if isinstance(blk, nn.BatchNorm):
            return self.batch_norm(blk, x, ch)
        self.blocked = self.blocked and keeps_layout(blk)
        if isinstance(blk, nn.Dense):
            return self.dense(blk, x, ch)
        if isinstance(blk, nn.Flatten) and (self.pooled or not ch.has_zeros):
            return blk(x), ch  # one value per channel: the channels stay where they are
        if isinstance(blk, nn.Activation) and activation_type(blk) == 'relu' or \
                isinstance(blk, _ZERO_KEEPING):
            self.pooled = self.pooled or isinstance(blk, (nn.GlobalAvgPool2D,
                                                          nn.GlobalMaxPool2D))
            return blk(x), ch
        raise Unpaddable(f'a {type(blk).__name__} layer')

    def conv(self, conv: nn.Conv2D, x: mx.sym.Symbol, ch: Channels
             ) -> tuple[mx.sym.Symbol, Channels]:
        kwargs = layer_kwargs(conv)
        filters = kwargs['num_filter']
        extra = -filters % self.multiple
        if not (ch.has_zeros or extra):
            return conv(x), Channels(filters)
        if conv.act is not None or kwargs.get('num_group', 1) != 1 or \
                kwargs.get('layout', 'NCHW') != 'NCHW':
            raise Unpaddable('a grouped, activated or channels-last convolution')
        inputs = [self.spread(conv.weight, ch, 1, 0, extra)]
        if conv.bias is not None:
            inputs.append(self.spread(conv.bias, Channels(filters), 0, 0, extra))
        out = mx.sym.npx.convolution(x, *inputs, **{**kwargs, 'num_filter': filters + extra,
                                                    'no_bias': conv.bias is None})
        return out, Channels(filters, extra)

    def batch_norm(self, bn: nn.BatchNorm, x: mx.sym.Symbol, ch: Channels
                   ) -> tuple[mx.sym.Symbol, Channels]:
        """A BatchNorm; a `FusedBatchNorm` applies its ReLU too, in one operator where its
        input is a oneDNN operator's output (fused.py)."""
        fused = isinstance(bn, FusedBatchNorm)
        if not (ch.has_zeros or fused):
            return bn(x), ch
        if layer_kwargs(bn).get('axis', 1) != 1:
            raise Unpaddable('a BatchNorm over another axis than the channels')
        if not ch.has_zeros:  # the model's own parameters and statistics
            gamma, beta, *stats = (p.var().as_np_ndarray() for p in (
                bn.gamma, bn.beta, bn.running_mean, bn.running_var))
        else:
            gamma, beta = self.spread(bn.gamma, ch, 0, 1), self.spread(bn.beta, ch, 0, 0)
            stats = [self.padded_stat(param, ch, fill)
                     for param, fill in ((bn.running_mean, 0.0), (bn.running_var, 1.0))]
        if fused:  # in one operator where MXNet computes it right, for training only
            one = not self.frozen and self.blocked and self.feeds_convolution and \
                whole_blocks_of(ch.padded or bn.gamma.shape[0]) and bn.fusable()
            return bn_relu(mx.sym, x, gamma, beta, *stats, fused=one, **layer_kwargs(bn)), ch
        return mx.sym.npx.batch_norm(x, gamma, beta, *stats, **layer_kwargs(bn)), ch

    def padded_stat(self, param: Parameter, ch: Channels, fill: float) -> mx.sym.Symbol:
        """A running statistic spread over `ch`: its values, frozen; else a graph variable
        of its own (`PaddedStat`)."""
        if self.frozen:
            return self.spread(param, ch, 0, fill)
        stat = PaddedStat(f'{param.name}__padded', param, ch, fill)
        self.stats[stat.name] = stat
        return mx.sym.var(stat.name, shape=stat.shape, dtype=param.dtype).as_np_ndarray()

    def dense(self, dense: nn.Dense, x: mx.sym.Symbol, ch: Channels
              ) -> tuple[mx.sym.Symbol, Channels]:
        units = dense.weight.shape[0]
        if not ch.has_zeros:
            return dense(x), Channels(units)
        if not (self.pooled and dense_flattens(dense)):
            raise Unpaddable('a Dense layer on more than one value per channel')
        inputs = [self.spread(dense.weight, ch, 1, 0)]
        if dense.bias is not None:
            inputs.append(dense.bias.var().as_np_ndarray())
        out = mx.sym.npx.fully_connected(x, *inputs, num_hidden=units, flatten=True,
                                         no_bias=dense.bias is None)
        return (dense.act(out) if dense.act is not None else out), Channels(units)


def trace_padded(net: nn.HybridBlock, data: mx.sym.Symbol, multiple: int | None = None
                 ) -> tuple[mx.sym.Symbol, dict[str, PaddedStat]]:
    """The padded training graph of `net` on input `data` (see the module).

    Args:
        net: a network whose parameters have their shapes.
        data: the input symbol (numpy-mode).
        multiple: the channel multiple (default `whole_blocks()`).

    Returns:
        (the output symbol, the padded BatchNorms' statistics by graph name); no
        statistics where no channel needed padding.

    Raises:
        Unpaddable: a layer it cannot spread, or an output with zero channels.
    """
    trace = _Trace(multiple or whole_blocks())
    out = trace.walk(net, data)
    return out, trace.stats


def trace_frozen(net: nn.HybridBlock, data: mx.sym.Symbol, multiple: int | None = None
                 ) -> tuple[mx.sym.Symbol, dict[str, onp.ndarray]]:
    """The padded inference graph of `net` on input `data`, its spread parameters and
    running statistics taken as they are now: new graph variables with their values.

    Args:
        net: a network whose parameters have their shapes.
        data: the input symbol (numpy-mode).
        multiple: the channel multiple (default `whole_blocks()`).

    Returns:
        (the output symbol, {graph variable: value} for the new variables; the graph's
        other inputs are `net`'s parameters).

    Raises:
        Unpaddable: a layer it cannot spread, or an output with zero channels.
    """
    trace = _Trace(multiple or whole_blocks(), frozen=True)
    out = trace.walk(net, data)
    return out, trace.values


def needs_padding(net: nn.HybridBlock) -> bool | None:
    """Whether the padded trace applies to `net` and some channel count of `net` is not
    a multiple of `CHANNEL_BLOCK`, oneDNN's block on every CPU (a growth rate of 12; the
    book's model and the ImageNet ones have none, and are left as they are).

    Args:
        net: a network whose parameters have their shapes.

    Returns:
        True where `trace_padded` succeeds and pads some BatchNorm's input; None while
        a parameter's shape is unknown (deferred initialization).
    """
    if not shapes_known(net):
        return None
    try:
        data = mx.sym.var('data').as_np_ndarray()
        return bool(trace_padded(net, data, CHANNEL_BLOCK)[1])
    except Unpaddable:
        return False


def shapes_known(net: nn.Block) -> bool:
    """Whether every parameter of `net` has its shape (no deferred initialization left).

    Args:
        net: the network.

    Returns:
        True when all shapes are known.
    """
    # unknown sizes are 0, or -1 under numpy shape semantics
    return all(p.shape and min(p.shape) > 0 for p in net.collect_params().values())


