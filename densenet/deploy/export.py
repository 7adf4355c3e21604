"""Ship a trained model: MXNet symbol + params, and ONNX.

MXNet 1.9.1's ONNX exporter has no converter for the numpy-mode
``_npi_concatenate`` that the book's dense block records; `register_onnx_converters`
adds one (it maps to ONNX ``Concat``, the same operation), so the exported graph
is the model's own graph, unchanged.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

import mxnet as mx
import numpy as onp
from mxnet import gluon, np

from densenet.core.classifier import CheckedClassifier
from densenet.modes.block_mode import concat_mode
from densenet.system.mxcompat import onnx_converters, onnx_node_inputs

FORMATS = ('mxnet', 'onnx')
# MXNet's converters are written for opsets 12 and 13; the file declares 13.
ONNX_OPSET = 13


def _convert_npi_concatenate(node: dict[str, Any], **kwargs: Any) -> list[Any]:
    import onnx
    name, inputs, attrs = onnx_node_inputs(node, kwargs)
    axis = attrs.get('axis', '0')
    if axis in ('None', None):
        raise NotImplementedError(f'{name}: concatenate with axis=None (flattening) '
                                  'has no ONNX Concat equivalent')
    return [onnx.helper.make_node('Concat', inputs, [name], axis=int(axis), name=name)]


def register_onnx_converters() -> None:
    """Add the missing converters to MXNet's ONNX registry (idempotent)."""
    for opset in (12, 13):
        onnx_converters(opset).setdefault('_npi_concatenate', _convert_npi_concatenate)


def _input_shape(model: CheckedClassifier,
                 input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(input_shape)
    weight = model.stem_weight()
    channels = weight.shape[1] if weight.shape[1] > 0 else 1
    side = max(model.min_input_size(), 96 if channels == 1 else 224)
    return (1, channels, side, side)


def export_mxnet(model: CheckedClassifier, out_dir: str, name: str = 'densenet',
                 input_shape: Sequence[int] | None = None) -> tuple[str, ...]:
    """Trace once (hybridized for the trace only) and write ``name-symbol.json`` +
    ``name-0000.params``."""
    shape = _input_shape(model, input_shape)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        # Traced on a hybridized net; the caller's model is left as it was.
        with concat_mode(model.net, None, hybridize=True):
            model.net(np.zeros(shape))
            model.net.export(os.path.join(tmp, name))
        paths = []
        for f in (f'{name}-symbol.json', f'{name}-0000.params'):
            os.replace(os.path.join(tmp, f), os.path.join(out_dir, f))
            paths.append(os.path.join(out_dir, f))
    return tuple(paths)


def load_mxnet(symbol_file: str, params_file: str,
               ctx: mx.Context | list[mx.Context] | None = None) -> gluon.SymbolBlock:
    """The exported model as a SymbolBlock."""
    return gluon.SymbolBlock.imports(symbol_file, ['data'], params_file,
                                     ctx=ctx or mx.cpu())


def _declare_opset(path: str) -> None:
    """Declare the opset the converters wrote for, not onnx's newest.

    MXNet 1.9.1 stamps the installed onnx's newest opset (19 for onnx 1.14) on
    nodes converted by its opset-13 table; runtimes then look for e.g.
    AveragePool-19 kernels that older onnxruntime releases lack.
    """
    import onnx
    model = onnx.load(path)
    for entry in model.opset_import:
        if entry.domain in ('', 'ai.onnx'):
            entry.version = ONNX_OPSET
    # Weights listed as graph inputs too would stop runtimes from folding them.
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def export_onnx(model: CheckedClassifier, out_dir: str, name: str = 'densenet',
                input_shape: Sequence[int] | None = None, dynamic_batch: bool = True) -> str:
    """Write ``name.onnx``; with `dynamic_batch` the batch axis is symbolic."""
    register_onnx_converters()
    shape = _input_shape(model, input_shape)
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, name + '.onnx')
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        sym, params = export_mxnet(model, tmp, name, shape)
        kwargs = {}
        if dynamic_batch:
            kwargs = dict(dynamic=True, dynamic_input_shapes=[(None,) + shape[1:]])
        tmp_onnx = os.path.join(tmp, name + '.onnx')
        mx.onnx.export_model(sym, params, [shape], [onp.float32], tmp_onnx, **kwargs)
        _declare_opset(tmp_onnx)
        os.replace(tmp_onnx, final)
    return final


def export(model: CheckedClassifier, out_dir: str, fmt: str = 'mxnet', name: str = 'densenet',
           input_shape: Sequence[int] | None = None) -> tuple[str, ...]:
    """Export `model` in format 'mxnet' or 'onnx'; returns the written paths."""
    if fmt == 'mxnet':
        return export_mxnet(model, out_dir, name, input_shape)
    if fmt == 'onnx':
        return (export_onnx(model, out_dir, name, input_shape),)
    raise ValueError(f'format must be one of {FORMATS}, got {fmt!r}')
