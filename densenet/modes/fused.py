"""BatchNorm and ReLU as one oneDNN operator, on the fast path of a CPU.

Every BatchNorm of a DenseNet (its dense layers, transitions, stem and head)
feeds a ReLU. MXNet's oneDNN build has the pair as one operator,
``_contrib_BatchNormWithReLU``: oneDNN applies the ReLU as BatchNorm writes its
output, and in backward masks the gradient inside BatchNorm's own kernel. The
separate ReLU costs a pass over the tensor each way, and MXNet 1.9.1 writes the
ReLU's in-place gradient through a temporary that it then copies back.

`set_fused_bn_relu` switches each BatchNorm that a ReLU `nn.Activation` follows in
the same sequential block to `FusedBatchNorm`, and that ReLU to `FusedReLU`, in
place: the parameters, their names and the saved files stay as they are. Only
oneDNN has the fused operator, for float32 on 4-D NCHW tensors, and only a traced
graph runs it: a `FusedBatchNorm` called imperatively, or of another dtype or on
another device, applies BatchNorm and then ReLU as the book's layers do.
``prepare_model`` fuses on the fast path of a CPU; `densenet.modes.concat_mode`
unfuses for what it traces (exports, inference graphs), whose graph passes know the
two operators, and so does the padded inference trace.

MXNet 1.9.1 computes the fused backward wrongly when BatchNorm's input was in
the plain layout in the forward pass and its output's gradient arrives in a
blocked one: it reorders the input to the gradient's layout but reads oneDNN's
ReLU mask, saved in the forward pass's layout, as it is. So a `FusedBatchNorm`
runs the fused operator only on an input in oneDNN's blocked layout, whose
channels are whole blocks: the network's input is plain; a convolution writes
the blocked layout where it reads it, or reads an image (fewer channels than a
block); pooling, BatchNorm and ReLU keep their input's; oneDNN's concatenation
joins blocked tensors into a blocked one; a numpy operator (the numpy
concatenation, a `PaddedConv2D`'s split), and any other layer, writes the plain
one. The gradient must come back in the input's layout too, as the backward pass of
a convolution or of a stem's 3x3 max pooling hands it back (`feeds_convolution`):
a larger pooling's may use another blocked layout, and oneDNN has no fused backward
for two layouts.
`set_fused_bn_relu` follows that through the hybridized network
(``fuse_in_graph``), the padded trace (padded.py) through its own graph. Those
rules are how oneDNN's AVX2 kernels lay tensors out (`tests/modes/test_fused.py`
checks them with ``DNNL_VERBOSE``): ``prepare_model`` fuses where AVX2 is the
widest instruction set oneDNN uses (`fusion_applies`), and not with AVX-512.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable

import mxnet as mx
import numpy as onp
from mxnet.gluon import nn

from densenet.core.blocks import DenseBlock
from densenet.system.hints import ArrayOrSymbol, OpNamespace
from densenet.system.machine import CHANNEL_BLOCK
from densenet.system.mxcompat import activation_type, layer_kwargs
from densenet.system.runtime import capabilities

#: The dtypes oneDNN's fused operator takes (MXNet's float64 and float16 have no kernel).
FUSED_DTYPES = ('float32',)


@functools.cache
def onednn_enabled() -> bool:
    """Whether MXNet runs its oneDNN kernels here (its build has them, and
    ``MXNET_MKLDNN_ENABLED``, which MXNet reads as it starts, does not turn them off).

    Returns:
        True where they run.
    """
    return mx.runtime.Features().is_enabled('MKLDNN') and \
        os.environ.get('MXNET_MKLDNN_ENABLED', '1') != '0'


def fusion_applies() -> bool:
    """Whether the fast path fuses BatchNorm and ReLU on this CPU: where oneDNN uses AVX2
    and not AVX-512 (``DNNL_MAX_CPU_ISA=AVX2`` makes any x86 CPU one), whose kernels'
    layouts the rules of this module follow.

    Returns:
        True where it fuses.
    """
    caps = capabilities()
    return bool(caps.get('avx2')) and not caps.get('avx512')


def bn_relu(F: OpNamespace, x: ArrayOrSymbol, gamma: ArrayOrSymbol, beta: ArrayOrSymbol,
            mean: ArrayOrSymbol, var: ArrayOrSymbol, *, fused: bool,
            **kwargs: object) -> ArrayOrSymbol:
    """``relu(batch_norm(x))`` on numpy-mode arrays or symbols.

    Args:
        F: the operator namespace (`mx.nd` or `mx.sym`).
        x: the input, 4-D NCHW where `fused`.
        gamma, beta, mean, var: BatchNorm's scale, shift and running statistics.
        fused: as one oneDNN operator (float32 on a CPU), else as two.
        **kwargs: BatchNorm's operator arguments (`layer_kwargs` of a BatchNorm), and
            its node's name.

    Returns:
        The output, numpy-mode.
    """
    if fused:
        inputs = [a.as_nd_ndarray() for a in (x, gamma, beta, mean, var)]
        return F.contrib.BatchNormWithReLU(*inputs, **kwargs).as_np_ndarray()
    return F.npx.activation(F.npx.batch_norm(x, gamma, beta, mean, var, **kwargs),
                            act_type='relu')


class FusedBatchNorm(nn.BatchNorm):
    """A BatchNorm with the ReLU after it applied too: `set_fused_bn_relu` makes one, in
    place, of a BatchNorm whose ReLU it makes a `FusedReLU`, and sets ``fuse_in_graph``:
    whether a traced graph of the network may run the pair as one operator there
    (`mark_fusable`, see the module). Called imperatively it applies the two."""

    fuse_in_graph: bool = False

    def fusable(self) -> bool:
        """Whether oneDNN's fused operator has a kernel for this layer: float32 over the
        channel axis, the parameters on a CPU, oneDNN on (where it computes right is the
        caller's to know: `mark_fusable`).

        Returns:
            True where it has one.
        """
        try:
            on_cpu = all(c.device_type == 'cpu' for c in self.gamma.list_ctx())
        except RuntimeError:  # not initialized yet
            on_cpu = False
        return on_cpu and onp.dtype(self.gamma.dtype).name in FUSED_DTYPES and \
            layer_kwargs(self).get('axis', 1) == 1 and onednn_enabled()

    def cast(self, dtype: str) -> None:
        # Gluon keeps a float16 BatchNorm's parameters in float32: the data's dtype is
        # known here only.
        if onp.dtype(dtype).name not in FUSED_DTYPES:
            self.fuse_in_graph = False
        super().cast(dtype)

    def hybrid_forward(self, F: OpNamespace, x: ArrayOrSymbol, gamma: ArrayOrSymbol,
                       beta: ArrayOrSymbol, running_mean: ArrayOrSymbol,
                       running_var: ArrayOrSymbol) -> ArrayOrSymbol:
        fused = F is mx.sym and self.fuse_in_graph and self.fusable()
        return bn_relu(F, x, gamma, beta, running_mean, running_var, fused=fused,
                       name='fwd', **layer_kwargs(self))


class FusedReLU(nn.Activation):
    """A ReLU that the `FusedBatchNorm` before it applies already: passes its input on."""

    def hybrid_forward(self, F: OpNamespace, x: ArrayOrSymbol) -> ArrayOrSymbol:
        return x


def _pairs(net: nn.Block) -> list[tuple[nn.Block, nn.Block]]:
    """Every (layer, next layer) of the sequential blocks inside `net`."""
    pairs: list[tuple[nn.Block, nn.Block]] = []

    def visit(block: nn.Block) -> None:
        if isinstance(block, (nn.Sequential, nn.HybridSequential)):
            children = list(block)
            pairs.extend(zip(children[:-1], children[1:], strict=True))
    net.apply(visit)
    return pairs


def conv_blocks(conv: nn.Conv2D, in_channels: int, blocked: bool) -> bool:
    """Whether oneDNN writes a convolution's output in its blocked layout: an ungrouped
    NCHW one where its input is blocked, or has fewer channels than a block (an image,
    which oneDNN's first-layer kernels read as it is).

    Args:
        conv: the convolution.
        in_channels: its input channels (0: not known yet).
        blocked: whether its input is in the blocked layout.

    Returns:
        True where the output is blocked.
    """
    kwargs = layer_kwargs(conv)
    return kwargs.get('layout', 'NCHW') == 'NCHW' and kwargs.get('num_group', 1) == 1 and \
        (blocked or 0 < in_channels < CHANNEL_BLOCK)


def keeps_layout(layer: nn.Block) -> bool:
    """Whether a layer other than a convolution writes its output in its input's layout:
    oneDNN's pooling (NCHW), BatchNorm and ReLU; a fused ReLU passes its input on.

    Args:
        layer: the layer.

    Returns:
        True where it does.
    """
    if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D, nn.GlobalAvgPool2D, nn.GlobalMaxPool2D)):
        return layer_kwargs(layer).get('layout', 'NCHW') == 'NCHW'
    return isinstance(layer, (nn.BatchNorm, FusedReLU)) or \
        type(layer) is nn.Activation and activation_type(layer) == 'relu'


def feeds_convolution(layers: list[nn.Block], i: int) -> bool:
    """Whether the BatchNorm ``layers[i]`` and its ReLU feed a convolution or a stem's
    max pooling, whose backward passes hand the gradient back in the layout of their
    input. oneDNN's reference pooling (a global pooling over 16x16) hands it back in
    another blocked layout, for which oneDNN has no fused backward.

    Args:
        layers: a sequential block's layers.
        i: the BatchNorm's index.

    Returns:
        True where ``layers[i + 2]`` is a `Conv2D`, or a `MaxPool2D` of at most 3x3.
    """
    if i + 2 >= len(layers):
        return False
    after = layers[i + 2]
    return isinstance(after, nn.Conv2D) or type(after) is nn.MaxPool2D and \
        not layer_kwargs(after)['global_pool'] and max(layer_kwargs(after)['kernel']) <= 3


def whole_blocks_of(channels: int) -> bool:
    """Whether `channels` (0: not known yet) is a whole number of oneDNN channel blocks."""
    return channels > 0 and channels % CHANNEL_BLOCK == 0


def mark_fusable(net: nn.Block, joins_onednn: Callable[[nn.Block], bool]) -> None:
    """Set ``fuse_in_graph`` of every `FusedBatchNorm` inside `net`: whether its input in
    the hybridized graph is in oneDNN's blocked layout, its channels whole blocks, and
    its ReLU feeds a convolution or a stem's max pooling (`feeds_convolution`; see the
    module). The network's input is in the plain layout; a layer whose shapes are not
    known yet is not fused.

    Args:
        net: a model's network.
        joins_onednn: whether a `DenseBlock` joins its layers' features through oneDNN's
            concatenation (its mode's).
    """
    def walk(block: nn.Block, blocked: bool) -> bool:
        """Mark inside `block`, whose input is blocked or not; whether its output is."""
        if isinstance(block, DenseBlock):
            joins = joins_onednn(block)
            for layer in block.net:  # oneDNN joins blocked tensors into a blocked one
                blocked = walk(layer, blocked) and blocked and joins
            return blocked
        if isinstance(block, (nn.Sequential, nn.HybridSequential)):
            children = list(block)
            for i, child in enumerate(children):
                if isinstance(child, FusedBatchNorm):
                    child.fuse_in_graph = blocked and feeds_convolution(children, i) and \
                        whole_blocks_of(child.gamma.shape[0])
                blocked = walk(child, blocked)
            return blocked
        if type(block) is nn.Conv2D:  # a PaddedConv2D splits its output: plain
            return conv_blocks(block, block.weight.shape[1], blocked)
        return blocked and keeps_layout(block)
    walk(net, False)


def set_fused_bn_relu(net: nn.Block, flag: bool = True,
                      joins_onednn: Callable[[nn.Block], bool] = lambda block: False) -> int:
    """Fuse (or unfuse) every BatchNorm -> ReLU pair of sequential blocks inside `net`.

    The caller drops the traced graphs (`densenet.modes.block_mode.fuse_bn_relu` does).

    Args:
        net: a model's network.
        flag: fuse (True) or switch fused pairs back to the book's layers.
        joins_onednn: with `flag`: whether a `DenseBlock` joins its layers' features
            through oneDNN's concatenation (`mark_fusable`).

    Returns:
        The number of pairs switched.
    """
    switched = 0
    for bn, act in _pairs(net):
        if flag and type(bn) is nn.BatchNorm and type(act) is nn.Activation and \
                activation_type(act) == 'relu':
            bn.__class__, act.__class__ = FusedBatchNorm, FusedReLU
        elif not flag and type(bn) is FusedBatchNorm and type(act) is FusedReLU:
            bn.__class__, act.__class__ = nn.BatchNorm, nn.Activation
            bn.__dict__.pop('fuse_in_graph', None)
        else:
            continue
        switched += 1
    if flag:
        mark_fusable(net, joins_onednn)
    return switched


def is_fused(net: nn.Block) -> bool:
    """Whether some BatchNorm -> ReLU pair inside `net` is fused.

    Args:
        net: a model's network.

    Returns:
        True where one is.
    """
    return any(type(bn) is FusedBatchNorm for bn, _ in _pairs(net))
