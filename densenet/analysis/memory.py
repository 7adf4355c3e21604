"""Training memory by depth: the activations each layer of a DenseNet adds (the chapter's
"Cons": memory that grows with depth), with and without the memory-efficient mode.

Every layer is traced as a symbol on its input and MXNet's ``infer_shape``
gives its tensors' shapes. A layer's figure is the float32 tensors it makes
that the backward pass reads, so that the training step holds them from the
forward pass until the layer's gradients are computed. What backward reads,
per operator (MXNet 1.9.1's gradients on the CPU, with oneDNN):

- convolution, BatchNorm, Dense: their input;
- ReLU: its output (not its input, so a BatchNorm output that only a ReLU reads
  is not counted);
- pooling: its input and its output;
- concatenation: its inputs (oneDNN's backward reads them).

A tensor is counted once, at the layer that makes it; the input batch, the
parameters, BatchNorm's per-channel batch statistics (a few KB), the logits and
the loss are not counted, nor the gradients of backward itself, nor oneDNN's
max-pooling workspace (as large as the pool's output).

Standard mode (the book's graph): a dense layer keeps its ReLU output, its new
features (the convolution's output) and the concatenation its successor
reads; each layer's share grows linearly with its input width, so a block's
total grows quadratically with its depth, and each transition halves the
channels and the side. Memory-efficient mode (`densenet.modes`): a dense layer
keeps only its new features, and its BatchNorm, ReLU and concatenation are
recomputed in backward; a block keeps its input and its concatenated output
once. The stem, the transitions and the head are the same in both modes.
"""
from __future__ import annotations

import dataclasses
import math
import os

import mxnet as mx
from mxnet.gluon import nn

from densenet.analysis.complexity import GraphNode, graph_nodes
from densenet.core.blocks import DenseBlock
from densenet.data.shapes import input_channels
from densenet.models.classifier import CheckedClassifier
from densenet.modes.block_mode import concat_mode, network
from densenet.system.files import pyplot, save_figure
from densenet.system.mxcompat import leaves

#: Operators whose backward reads their (non-parameter) inputs.
READS_INPUT = ('Convolution', 'BatchNorm', 'Pooling', 'FullyConnected', 'Concat',
               '_npi_concatenate')
#: Operators whose backward reads their output.
READS_OUTPUT = ('Activation', '_npx_relu', 'Pooling')
#: Short names of the kept tensors' makers, for `LayerMemory.kept`.
KINDS = {'Convolution': 'conv', 'BatchNorm': 'bn', 'Activation': 'relu', '_npx_relu': 'relu',
         'Pooling': 'pool', 'FullyConnected': 'dense', 'Concat': 'concat',
         '_npi_concatenate': 'concat'}
MB = 2 ** 20  # MXNet's planner reports mebibytes as MB; so does this module


@dataclasses.dataclass(frozen=True)
class LayerMemory:
    """The activation memory one layer adds to a training step.

    Attributes:
        index: the layer's position in the network, from 0.
        name: e.g. 'stem conv', 'block 1 layer 3', 'transition 1', 'head'.
        stage: 'stem', 'block N', 'transition N' or 'head'.
        output_shape: the layer's output shape (a dense layer's: the concatenation).
        kept: what it keeps in the standard mode, by maker, e.g. ('relu', 'conv', 'concat').
        standard_mb: MB it keeps in the standard mode.
        efficient_mb: MB it keeps in the memory-efficient mode.
        standard_total_mb: the standard figures summed up to this layer.
        efficient_total_mb: the memory-efficient figures summed up to this layer.
    """
    index: int
    name: str
    stage: str
    output_shape: tuple[int, ...]
    kept: tuple[str, ...]
    standard_mb: float
    efficient_mb: float
    standard_total_mb: float
    efficient_total_mb: float


@dataclasses.dataclass(frozen=True)
class _Unit:
    """Layers traced together as one row; a dense layer's output joins its input."""
    name: str
    stage: str
    layers: tuple[nn.Block, ...]
    dense: bool = False
    first: bool = False


def _kind(layer: nn.Block) -> str:
    names = {'Conv2D': 'conv', 'BatchNorm': 'batchnorm', 'Activation': 'relu',
             'MaxPool2D': 'max pool', 'AvgPool2D': 'avg pool'}
    return names.get(type(layer).__name__, type(layer).__name__.lower())


def layer_units(net: nn.HybridSequential) -> list[_Unit]:
    """A DenseNet's network as rows: stem layers, dense layers, transitions, head.

    Args:
        net: a DenseNet's ``.net``: a stem, dense blocks with transitions between
            them, then the head's layers.

    Returns:
        The units, in network order.

    Raises:
        ValueError: `net` has no dense block.
    """
    children = list(net)
    if not (blocks := [i for i, c in enumerate(children) if isinstance(c, DenseBlock)]):
        raise ValueError('memory by depth is for DenseNets: this network has no dense block')
    units = [_Unit(f'stem {_kind(layer)}', 'stem', (layer,)) for layer in leaves(children[0])]
    b = t = 0
    for child in children[1:blocks[-1] + 1]:
        if isinstance(child, DenseBlock):
            b += 1
            units += [_Unit(f'block {b} layer {i + 1}', f'block {b}', (layer,), True, i == 0)
                      for i, layer in enumerate(child.net)]
        else:
            t += 1
            units.append(_Unit(f'transition {t}', f'transition {t}', (child,)))
    units.append(_Unit('head', 'head', tuple(children[blocks[-1] + 1:])))
    return units


@dataclasses.dataclass(frozen=True)
class _Traced:
    """A unit's graph and what its backward reads."""
    unit: _Unit
    nodes: list[GraphNode]
    kept: frozenset[int]     # node indices of the tensors it keeps (standard mode)
    reads_input: bool        # its backward reads its input (standard mode)
    new: int                 # a dense layer's new features (else the output node)


def trace_unit(unit: _Unit, shape: tuple[int, ...]) -> _Traced:
    """Trace `unit` on an input of `shape` and find the tensors its backward reads.

    Args:
        unit: the layers.
        shape: the input's shape.

    Returns:
        The traced unit.
    """
    x = y = mx.sym.var('data').as_np_ndarray()
    for layer in unit.layers:
        y = layer(y)
    if unit.dense:
        y = mx.sym.np.concatenate((x, y), axis=1)
    nodes = graph_nodes(y.as_nd_ndarray(), shape)
    read = [j for node in nodes if node.op in READS_INPUT for j in node.inputs]
    kept = ({i for i, node in enumerate(nodes) if node.op in READS_OUTPUT}
            | {j for j in read if nodes[j].op != 'null'})  # not the parameters
    return _Traced(unit, nodes, frozenset(kept),
                   reads_input=any(nodes[j].name == 'data' for j in read),
                   new=nodes[-1].inputs[1] if unit.dense else len(nodes) - 1)


def _mb(nodes: list[GraphNode], indices: frozenset[int], itemsize: int) -> float:
    return sum(math.prod(nodes[i].shape) for i in indices) * itemsize / MB


def memory_by_depth(model: CheckedClassifier | nn.Block, side: int = 96,
                    batch_size: int = 128, channels: int | None = None,
                    itemsize: int = 4) -> list[LayerMemory]:
    """The activation memory each layer of a DenseNet adds in training, in network order.

    The module's docstring says what is counted. The defaults are the batch
    and side of ``benchmarks/memory_plan.py``'s book-model figures.

    Args:
        model: a DenseNet (``get_model('book')``) or its ``.net``.
        side: the square input side.
        batch_size: the batch.
        channels: the input channels (default: the stem's, or 1 while deferred).
        itemsize: bytes per value (4: float32).

    Returns:
        One `LayerMemory` per stem layer, dense layer, transition and the head.

    Raises:
        ValueError: a network without dense blocks.
    """
    net = network(model)
    shape: tuple[int, ...] = (batch_size, channels or input_channels(net), side, side)
    traced: list[_Traced] = []
    with concat_mode(net, None, channel_block=1):  # the book's convolutions
        for unit in layer_units(net):
            traced.append(trace_unit(unit, shape))
            shape = traced[-1].nodes[-1].shape
    rows: list[LayerMemory] = []
    std_total = eff_total = 0.0
    for i, (tr, nxt) in enumerate(zip(traced, [*traced[1:], None], strict=True)):
        std, eff = _kept(tr, nxt, False), _kept(tr, nxt, True)
        std_mb, eff_mb = _mb(tr.nodes, std, itemsize), _mb(tr.nodes, eff, itemsize)
        std_total, eff_total = std_total + std_mb, eff_total + eff_mb
        kinds = tuple(KINDS.get(tr.nodes[j].op, tr.nodes[j].op) for j in sorted(std))
        rows.append(LayerMemory(i, tr.unit.name, tr.unit.stage, tr.nodes[-1].shape, kinds,
                                std_mb, eff_mb, std_total, eff_total))
    return rows


def _kept(tr: _Traced, nxt: _Traced | None, efficient: bool) -> frozenset[int]:
    """The unit's kept tensors: what its backward reads, and its output when the next unit
    keeps its input. In the memory-efficient mode a dense layer keeps only its new
    features (its BatchNorm, ReLU and concatenation are recomputed), and the next unit
    keeps its input only when it is not a dense layer or is the first of its block (later
    ones take the features kept already): so a block keeps its input and its
    concatenated output once."""
    recomputed = efficient and tr.unit.dense
    next_reads = nxt is not None and (nxt.unit.first if efficient and nxt.unit.dense
                                      else nxt.reads_input)
    return frozenset(({tr.new} if recomputed else tr.kept)
                     | ({len(tr.nodes) - 1} if next_reads else set()))


def totals(rows: list[LayerMemory]) -> tuple[float, float]:
    """The whole network's activation memory in both modes.

    Args:
        rows: `memory_by_depth`'s rows.

    Returns:
        (standard MB, memory-efficient MB).
    """
    return rows[-1].standard_total_mb, rows[-1].efficient_total_mb


def plot_memory_by_depth(rows: list[LayerMemory], path: str | os.PathLike[str],
                         title: str | None = None) -> None:
    """Write the memory by depth as a PNG: per layer above, cumulative below, both modes.

    The upper panel shows each layer's share, which grows linearly inside a
    dense block (standard mode) and drops at each transition; the lower one
    the running total. Dense blocks are shaded.

    Args:
        rows: `memory_by_depth`'s rows.
        path: the PNG file (written atomically).
        title: the figure's title.
    """
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(8, 6), sharex=True)
    x = [r.index for r in rows]
    for ax, std, eff in ((top, [r.standard_mb for r in rows], [r.efficient_mb for r in rows]),
                         (bottom, [r.standard_total_mb for r in rows],
                          [r.efficient_total_mb for r in rows])):
        ax.plot(x, std, 'o-', markersize=3, label='standard')
        ax.plot(x, eff, 's--', markersize=3, label='memory-efficient')
        ax.grid(True, alpha=0.3)
        ax.legend(loc='center right' if ax is top else 'lower right', fontsize=8)
    for stage in dict.fromkeys(r.stage for r in rows if r.stage.startswith('block')):
        span = [r.index for r in rows if r.stage == stage]
        for ax in (top, bottom):
            ax.axvspan(span[0] - 0.5, span[-1] + 0.5, color='0.9', zorder=0)
        top.annotate(stage, (sum(span) / len(span), 0.98),
                     xycoords=('data', 'axes fraction'), ha='center', va='top', fontsize=8)
    top.set_ylabel('MB added by the layer')
    bottom.set_ylabel('cumulative MB')
    bottom.set_xlabel('layer (stem, dense layers, transitions, head)')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
