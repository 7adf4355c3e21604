"""A model's inference graph (MXNet's legacy symbol API) and two rewrites that make it
cheaper on oneDNN without changing what it computes.

At batch 1 a small DenseNet spends most of its time on per-operator costs, not
arithmetic, so the rewrites remove operators and copies:

- `fold_batchnorm`: at inference a BatchNorm is a per-channel affine map,
  ``y = s * x + t``. One that follows a convolution is folded into it by
  oneDNN already; the pre-activation layers of a DenseNet (BatchNorm, ReLU,
  convolution) have theirs after a concatenation or a pooling, which oneDNN
  leaves as two operators. Written as a depthwise 1x1 convolution (weight
  ``s``, bias ``t``) it is fused with the ReLU that follows into one oneDNN
  convolution, in fp32 and in INT8 alike.
- `share_concat_ranges`: after INT8 quantization, oneDNN's quantized
  concatenation rescales every input whose range differs from the output's,
  an extra pass over the data per input. The convolutions whose outputs feed
  only concatenations are given their concatenation chain's range, so those
  inputs are copied as they are.
- `plain_concat_inputs`: for batch 1. oneDNN joins blocked-layout tensors of
  one image along the channels element by element (its simple concatenation
  finds no outer loop to split); with one input in the plain layout it takes
  the reference concatenation, which copies with reorders, several times
  faster there (measured slower at batch 2).

A `Graph` is the symbol with its parameter values (legacy arrays), by input name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Iterator, Sequence
from typing import TypedDict, cast

import mxnet as mx
import numpy as onp
from mxnet import gluon

from densenet.deploy.export import export_mxnet
from densenet.models.classifier import CheckedClassifier
from densenet.modes.block_mode import concat_mode
from densenet.modes.padded import needs_padding, trace_frozen
from densenet.system.mxcompat import cached_graph, load_init

#: Node attribute values that MXNet reads as true.
TRUE = ('True', 'true', '1')
QUANTIZED_CONCAT, QUANTIZED_POOLING = '_contrib_quantized_concat', '_contrib_quantized_pooling'


class Node(TypedDict, total=False):
    """A node of a graph's JSON document: its inputs are [node index, output, version]."""
    op: str
    name: str
    inputs: list[list[int]]
    attrs: dict[str, str]


class Document(TypedDict, total=False):
    """A graph's JSON document (``Symbol.tojson``): the keys the rewrites touch."""
    nodes: list[Node]
    arg_nodes: list[int]
    node_row_ptr: list[int]
    heads: list[list[int]]


@contextlib.contextmanager
def legacy_mode() -> Iterator[None]:
    """Run code under MXNet's legacy (non-numpy) array and shape semantics.

    Yields:
        None; numpy mode is restored afterwards.
    """
    with mx.util.np_array(False), mx.util.np_shape(False):
        yield


@dataclasses.dataclass(frozen=True)
class Graph:
    """A legacy-API symbol and the values of its parameters.

    Attributes:
        symbol: the graph; its one input that is not a parameter is the data.
        params: {input name: legacy ``mx.nd.NDArray``} for every parameter and
            auxiliary state.
    """
    symbol: mx.sym.Symbol
    params: dict[str, mx.nd.NDArray]

    @property
    def data_name(self) -> str:
        """The name of the graph's data input."""
        names = [n for n in self.symbol.list_inputs() if n not in self.params]
        if len(names) != 1:
            raise ValueError(f'expected one data input besides the parameters, got {names}')
        return names[0]


def legacy_graph(model: CheckedClassifier, input_shape: Sequence[int],
                 concat: str = 'legacy', channel_block: int = 1) -> Graph:
    """`model` traced into the legacy symbol API, its dense blocks joining their features
    with `concat` (same values, see block_mode.py).

    The model is left as it was (modes and hybridization restored).

    Args:
        model: the model.
        input_shape: the shape it is traced at.
        concat: 'legacy' (oneDNN's concat, which quantization needs) or 'numpy'.
        channel_block: the convolutions' channel block (`export_mxnet`; 1: the book's).

    Returns:
        Its graph.
    """
    with tempfile.TemporaryDirectory() as tmp, concat_mode(model.net, concat):
        sym_file, params_file = export_mxnet(model, tmp, 'fp32', input_shape,
                                             channel_block=channel_block)
        # Parameters were saved under numpy shape semantics: load them there.
        values = {k.split(':', 1)[-1]: v.as_nd_ndarray()
                  for k, v in mx.npx.load(params_file).items()}
        with legacy_mode():
            symbol = mx.sym.load(sym_file)
    return Graph(symbol, values)


def padded_graph(model: CheckedClassifier) -> Graph | None:
    """`model`'s inference graph with zero channels inserted, so that every tensor is
    whole oneDNN channel blocks (`densenet.modes.padded`; the same values).

    Its spread parameters and running statistics are new inputs, their values taken
    from the model as it is now. The dense blocks join their features with oneDNN's
    concat.

    Args:
        model: the model.

    Returns:
        Its graph, or None where no channel needs padding or a layer cannot be spread.
    """
    if not needs_padding(model.net):
        return None
    out, values = trace_frozen(model.net, mx.sym.var('data').as_np_ndarray())
    with legacy_mode():
        symbol = mx.sym.load_json(out.as_nd_ndarray().tojson())
    used = set(symbol.list_inputs())
    # copies: the graph keeps the values of now, as its spread ones are
    params = {p.name: p.list_data()[0].as_nd_ndarray().copy()
              for p in model.net.collect_params().values() if p.name in used}
    params.update({name: mx.nd.array(v, dtype=v.dtype) for name, v in values.items()})
    return Graph(symbol, params)


def block_graph(block: gluon.SymbolBlock) -> Graph:
    """The graph of a SymbolBlock (MXNet's quantized or mixed-precision model).

    Args:
        block: the block.

    Returns:
        Its graph.
    """
    with legacy_mode():
        params = {name: p.data() for name, p in block.collect_params().items()}
    return Graph(cached_graph(block), params)


def graph_block(graph: Graph, ctx: mx.Context) -> gluon.SymbolBlock:
    """A legacy SymbolBlock computing `graph` (what MXNet's quantization takes).

    Args:
        graph: the graph.
        ctx: the device.

    Returns:
        The block.
    """
    with legacy_mode():
        block = gluon.SymbolBlock(graph.symbol, [mx.sym.var(graph.data_name, dtype='float32')])
        for name, p in block.collect_params().items():
            load_init(p, graph.params[name].as_in_context(ctx), ctx)
    return block


def _nodes(graph: Graph) -> Document:
    """The graph's JSON document."""
    return cast(Document, json.loads(graph.symbol.tojson()))


def _symbol(doc: Document) -> mx.sym.Symbol:
    """A symbol from a JSON document whose node list was edited."""
    doc = {**doc, 'arg_nodes': [i for i, n in enumerate(doc['nodes']) if n['op'] == 'null']}
    doc.pop('node_row_ptr', None)  # MXNet recomputes it
    with legacy_mode():
        return mx.sym.load_json(json.dumps(doc))


def _output_ndims(graph: Graph, input_shape: Sequence[int]) -> dict[str, int]:
    """{output name: its number of axes} for every node output, at `input_shape`."""
    internals = graph.symbol.get_internals()
    with legacy_mode():
        _, shapes, _ = internals.infer_shape(**{graph.data_name: tuple(input_shape)})
    return {name: len(shape) for name, shape in zip(internals.list_outputs(), shapes, strict=True)}


def _foldable(nodes: list[Node], node: Node, ndims: dict[str, int]) -> bool:
    """Whether a node is a BatchNorm over the channels of 4-D features (its output has its
    input's axes) that oneDNN would not fold into a convolution before it."""
    attrs = node.get('attrs', {})
    return (node['op'] == 'BatchNorm' and attrs.get('axis', '1') == '1'
            and attrs.get('output_mean_var', 'False') not in TRUE
            and nodes[node['inputs'][0][0]]['op'] != 'Convolution'
            and ndims.get(f"{node['name']}_output") == 4)


def batchnorm_affine(attrs: dict[str, str], gamma: onp.ndarray, beta: onp.ndarray,
                     mean: onp.ndarray, var: onp.ndarray) -> tuple[onp.ndarray, onp.ndarray]:
    """The inference-mode BatchNorm as ``y = scale * x + shift``, per channel.

    Args:
        attrs: the node's attributes (``eps``, ``fix_gamma``; MXNet's defaults apply).
        gamma: its scale parameter (read as 1 under ``fix_gamma``).
        beta: its shift parameter.
        mean: its running mean.
        var: its running variance.

    Returns:
        (scale, shift), computed in float64.
    """
    gamma, beta, mean, var = (onp.asarray(a, dtype=onp.float64) for a in (gamma, beta, mean, var))
    if attrs.get('fix_gamma', 'True') in TRUE:
        gamma = onp.ones_like(gamma)
    scale = gamma / onp.sqrt(var + float(attrs.get('eps', '0.001')))
    return scale, beta - mean * scale


def _depthwise(node: Node, nodes: list[Node], params: dict[str, mx.nd.NDArray]) -> Node:
    """The depthwise 1x1 convolution computing BatchNorm `node` of `nodes`; its weight and
    bias are appended to `nodes` and `params`."""
    names = [nodes[e[0]]['name'] for e in node['inputs'][1:5]]
    scale, shift = batchnorm_affine(node.get('attrs', {}), *(params[n].asnumpy() for n in names))
    inputs = [node['inputs'][0]]
    for suffix, value in (('weight', scale.reshape(-1, 1, 1, 1)), ('bias', shift)):
        name = f"{node['name']}_{suffix}"
        with legacy_mode():
            params[name] = mx.nd.array(value, dtype=onp.float32)
        inputs.append([len(nodes), 0, 0])
        nodes.append({'op': 'null', 'name': name, 'inputs': []})
    channels = str(len(scale))
    attrs = {'kernel': '(1, 1)', 'num_filter': channels, 'num_group': channels,
             'no_bias': 'False', 'layout': 'NCHW'}
    return {'op': 'Convolution', 'name': node['name'], 'attrs': attrs, 'inputs': inputs}


def fold_batchnorm(graph: Graph, input_shape: Sequence[int], channel_block: int = 1) -> Graph:
    """Every BatchNorm that oneDNN would leave on its own, as a depthwise 1x1 convolution.

    The convolution's weight is the BatchNorm's scale and its bias the shift
    (`batchnorm_affine`), so it computes the inference-mode BatchNorm; oneDNN
    then fuses it with a ReLU that follows. The convolution keeps the
    BatchNorm's node name; its parameters are ``<name>_weight`` and
    ``<name>_bias``. BatchNorms right after a convolution, over other axes or
    on other than 4-D features are left alone, and so are those whose channel
    count is not a multiple of `channel_block`.

    Args:
        graph: the graph.
        input_shape: the data's shape (for the features' number of axes).
        channel_block: fold only BatchNorms over a multiple of this many channels.

    Returns:
        The rewritten graph; parameters no node reads any more are dropped.
    """
    doc, ndims = _nodes(graph), _output_ndims(graph, input_shape)
    nodes, params = doc['nodes'], dict(graph.params)
    for i in range(len(nodes)):  # not the parameter nodes appended on the way
        node = nodes[i]
        if _foldable(nodes, node, ndims) and \
                params[nodes[node['inputs'][1][0]]['name']].shape[0] % channel_block == 0:
            nodes[i] = _depthwise(node, nodes, params)
    symbol = _symbol(doc)  # without the BatchNorms' parameters, which no node reads
    used = set(symbol.list_inputs())
    return Graph(symbol, {k: v for k, v in params.items() if k in used})


def _concat_groups(nodes: list[Node]) -> list[list[int]]:
    """The nodes with calibrated ranges that feed each chain of quantized concatenations
    (directly or through quantized poolings, which pass ranges on), one list per chain."""
    parent = list(range(len(nodes)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    def source(i: int) -> int:
        while nodes[i]['op'] == QUANTIZED_POOLING:
            i = nodes[i]['inputs'][0][0]
        return i

    for i, node in enumerate(nodes):
        if node['op'] == QUANTIZED_CONCAT:
            for entry in node['inputs'][:int(node['attrs']['num_args'])]:
                parent[root(source(entry[0]))] = root(i)
    groups: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        if 'min_calib_range' in node.get('attrs', {}):
            groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def share_concat_ranges(graph: Graph) -> Graph:
    """Give the INT8 tensors that only feed concatenations their concatenation's range.

    oneDNN's quantized concatenation takes the union of its inputs' ranges and
    rescales each input whose range differs from it. Here, for each chain of
    concatenations (a dense block), the calibrated outputs used by nothing but
    the concatenations (each layer's new features) get the range of everything
    the chain joins, so they are copied unchanged. A tensor with other readers
    (the block's input, which its first layer reads) keeps its own range,
    finer for that reader, and is rescaled once, by the chain's first
    concatenation. Every concatenation of the chain then outputs the chain's
    range, the one its last concatenation had anyway (the earlier ones had
    the union of their own inputs only).

    Args:
        graph: an INT8 graph from MXNet's quantization (oneDNN-fused and calibrated).

    Returns:
        The graph with those ranges widened (the same parameters).
    """
    doc = _nodes(graph)
    nodes = doc['nodes']
    readers: dict[int, set[str]] = {}
    for node in nodes:
        for entry in node['inputs']:
            readers.setdefault(entry[0], set()).add(node['op'])
    for members in _concat_groups(nodes):
        attrs = [nodes[i]['attrs'] for i in members]
        low = repr(min(float(a['min_calib_range']) for a in attrs))
        high = repr(max(float(a['max_calib_range']) for a in attrs))
        for i in members:
            if readers.get(i) == {QUANTIZED_CONCAT}:
                nodes[i]['attrs'].update(min_calib_range=low, max_calib_range=high)
    return Graph(_symbol(doc), graph.params)


def plain_concat_inputs(graph: Graph, input_shape: Sequence[int]) -> Graph:
    """The graph with the last input of every channel concatenation of 4-D features made
    plain-layout, for batch 1 on oneDNN.

    A reshape to the tensor's own shape (a copy into the plain layout, the newest
    features of a dense layer: a few channels) precedes each such input. oneDNN's
    concatenation then has inputs in two layouts, and copies them with reorders
    instead of element by element, which it does for blocked tensors of one image.
    The values are unchanged: only copies are added. A concatenation over another
    axis (also ``dim=-3``) or of other than 4-D features is left as it is.

    Args:
        graph: an fp32 graph (oneDNN-fused or not).
        input_shape: the data's shape (for the features' number of axes).

    Returns:
        The rewritten graph (the same parameters).
    """
    doc, ndims = _nodes(graph), _output_ndims(graph, input_shape)
    nodes: list[Node] = []
    where: list[int] = []
    for node in doc['nodes']:
        node = {**node, 'inputs': [[where[e[0]], *e[1:]] for e in node['inputs']]}
        attrs = node.get('attrs', {})
        if node['op'] == 'Concat' and attrs.get('dim', '1') == '1' and \
                ndims.get(f"{node['name']}_output") == 4:
            nodes.append({'op': 'Reshape', 'name': f"{node['name']}_plain",
                          'attrs': {'shape': '(0, 0, 0, 0)'}, 'inputs': [node['inputs'][-1]]})
            node['inputs'][-1] = [len(nodes) - 1, 0, 0]
        where.append(len(nodes))
        nodes.append(node)
    heads = [[where[h[0]], *h[1:]] for h in doc['heads']]
    return Graph(_symbol({**doc, 'nodes': nodes, 'heads': heads}), graph.params)
