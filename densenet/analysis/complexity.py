"""A model's size and cost: trainable parameters and forward FLOPs per image.

Both are read off the network's graph: the model is traced as a symbol and
MXNet's ``infer_shape`` gives every node's shape at the input side asked for,
so any Gluon network (the DenseNets, ``d2l_resnet18``) is measured the same
way, including one whose shapes are still deferred.

Counted: the multiply-accumulates (MACs) of the convolutions and Dense layers,
which are nearly all of the arithmetic; BatchNorm, ReLU, pooling, additions and
concatenations are left out. FLOPs are two per MAC (one multiply, one add).
"""
from __future__ import annotations

import dataclasses
import json
import math

import mxnet as mx
from mxnet.gluon import nn

from densenet.data.shapes import input_channels
from densenet.models.classifier import CheckedClassifier
from densenet.modes.block_mode import concat_mode, network

#: The operators whose multiply-accumulates are counted.
COUNTED_OPS = ('Convolution', 'FullyConnected')


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """One node of a traced graph, with its shape.

    Attributes:
        name: the node's name ('data' for the input; a parameter's name for a weight).
        op: its operator ('null' for the input and the parameters).
        inputs: the indices, in the node list, of the nodes whose first output it reads.
        shape: the shape of its first output.
    """
    name: str
    op: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]


def graph_nodes(sym: mx.sym.Symbol, input_shape: tuple[int, ...]) -> list[GraphNode]:
    """Every node of `sym` with its first output's shape, for input 'data' of `input_shape`.

    Args:
        sym: a legacy symbol with one input named 'data'.
        input_shape: the input's shape.

    Returns:
        The nodes, in topological order.
    """
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=tuple(input_shape))
    # node name -> its first output's shape (reversed: the first output is written last)
    first = {internals[j].name: tuple(s) for j, s in reversed(list(enumerate(out_shapes)))}
    return [GraphNode(node['name'], node['op'], tuple(i[0] for i in node['inputs']),
                      first[node['name']]) for node in json.loads(sym.tojson())['nodes']]


@dataclasses.dataclass(frozen=True)
class Complexity:
    """A model's size and forward cost for one image.

    Attributes:
        params: trainable parameters (weights, biases, BatchNorm's scale and shift;
            not its running statistics).
        macs: multiply-accumulates of the convolutions and Dense layers per image.
        side: the input side the cost is for.
        channels: the input channels.
    """
    params: int
    macs: int
    side: int
    channels: int

    @property
    def flops(self) -> int:
        """Floating-point operations per image: two per multiply-accumulate."""
        return 2 * self.macs


def complexity(model: CheckedClassifier | nn.Block, side: int,
               channels: int | None = None) -> Complexity:
    """Trainable parameters and forward MACs/FLOPs per image of `model` at `side`.

    Args:
        model: a model (``get_model('book')``, ``get_model('d2l_resnet18')``...) or
            its ``.net``.
        side: the square input side.
        channels: the input channels (default: the stem's, or 1 while deferred).

    Returns:
        The `Complexity`.
    """
    net = network(model)
    channels = channels or input_channels(net)
    with concat_mode(net, None, channel_block=1):  # the book's convolutions
        sym = net(mx.sym.var('data').as_np_ndarray()).as_nd_ndarray()  # a legacy symbol
    nodes = graph_nodes(sym, (1, channels, side, side))
    not_trained = {'data', *sym.list_auxiliary_states()}  # the input, running statistics
    params = sum(math.prod(n.shape) for n in nodes if n.op == 'null' and n.name not in not_trained)
    # Output values times the weight's values per output channel.
    macs = sum(math.prod(n.shape) * math.prod(nodes[n.inputs[1]].shape[1:])
               for n in nodes if n.op in COUNTED_OPS)
    return Complexity(int(params), int(macs), side, channels)


def describe(c: Complexity) -> dict[str, int]:
    """A `Complexity` as a dict with its FLOPs, for JSON and tables.

    Args:
        c: the figures.

    Returns:
        {'params', 'macs', 'flops', 'side', 'channels'}.
    """
    return {**dataclasses.asdict(c), 'flops': c.flops}
