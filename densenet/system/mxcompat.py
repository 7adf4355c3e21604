"""The private MXNet 1.9.1 internals this package relies on, one function per need.

Gluon has no public way to do these things; an MXNet upgrade should only have
to touch this file.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # for the annotations only: the functions import mxnet where they need it
    import mxnet as mx
    import numpy as onp
    from mxnet import gluon
    from mxnet.gluon import nn

    from densenet.system.hints import Array

T = TypeVar('T')


def leaves(block: nn.Block) -> Iterator[nn.Block]:
    """Every leaf layer under `block`, depth first (Gluon lists children only privately).

    Args:
        block: a Gluon block.

    Yields:
        The leaf layers.
    """
    children = list(block._children.values())
    if not children:
        yield block
    for child in children:
        yield from leaves(child)


def layer_kwargs(layer: nn.Block) -> dict[str, Any]:
    """A Conv2D's or pooling layer's operator arguments (kernel, stride, pad, ...).

    Args:
        layer: the layer.

    Returns:
        {argument: value}.
    """
    return getattr(layer, '_kwargs', {})


def activation_type(layer: nn.Activation) -> str:
    """An Activation layer's function ('relu', 'sigmoid', ...).

    Args:
        layer: the layer.

    Returns:
        Its ``act_type``.
    """
    return str(layer._act_type)


def dense_flattens(layer: nn.Dense) -> bool:
    """Whether a Dense layer flattens its input's trailing axes into one.

    Args:
        layer: the layer.

    Returns:
        Its ``flatten`` argument.
    """
    return bool(layer._flatten)


def drop_cached_graph(block: nn.HybridBlock) -> None:
    """Forget a hybridized block's traced graph, so the next call traces it again.

    Args:
        block: the block.
    """
    block._clear_cached_op()


def is_hybridized(block: nn.HybridBlock) -> bool:
    """Whether `block` is hybridized.

    Args:
        block: the block.

    Returns:
        Its hybridization flag.
    """
    return block._active


def cached_graph(block: nn.HybridBlock) -> mx.sym.Symbol:
    """The output symbol of a SymbolBlock, or of a hybridized block that has run.

    The symbol itself: a JSON round trip loses what AMP's bfloat16 conversion
    left on the oneDNN subgraph nodes (the reloaded graph computes in float32).

    Args:
        block: the block.

    Returns:
        The symbol.
    """
    return block._cached_graph[1]


def load_init(param: gluon.Parameter, value: Array,
              ctx: mx.Context | Sequence[mx.Context]) -> None:
    """Give a Parameter `value` on contexts `ctx`, initialising it if it was deferred.

    ``set_data`` needs an initialised parameter; loading a file into a fresh
    model (zoo weights, re-imported graphs) has only this private route.

    Args:
        param: the parameter.
        value: its value.
        ctx: the contexts.
    """
    param._load_init(value, ctx)


def onnx_node_inputs(node: dict[str, Any],
                     kwargs: dict[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
    """A node as MXNet's ONNX converters read it.

    Args:
        node: the node.
        kwargs: the converter's keyword arguments.

    Returns:
        (name, input names, attributes).
    """
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import get_inputs
    return get_inputs(node, kwargs)


def set_node_attr(sym: mx.sym.Symbol, **attrs: str) -> None:
    """Set graph attributes on a symbol's head node.

    ``force_mirroring='True'`` becomes ``__force_mirroring__``, which MXNet's graph
    executor reads.

    Args:
        sym: the symbol.
        **attrs: the attributes.
    """
    sym._set_attr(**attrs)


def block_cache(block: nn.Block, key: str, make: Callable[[], T]) -> T:
    """A value kept on a Gluon block under `key`, made by `make()` on first use.

    It is stored past ``Block.__setattr__``, which would register a Parameter or
    Block value as a child a second time (and save it under `key`).

    Args:
        block: the block.
        key: the attribute name.
        make: makes the value.

    Returns:
        The value.
    """
    if key not in block.__dict__:
        block.__dict__[key] = make()
    return block.__dict__[key]


def forget_block_cache(block: nn.Block, key: str) -> None:
    """Drop what `block_cache` keeps under `key` (nothing if there is none).

    Args:
        block: the block.
        key: the attribute name.
    """
    block.__dict__.pop(key, None)


def onnx_converters(opset: int) -> dict[str, Callable[..., Any]]:
    """MXNet's ONNX exporter's table {operator name: converter} for `opset`.

    Args:
        opset: the ONNX opset.

    Returns:
        The table (changes to it register converters).
    """
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    return MXNetGraph.registry_.setdefault(opset, {})


def load_arrays(path: str) -> dict[str, Array] | list[Array]:
    """mx.nd.load for files of either array semantics (the model zoo's are legacy).

    Args:
        path: the file.

    Returns:
        The arrays, by name or in order.
    """
    import mxnet as mx
    try:
        return mx.nd.load(path)
    except mx.base.MXNetError:
        with mx.util.np_array(False), mx.util.np_shape(False):
            return mx.nd.load(path)


def copy_into(array: mx.nd.NDArray, values: onp.ndarray) -> None:
    """Copy a numpy array into an existing MXNet array of the same size, synchronously.

    ``array[:] = values`` does the same through the indexing machinery, several
    times slower for a small batch.

    Args:
        array: the destination (legacy or numpy-mode).
        values: a numpy array (converted to `array`'s dtype).
    """
    array._sync_copyfrom(values)
