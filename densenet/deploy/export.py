"""Ship a trained model: MXNet symbol + params, ONNX, and OpenVINO's IR (.xml + .bin,
converted from the ONNX export).

Each export carries the model's preprocessing (`densenet.models.preprocess.Preprocess`:
side, channels, class names, resize, scaling, polarity, photo conversion), every
field under its own name with a JSON value: in ONNX's ``metadata_props`` (ONNX
Runtime's ``get_modelmeta().custom_metadata_map``), in OpenVINO's runtime info
under ``densenet`` (``model.get_rt_info(['densenet', 'classes'])``), and for
MXNet in ``NAME-preprocess.json`` beside the symbol.

MXNet 1.9.1's ONNX exporter has no converter for the numpy-mode
``_npi_concatenate`` that the book's dense block records, nor for the ``_npi_add``
of a residual block (``d2l_resnet18``); `register_onnx_converters` adds them (they
map to ONNX ``Concat`` and ``Add``, the same operations), so the exported graph is
the model's own graph, unchanged.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import mxnet as mx
import numpy as onp
from mxnet import gluon, np

from densenet.data.shapes import input_channels
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.preprocess import Preprocess
from densenet.modes.block_mode import concat_mode
from densenet.system.files import disk_full_as_error
from densenet.system.mxcompat import onnx_converters, onnx_node_inputs

if TYPE_CHECKING:
    import onnx  # an optional extra: imported where it is used

FORMATS = ('mxnet', 'onnx', 'openvino')
# MXNet's converters are written for opsets 12 and 13; the file declares 13.
ONNX_OPSET = 13


def _convert_npi(node: dict[str, object], **kwargs: object) -> list[onnx.NodeProto]:
    """ONNX's Add for ``_npi_add``, its Concat for ``_npi_concatenate``."""
    import onnx
    name, inputs, attrs = onnx_node_inputs(node, kwargs)
    if node['op'] == '_npi_add':
        # numpy's broadcasting is ONNX's multidirectional broadcasting.
        return [onnx.helper.make_node('Add', inputs, [name], name=name)]
    axis = attrs.get('axis', '0')
    if axis in ('None', None):
        raise NotImplementedError(f'{name}: concatenate with axis=None (flattening) '
                                  'has no ONNX Concat equivalent')
    return [onnx.helper.make_node('Concat', inputs, [name], axis=int(axis), name=name)]


def register_onnx_converters() -> None:
    """Add the missing converters to MXNet's ONNX registry (idempotent)."""
    for opset in (12, 13):
        for op in ('_npi_concatenate', '_npi_add'):
            onnx_converters(opset).setdefault(op, _convert_npi)


def batch_shape(model: CheckedClassifier, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The shape of one batch for `model`: `input_shape`, else its default.

    Args:
        model: the model.
        input_shape: (1, C, H, W), or None.

    Returns:
        `input_shape`, else (1, its input channels, 96 for one channel or 224, at least
        its smallest side, twice).
    """
    if input_shape is not None:
        return tuple(input_shape)
    channels = input_channels(model.net)
    side = max(model.min_input_size(), 96 if channels == 1 else 224)
    return (1, channels, side, side)


def metadata(preprocess: Preprocess | None) -> dict[str, str]:
    """The preprocessing as an export's metadata: each field's name and its JSON value.

    Args:
        preprocess: the model's preprocessing, or None.

    Returns:
        {field: JSON text}, e.g. {'input_size': '64', 'classes': '["t-shirt", ...]'};
        {} without `preprocess`.
    """
    return {k: json.dumps(v) for k, v in preprocess.to_dict().items()} if preprocess else {}


@contextlib.contextmanager
def _written(out_dir: str, *files: str) -> Iterator[str]:
    """A temporary folder inside `out_dir` (made if missing) for the block to write `files`
    into; once it has, they are moved into `out_dir` in order (a file that names
    another goes last), so that no half-written file ever stands there."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        yield tmp
        for f in files:
            os.replace(os.path.join(tmp, f), os.path.join(out_dir, f))


def export_mxnet(model: CheckedClassifier, out_dir: str, name: str = 'densenet',
                 input_shape: Sequence[int] | None = None,
                 preprocess: Preprocess | None = None, channel_block: int = 1) -> tuple[str, ...]:
    """Trace once (hybridized for the trace only) and write ``name-symbol.json`` +
    ``name-0000.params`` (and ``name-preprocess.json`` with `preprocess`): the book's
    convolutions, or with `channel_block` > 1 the dense layers' new features in whole
    blocks of that many channels (`densenet.modes.block_mode.PaddedConv2D`)."""
    shape = batch_shape(model, input_shape)
    files = [f'{name}-symbol.json', f'{name}-0000.params'] + (
        [f'{name}-preprocess.json'] if preprocess is not None else [])
    with _written(out_dir, *files) as tmp:
        # Traced on a hybridized net; the caller's model is left as it was.
        with concat_mode(model.net, None, hybridize=True, channel_block=channel_block):
            model.net(np.zeros(shape))
            model.net.export(os.path.join(tmp, name))
        if preprocess is not None:
            with open(os.path.join(tmp, files[-1]), 'w') as f:
                json.dump(preprocess.to_dict(), f, indent=1)
    return tuple(os.path.join(out_dir, f) for f in files)


def load_mxnet(symbol_file: str, params_file: str,
               ctx: mx.Context | list[mx.Context] | None = None) -> gluon.SymbolBlock:
    """The exported model as a SymbolBlock."""
    return gluon.SymbolBlock.imports(symbol_file, ['data'], params_file,
                                     ctx=ctx or mx.cpu())


def _finish_onnx(path: str, props: dict[str, str]) -> None:
    """Declare the opset the converters wrote for, not onnx's newest, and add `props`
    to the model's ``metadata_props``.

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
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def export_onnx(model: CheckedClassifier, out_dir: str, name: str = 'densenet',
                input_shape: Sequence[int] | None = None,
                preprocess: Preprocess | None = None) -> str:
    """Write ``name.onnx``, its batch axis symbolic; with `preprocess` its fields are the
    model's ``metadata_props``."""
    register_onnx_converters()
    shape = batch_shape(model, input_shape)
    with _written(out_dir, name + '.onnx') as tmp:
        sym, params = export_mxnet(model, tmp, name, shape)
        path = os.path.join(tmp, name + '.onnx')
        mx.onnx.export_model(sym, params, [shape], [onp.float32], path, dynamic=True,
                             dynamic_input_shapes=[(None, *shape[1:])])  # the batch axis
        _finish_onnx(path, metadata(preprocess))
    return os.path.join(out_dir, name + '.onnx')


def import_extra(module: str, needed_by: str, name: str, extra: str) -> ModuleType:
    """Import `module`, which an optional extra of the package installs.

    Args:
        module: the module to import, e.g. 'openvino'.
        needed_by: what needs it, as the user asked for it, e.g. '--format openvino'.
        name: the product's name, e.g. 'OpenVINO'.
        extra: the extra that installs it, e.g. 'openvino'.

    Returns:
        The module.

    Raises:
        UsageError: it is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"{needed_by} needs {name}: pip install 'densenet[{extra}]' "
                         f'({e})') from e


def export_openvino(model: CheckedClassifier, out_dir: str, name: str = 'densenet',
                    input_shape: Sequence[int] | None = None,
                    preprocess: Preprocess | None = None) -> tuple[str, str]:
    """Write OpenVINO's IR, ``name.xml`` + ``name.bin``, converted from the ONNX export.

    The weights stay float32 (``save_model`` would halve them to float16 by
    default), so the IR computes what the model does; the batch axis is dynamic.

    Args:
        model: the trained model (left as it was).
        out_dir: the folder to write into (created if missing).
        name: the files' stem.
        input_shape: the shape of one batch, (1, C, H, W); default: the model's.
        preprocess: the model's preprocessing, written into the runtime info under
            ``densenet``.

    Returns:
        The paths of the .xml and the .bin.

    Raises:
        UsageError: OpenVINO or onnx is not installed (``pip install 'densenet[openvino]'``).
    """
    import_extra('onnx', '--format openvino', 'onnx', 'openvino')
    ov = import_extra('openvino', '--format openvino', 'OpenVINO', 'openvino')
    with _written(out_dir, name + '.bin', name + '.xml') as tmp:  # the .xml names the .bin
        ir = ov.convert_model(export_onnx(model, tmp, name, input_shape))
        for key, value in metadata(preprocess).items():
            ir.set_rt_info(value, ['densenet', key])
        ov.save_model(ir, os.path.join(tmp, name + '.xml'), compress_to_fp16=False)
    return os.path.join(out_dir, name + '.xml'), os.path.join(out_dir, name + '.bin')


def export(model: CheckedClassifier, out_dir: str, fmt: str = 'mxnet', name: str = 'densenet',
           input_shape: Sequence[int] | None = None,
           preprocess: Preprocess | None = None) -> tuple[str, ...]:
    """Export `model` in format 'mxnet', 'onnx' or 'openvino'; returns the written paths.

    With `preprocess` (the model's, `Preprocess.from_meta`), every format carries it
    (see the module).

    Raises:
        ValueError: `fmt` is not one of `FORMATS`.
        UsageError: 'openvino' without OpenVINO installed.
        DiskFull: the disk filled up; no partial file is left, and an `out_dir` that
            the export created is removed again.
    """
    if fmt not in FORMATS:
        raise ValueError(f'format must be one of {FORMATS}, got {fmt!r}')
    target = os.path.join(out_dir, {'mxnet': f'{name}-0000.params', 'onnx': name + '.onnx',
                                    'openvino': name + '.bin'}[fmt])
    created = not os.path.exists(out_dir)
    try:
        with disk_full_as_error(target):  # DiskFull names the file; nothing half-written stays
            if fmt == 'onnx':
                return (export_onnx(model, out_dir, name, input_shape, preprocess),)
            write = export_mxnet if fmt == 'mxnet' else export_openvino
            return write(model, out_dir, name, input_shape, preprocess)
    except BaseException:
        if created and os.path.isdir(out_dir) and not os.listdir(out_dir):
            os.rmdir(out_dir)
        raise
