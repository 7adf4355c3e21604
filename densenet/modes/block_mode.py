"""Other ways for a DenseBlock to compute the book's values: fast concat, whole channel
blocks, memory-efficient.

A `DenseBlock` computes ``X = concat(X, layer(X))`` per layer with the
book's ``np.concatenate``. Four modes change how, never what:

- ``concat='legacy'`` joins through the legacy ``concat`` operator, which
  oneDNN implements on CPU (the numpy-mode one has no oneDNN kernel and forces
  a layout reorder around every concatenation); the fast path uses it.
- ``channel_block=B`` computes each layer's new features with its last
  convolution's filters padded with zero filters to a multiple of B
  (`PaddedConv2D`); the fast path on a CPU uses `CHANNEL_BLOCK` (8), so that
  a growth rate of 12 runs oneDNN's blocked kernels.
- ``padded=True`` (the fast path on a CPU) trains a hybridized network whose
  channel counts are not multiples of 8 on its padded trace (padded.py), whose
  zero channels make every tensor whole oneDNN channel blocks, through MXNet's
  graph executor (mirror.py).
- ``memory_efficient=True`` keeps only each layer's new features while
  training and recomputes the rest of the layer in backward: imperatively
  with an autograd.Function per layer (concatenation, BatchNorm, ReLU);
  hybridized, traced as a graph whose layer nodes are marked for MXNet's
  executor to recompute (mirror.py), which ``model(X)`` under
  ``autograd.record()`` then trains through.

A block in another mode than the book's becomes a `ModedDenseBlock`, the
book's `DenseBlock` with its forward pass replaced by the mode's (its class is
switched in place, so its layers, parameters and their saved names stay as
they are); back in the book's mode it is a `DenseBlock` again. Switch modes
with `set_concat_mode` / `set_memory_efficient` (or the models'
``set_memory_efficient`` method), or for a ``with`` block only with
`concat_mode`, which restores what was there.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import mxnet as mx
from d2l import mxnet as d2l
from mxnet import autograd, np
from mxnet.gluon import nn

from densenet.core.blocks import DenseBlock
from densenet.errors import UsageError
from densenet.modes.fused import fusion_applies, is_fused, mark_fusable, set_fused_bn_relu
from densenet.modes.mirror import forget_executors, mark_recomputed, train_forward
from densenet.modes.padded import needs_padding
from densenet.system.hints import Array, ArrayOrSymbol, OpNamespace
from densenet.system.machine import CHANNEL_BLOCK
from densenet.system.mxcompat import (
    block_cache,
    drop_cached_graph,
    forget_block_cache,
    is_hybridized,
    layer_kwargs,
    leaves,
)
from densenet.system.runtime import naive_engine

CONCAT_MODES = ('numpy', 'legacy')
#: A model (a d2l.Classifier with a ``net``) or its network: what the setters take and return.
M = TypeVar('M', bound='d2l.Classifier | nn.Block')
C = TypeVar('C', bound=d2l.Classifier)


def network(model: d2l.Classifier | nn.Block) -> nn.Block:
    """The Gluon network of a model (its ``.net``), or `model` itself if it is a network
    or a block (a DenseBlock's own ``.net`` holds only its layers).

    Args:
        model: a model or a network.

    Returns:
        The network.
    """
    return model.net if isinstance(model, d2l.Classifier) else model


def concat_channels(F: OpNamespace, *arrays: ArrayOrSymbol, mode: str = 'numpy') -> ArrayOrSymbol:
    """Concatenate `arrays` along axis 1 (channels), by the chosen operator.

    Args:
        F: the operator namespace (`mx.nd` or `mx.sym`, as HybridBlocks receive it).
        *arrays: the arrays or symbols to join.
        mode: 'numpy' (the book's ``np.concatenate``) or 'legacy' (oneDNN's ``concat``).

    Returns:
        The concatenation.
    """
    if mode == 'numpy':
        return F.np.concatenate(arrays, axis=1)
    return F.concat(*(a.as_nd_ndarray() for a in arrays), dim=1).as_np_ndarray()


@dataclasses.dataclass(frozen=True)
class BlockMode:
    """How a DenseBlock computes: its concatenation operator, whether it recomputes, the
    channel block its layers' new features are computed in (`PaddedConv2D`; 1: off),
    and whether a hybridized network of such blocks trains on its padded trace
    (padded.py) where its channels need it."""
    concat: str = 'numpy'
    memory_efficient: bool = False
    channel_block: int = 1
    padded: bool = False

    def __call__(self, block: DenseBlock, F: OpNamespace, X: ArrayOrSymbol) -> ArrayOrSymbol:
        """The block's forward pass in this mode (DenseBlock calls it).

        Args:
            block: the dense block.
            F: the operator namespace.
            X: the block's input.

        Returns:
            The block's output, the same values as the book's loop.
        """
        if self.memory_efficient:
            if F is not mx.nd:
                return self._marked(block, F, X)
            if autograd.is_recording():
                return _checkpointed(block, X)
        for layer in block.net:
            X = concat_channels(F, X, layer(X), mode=self.concat)
        return X

    def _marked(self, block: DenseBlock, F: OpNamespace, X: ArrayOrSymbol) -> ArrayOrSymbol:
        """The traced block: each layer joins the block input and the new features so far
        in one concatenation, and its nodes are marked for recomputation (mirror.py)."""
        features = [X]
        for layer in block.net:
            joined = concat_channels(F, *features, mode=self.concat) if len(features) > 1 else X
            features.append(mark_recomputed(layer(joined), features))
        return concat_channels(F, *features, mode=self.concat)


BOOK = BlockMode()  # a plain DenseBlock: the book's own loop in blocks.py


class ModedDenseBlock(DenseBlock):
    """A `DenseBlock` that computes in `block_mode` (see the module): `set_modes` makes one."""

    block_mode: BlockMode

    def hybrid_forward(self, F: OpNamespace, X: ArrayOrSymbol) -> ArrayOrSymbol:
        return self.block_mode(self, F, X)


class PaddedConv2D(nn.Conv2D):
    """A dense layer's last `Conv2D`, computed with zero filters appended up to a multiple
    of `channel_block`, whose outputs are then dropped: the same values, by oneDNN's
    blocked kernels. A filter count that is not a multiple of the CPU's channel block
    (a growth rate of 12) runs as im2col + GEMM in the plain layout instead.
    `set_modes` makes one from a dense layer's `Conv2D`, in place."""

    channel_block: int

    def hybrid_forward(self, F: OpNamespace, x: ArrayOrSymbol, weight: ArrayOrSymbol,
                       bias: ArrayOrSymbol | None = None) -> ArrayOrSymbol:
        filters, shape = self._channels, self.weight.shape
        extra = -filters % self.channel_block
        # the zeros where the weight is (imperatively: its device)
        where = {'dtype': self.weight.dtype, **({} if F is mx.sym else {'ctx': weight.ctx})}
        padded = [F.np.concatenate([weight, F.np.zeros((extra, *shape[1:]), **where)])]
        if bias is not None:
            padded.append(F.np.concatenate([bias, F.np.zeros((extra,), **where)]))
        out = F.npx.convolution(x, *padded, name='fwd',
                                **{**self._kwargs, 'num_filter': filters + extra})
        return F.np.split(out, [filters], axis=1)[0]


def _new_features_conv(layer: nn.Block) -> nn.Conv2D | None:
    """A dense layer's last convolution, the one that makes its new features (None: none).

    Args:
        layer: one layer of a dense block.

    Returns:
        The convolution.
    """
    return next((b for b in reversed(list(leaves(layer))) if isinstance(b, nn.Conv2D)), None)


def _growth_convolutions(block: DenseBlock) -> list[nn.Conv2D]:
    """Each layer's `_new_features_conv`, where it is a Gluon `Conv2D` (or already a
    `PaddedConv2D`) of known shape, NCHW, ungrouped and without an activation."""
    convs = [_new_features_conv(layer) for layer in block.net]
    return [c for c in convs if c is not None and type(c) in (nn.Conv2D, PaddedConv2D)
            and c.act is None and all(c.weight.shape)
            and (layer_kwargs(c)['num_group'], layer_kwargs(c)['layout']) == (1, 'NCHW')]


def mode_of(block: DenseBlock) -> BlockMode:
    """The compute mode of a dense block (the book's loop when none is set).

    Args:
        block: the dense block.

    Returns:
        Its `BlockMode`.
    """
    return block.block_mode if isinstance(block, ModedDenseBlock) else BOOK


def _checkpointed(block: DenseBlock, X: Array) -> Array:
    """Keep only each layer's new features; recompute the rest in backward."""
    features = [X]
    for layer in block.net:
        features.append(_Recompute(layer, autograd.is_training())(*features))
    return np.concatenate(features, axis=1)


class _Recompute(autograd.Function):
    """One dense layer on the concatenation of `features`, stored only as its inputs.

    Forward runs the layer without recording; backward concatenates and runs it
    again under autograd, so the concatenation and the BatchNorm/ReLU outputs
    live only while one layer's gradient is computed (torchvision's
    memory-efficient DenseNet does the same with checkpointing).
    """

    def __init__(self, block: nn.HybridBlock, training: bool) -> None:
        super().__init__()
        self.block, self.training = block, training

    def forward(self, *features: Array) -> Array:
        with autograd.train_mode() if self.training else autograd.predict_mode():
            Y = self.block(np.concatenate(features, axis=1))
        self.save_for_backward(*features)
        return Y

    def backward(self, dY: Array) -> tuple[Array, ...]:
        # MXNet calls this from its engine with legacy arrays and numpy mode off.
        with mx.util.np_shape(True), mx.util.np_array(True):
            # MXNet's BatchNorm updates its running statistics in the backward pass, so
            # they are updated once, here, as on the standard path.
            xs = [x.copy() for x in self.saved_tensors]
            # MXNet's registry keeps this Function object after backward; drop the
            # features here, or every training step leaks them.
            self.saved_tensors: tuple[Array, ...] = ()
            for x in xs:
                x.attach_grad()
            with autograd.record(train_mode=self.training):
                Y = self.block(np.concatenate(xs, axis=1))
            Y.backward(dY.as_np_ndarray())
            return tuple(x.grad.as_nd_ndarray() for x in xs)


def dense_blocks(net: nn.Block) -> list[DenseBlock]:
    """Every DenseBlock inside `net`.

    Args:
        net: a model's network, or any Gluon block.

    Returns:
        The blocks, in order.
    """
    found: list[DenseBlock] = []
    net.apply(lambda b: found.append(b) if isinstance(b, DenseBlock) else None)
    return found


class ExecutorSequential(nn.HybridSequential):
    """A model's network that, hybridized, may train through MXNet's graph executor
    (mirror.py; `set_memory_efficient` and `prepare_model` make one in place): a
    recorded training pass with memory-efficient dense blocks runs the recomputing
    graph, and one whose blocks are all ``padded`` the padded trace (padded.py) where
    the network's channels need it. Otherwise it computes as a HybridSequential."""

    def forward(self, x: Array, *args: Array) -> Array:
        # Through the executor only what it computes: a recorded pass that needs no
        # gradient of its input, under the NaiveEngine (whose nested backward it needs).
        if not args and isinstance(x, mx.np.ndarray) and x.grad is None \
                and autograd.is_recording() and is_hybridized(self) and naive_engine():
            modes = [mode_of(b) for b in dense_blocks(self)]
            out = None
            if any(m.memory_efficient for m in modes):
                out = train_forward(self, x)
            elif modes and all(m.padded for m in modes) and self._padded_trace_applies():
                out = train_forward(self, x, padded=True)
            if out is not None:
                return out
        return super().forward(x, *args)

    def _padded_trace_applies(self) -> bool:
        """Whether the padded trace applies to this network: decided once its parameters
        have their shapes, and kept until `forget_executors`."""
        decided = block_cache(self, '_needs_padding', lambda: needs_padding(self))
        if decided is None:  # shapes still deferred: decide on a later call
            forget_block_cache(self, '_needs_padding')
        return bool(decided)

    def cast(self, dtype: str) -> None:
        forget_executors(self)  # traced and bound for the old dtype
        super().cast(dtype)

    def register_child(self, block: nn.Block, name: str | None = None) -> None:
        forget_executors(self)  # a replaced layer (reset_classifier)
        super().register_child(block, name)


def set_memory_efficient(net: M, flag: bool = True) -> M:
    """Turn every DenseBlock's memory-efficient mode on or off.

    With it, a dense block keeps each layer's new features rather than every
    concatenation and BatchNorm/ReLU output, and recomputes those in backward:
    memory grows linearly instead of quadratically with the block's depth.
    Imperatively that is an autograd.Function per layer; a hybridized net
    trains through MXNet's recomputing graph executor (mirror.py).

    Args:
        net: a model, its ``.net``, or a block.
        flag: on (True) or off.

    Returns:
        `net` itself.

    Raises:
        RuntimeError: MXNet runs another engine than the NaiveEngine, which the
            nested backward needs.
        ValueError: the network has dropout layers, which cannot be recomputed.
        UsageError: turning it on for a network without dense blocks (a ResNet).
    """
    model, net = net, network(net)
    blocks = dense_blocks(net)
    if flag and not blocks:
        raise UsageError(f'memory_efficient recomputes the layers of dense blocks, and this '
                         f'{type(model).__name__} has none')
    if flag and not naive_engine():
        raise RuntimeError('memory_efficient needs MXNet\'s NaiveEngine (its nested backward '
                           'races under the threaded engine): start Python with '
                           'MXNET_ENGINE_TYPE=NaiveEngine (densenet sets it on CPU-only builds '
                           'when it is imported before mxnet)')
    if flag and any(isinstance(b, nn.Dropout) for block in blocks for b in leaves(block)):
        raise ValueError('memory_efficient cannot recompute dropout layers '
                         'identically; use dropout=0')
    if flag and type(net) is nn.HybridSequential:
        net.__class__ = ExecutorSequential
    set_modes(net, lambda b: dataclasses.replace(mode_of(b), memory_efficient=flag))
    return model


def set_modes(net: nn.Block, mode: Callable[[DenseBlock], BlockMode]) -> None:
    """Make every dense block of `net` compute in the mode `mode` gives it (all or none:
    callers check first), in place, and drop the cached graphs and executors, so that
    the next call traces the new modes.

    Args:
        net: a model's network, or any Gluon block.
        mode: each block's new mode; `BOOK` makes it a plain `DenseBlock` again.
    """
    for block in dense_blocks(net):
        if (new := mode(block)) == BOOK:  # a plain DenseBlock again, nothing of modes on it
            block.__class__ = DenseBlock
            block.__dict__.pop('block_mode', None)
        else:
            block.__class__, block.__dict__['block_mode'] = ModedDenseBlock, new
        for conv in _growth_convolutions(block):
            if layer_kwargs(conv)['num_filter'] % new.channel_block:
                conv.__class__, conv.__dict__['channel_block'] = PaddedConv2D, new.channel_block
            else:
                conv.__class__ = nn.Conv2D
                conv.__dict__.pop('channel_block', None)
    if is_fused(net):  # the layers that feed each fused BatchNorm may have changed
        mark_fusable(net, _joins_onednn)
    retrace(net)


def retrace(net: nn.Block) -> None:
    """Drop `net`'s traced graphs and executors, so that its next call traces it anew
    (after a change of its blocks' modes or classes).

    Args:
        net: a model's network, or any Gluon block.
    """
    net.apply(lambda b: drop_cached_graph(b) if isinstance(b, nn.HybridBlock) else None)
    forget_executors(net)


def _joins_onednn(block: DenseBlock) -> bool:
    """Whether a dense block joins its features through oneDNN's concatenation."""
    return mode_of(block).concat == 'legacy'


def fuse_bn_relu(net: nn.Block, flag: bool) -> None:
    """Fuse every BatchNorm -> ReLU pair of `net` into one oneDNN operator, or unfuse
    them (fused.py), and drop the graphs traced before.

    Args:
        net: a model's network.
        flag: fuse (True) or unfuse.
    """
    if set_fused_bn_relu(net, flag, _joins_onednn) or flag:  # flag: marked anew
        retrace(net)


# oneDNN's legacy concat writes each layer's new channels into a view of the joint
# output; when the growth rate is not a multiple of its channel block (16 with
# AVX-512, 8 with AVX2), training fails in backward with "could not construct a
# sub-memory". A multiple of 16 suits both.
SAFE_GROWTH_MULTIPLE = 16


def growth_rates(net: nn.Block) -> list[int]:
    """The growth rate (new channels per layer) of every DenseBlock inside `net`.

    Args:
        net: a model's network.

    Returns:
        One growth rate per dense block.
    """
    return [layer_kwargs(_new_features_conv(block.net[0]))['num_filter']
            for block in dense_blocks(net)]


def fast_concat_mode(net: nn.Block) -> str:
    """The concatenation that the fast path can use for every block of `net`.

    Args:
        net: a model's network.

    Returns:
        'legacy' (oneDNN's concat) where it is safe for every block, else 'numpy'.
    """
    return 'legacy' if all(k % SAFE_GROWTH_MULTIPLE == 0 for k in growth_rates(net)) else 'numpy'


def set_concat_mode(net: M, mode: str) -> M:
    """Switch every DenseBlock inside `net` to concatenation `mode`.

    Both modes compute identical values; a hybridized net's cached graph is
    dropped so that the next call rebuilds it with the new operator.

    Args:
        net: a model, its ``.net``, or a block.
        mode: 'numpy' or 'legacy'.

    Returns:
        `net` itself.

    Raises:
        ValueError: `mode` is not one of them.
    """
    if mode not in CONCAT_MODES:
        raise ValueError(f'concat mode must be one of {CONCAT_MODES}, got {mode!r}')
    set_modes(network(net), lambda b: dataclasses.replace(mode_of(b), concat=mode))
    return net


def channel_block(ctxs: mx.Context | Sequence[mx.Context]) -> int:
    """The channel block the fast path computes new features in on `ctxs`.

    Args:
        ctxs: the devices.

    Returns:
        `CHANNEL_BLOCK` where every device is a CPU (oneDNN's blocked kernels), else 1.
    """
    devices = [ctxs] if isinstance(ctxs, mx.Context) else ctxs
    return CHANNEL_BLOCK if all(c.device_type == 'cpu' for c in devices) else 1


@contextlib.contextmanager
def concat_mode(net: nn.HybridBlock, mode: str | None, hybridize: bool = False,
                channel_block: int | None = None) -> Iterator[nn.HybridBlock]:
    """`net` with concatenation `mode`, hybridized if asked, for the `with` body only.

    Afterwards every block has its previous mode and `net` its previous
    hybridization, and the graph traced meanwhile is dropped: the caller's
    model computes, traces and trains as it did before.

    Args:
        net: a model's network.
        mode: 'numpy', 'legacy', or None to keep each block's.
        hybridize: hybridize `net` inside the body.
        channel_block: the blocks' `BlockMode.channel_block` inside the body (1: the
            book's convolutions, as an export traces them), or None to keep each block's.

    Yields:
        `net`.
    """
    before = {b: mode_of(b) for b in dense_blocks(net)}
    was_hybridized, was_fused = is_hybridized(net), is_fused(net)
    if mode is not None:
        set_concat_mode(net, mode)
    if channel_block is not None:
        set_modes(net, lambda b: dataclasses.replace(mode_of(b), channel_block=channel_block))
    if hybridize and not was_hybridized:
        net.hybridize()
    fuse_bn_relu(net, False)  # what is traced here has the book's BatchNorm and ReLU
    try:
        yield net
    finally:
        if hybridize and not was_hybridized:
            net.hybridize(active=False)
        set_modes(net, before.__getitem__)
        fuse_bn_relu(net, was_fused)


def prepare_model(model: C, ctxs: mx.Context | Sequence[mx.Context],
                  hybridize: bool, memory_efficient: bool = False, padded: bool = True,
                  fuse: bool = True) -> C:
    """Move `model` to `ctxs` and put it on the fast or the book-literal path.

    The fast path hybridizes with the oneDNN-friendly concatenation, on a CPU
    computes the dense layers' new features in whole channel blocks
    (`PaddedConv2D`), applies each BatchNorm and the ReLU after it as one
    oneDNN operator (fused.py) and trains a network with channel counts that are
    not multiples of 8 (a growth rate of 12) on its padded trace (padded.py),
    and, when memory-efficient, trains through MXNet's recomputing executor
    (mirror.py) instead.

    Args:
        model: the model.
        ctxs: the devices.
        hybridize: the fast path (True) or the book's imperative code.
        memory_efficient: recompute each dense layer in backward.
        padded: on a CPU's fast path, train on the padded trace where the channels
            need it (False: the hybridized graph at the model's channel counts).
        fuse: on a CPU's fast path, compute each BatchNorm and the ReLU after it as one
            oneDNN operator (fused.py; False: as two).

    Returns:
        The model.
    """
    model.net.collect_params().reset_ctx(ctxs)
    block = channel_block(ctxs)  # > 1: every device a CPU
    if memory_efficient:
        set_memory_efficient(model.net, True)
    if hybridize:
        if type(model.net) is nn.HybridSequential:
            model.net.__class__ = ExecutorSequential
        concat = fast_concat_mode(model.net)
        set_modes(model.net, lambda b: dataclasses.replace(
            mode_of(b), concat=concat, channel_block=block, padded=padded and block > 1))
    fuse_bn_relu(model.net, hybridize and fuse and block > 1 and fusion_applies())
    if hybridize:
        model.net.hybridize(static_alloc=True, static_shape=True)
    return model
