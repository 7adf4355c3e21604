"""Parameter files, and the metadata beside them that says how to rebuild their model.

Every ``X.params`` the tools write has ``X.params.json``: the registry name, the
constructor arguments, input side, channels, class names and normalisation, so
that `load_model(path)` rebuilds the right model with nothing repeated. Files
from ``model.save_parameters`` (keys ``net.0.0.weight``) and from
``model.net.save_parameters`` (keys ``0.0.weight``) both load.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any, cast

import mxnet as mx
from mxnet import np
from mxnet.gluon import nn

from densenet.data.fashion_mnist import CLASSES
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.models.preprocess import Preprocess
from densenet.models.registry import default_cfg, get_model
from densenet.system.files import atomic_text, atomic_write
from densenet.system.hints import Array
from densenet.system.mxcompat import load_arrays

META_VERSION = 1


def describe(model: CheckedClassifier, input_size: int, classes: Iterable[str],
             dataset: str | None, **extra: Any) -> Meta:
    """The metadata of `model` (built by `registry.get_model`) trained on `classes`.

    Args:
        model: the model.
        input_size: the side it was trained at.
        classes: the class names, in label order.
        dataset: what it was trained on.
        **extra: further fields (recipe, seed, epoch, ...).

    Returns:
        The metadata dict.
    """
    kwargs: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v
                              for k, v in model.registry_kwargs.items()}
    return cast(Meta, {'format': META_VERSION, 'model': model.registry_name, 'kwargs': kwargs,
                       **_inputs(dataset, input_size, int(kwargs['in_channels']), classes),
                       **extra})


def _inputs(dataset: str | None, input_size: int, channels: int,
            classes: Iterable[str]) -> Meta:
    """The metadata's input fields: side, channels, classes, dataset and preprocessing."""
    pre = Preprocess.for_dataset(dataset, input_size, channels, list(classes))
    return {'input_size': pre.input_size, 'channels': int(channels),
            'classes': list(pre.classes), 'dataset': dataset, 'preprocess': pre.steps()}


def save(model: CheckedClassifier, path: str, meta: Meta) -> None:
    """Write ``path`` (the network's parameters) and its metadata, each atomically.

    Args:
        model: the model.
        path: the params file.
        meta: its metadata (`describe`).

    Raises:
        DiskFull: the disk filled up; the previous files stay as they were.
    """
    atomic_write(path, model.net.save_parameters)
    atomic_text(path + '.json', json.dumps(meta, indent=1))


def read_meta(params: str) -> Meta | None:
    """The metadata of a params file.

    Args:
        params: the params file.

    Returns:
        Its own .json, or None for a bare file.
    """
    if not os.path.isfile(params + '.json'):
        return None
    with open(params + '.json') as f:
        return cast(Meta, json.load(f))


def _load_arrays(path: str) -> dict[str, Array]:
    if not os.path.isfile(path):
        raise UsageError(f'{path}: no such file')
    try:
        saved = load_arrays(path)
    except mx.base.MXNetError as e:
        raise UsageError(f'{path} is not an MXNet parameter file ({_reason(e)}); give a '
                         '.params file written by save_parameters') from None
    if not isinstance(saved, dict) or not saved:
        raise UsageError(f'{path} holds no named parameters; save the model with '
                         'model.net.save_parameters(path) or model.save_parameters(path)')
    return saved


def _index(key: str) -> tuple[int, ...]:
    """Structural position of a parameter name ('net.3.1.weight' -> (3, 1))."""
    return tuple(int(p) for p in key.split('.') if p.isdigit())


def shape_args(path: str) -> dict[str, int]:
    """The channel and class counts of a params file, for rebuilding a bare file's model.

    Args:
        path: the params file.

    Returns:
        {'in_channels': ..., 'num_classes': ...}, read off its first convolution and
        its final Dense layer.

    Raises:
        UsageError: the file holds no convolution or no Dense weight.
    """
    weights = sorted((_index(k), v.shape) for k, v in _load_arrays(path).items()
                     if k.endswith('weight'))
    convs = [shape for _, shape in weights if len(shape) == 4]
    dense = [shape for _, shape in weights if len(shape) == 2]
    if not convs or not dense:
        raise UsageError(f'{path} holds no convolution or no Dense weight: it is not a '
                         'DenseNet parameter file')
    return {'in_channels': int(convs[0][1]), 'num_classes': int(dense[-1][0])}


def _reason(error: BaseException) -> str:
    """The informative line of an exception's message (MXNet's carry a C++ traceback)."""
    useful = [line for line in map(str.strip, str(error).splitlines())
              if line and not line.startswith(('Traceback', 'File ', '[bt]', 'Stack trace'))]
    return (useful[-1] if useful else type(error).__name__)[:200]


def load_parameters(model: CheckedClassifier, path: str,
                    ctx: mx.Context | list[mx.Context] | None = None) -> CheckedClassifier:
    """Load `path` into `model`, whether saved from the model (``net.`` keys) or from ``model.net``.

    Args:
        model: the model to load into.
        path: the params file.
        ctx: the devices to load onto (default: the model's).

    Returns:
        The model.

    Raises:
        UsageError: a file of another architecture (naming the model and MXNet's
            reason).
    """
    whole = all(k.startswith('net.') for k in _load_arrays(path))
    try:
        (model if whole else model.net).load_parameters(path, ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError, RuntimeError) as e:
        name = model.registry_name or type(model).__name__
        raise UsageError(f'{path} does not fit the {name} model with '
                         f'{model.net[-1].weight.shape[0]} classes (another architecture, '
                         f'channel count or class count; --model names a bare file\'s): '
                         f'{_reason(e)}') from None
    return model


def all_finite(net: nn.Block) -> bool:
    """Whether every parameter (BatchNorm statistics included) of `net` is finite.

    Args:
        net: the network.

    Returns:
        True when no value is NaN or infinite.
    """
    return all(bool(np.isfinite(p.data()).all()) for p in net.collect_params().values())


def build(meta: Meta, **overrides: Any) -> CheckedClassifier:
    """The untrained model that `meta` describes, its shapes fixed.

    Args:
        meta: params metadata.
        **overrides: constructor arguments that replace the recorded ones.

    Returns:
        The model.

    Raises:
        UsageError: an unknown model name or argument.
    """
    kwargs = {k: tuple(v) if isinstance(v, list) else v
              for k, v in {**meta.get('kwargs', {}), **overrides}.items()}
    return get_model(meta['model'], **kwargs)


def load_model(path: str, model_name: str | None = None,
               model_args: dict[str, Any] | None = None,
               ctx: mx.Context | list[mx.Context] | None = None,
               ) -> tuple[CheckedClassifier, Meta]:
    """The model of a params file, rebuilt, with its metadata.

    Rebuilt from its metadata, or as `model_name` (with `model_args`) for a bare
    file, whose channel and class counts are read off the file; the book's
    DenseNet when neither is known.

    Args:
        path: the params file.
        model_name: the registry name of a bare file's model (or to override the
            metadata's).
        model_args: its constructor arguments.
        ctx: the devices to load onto.

    Returns:
        (model, metadata).

    Raises:
        UsageError: a file of another architecture, or one holding NaN or infinite
            values.
    """
    found = read_meta(path)
    if model_name is not None and (found is None or found['model'] != model_name
                                   or model_args):
        shapes, old = shape_args(path), found or Meta()
        classes = old.get('classes') or (list(CLASSES) if shapes['num_classes'] == 10 else
                                         [str(i) for i in range(shapes['num_classes'])])
        meta: Meta = {'model': model_name, 'kwargs': {**(model_args or {}), **shapes},
                      **_inputs(old.get('dataset'), old.get(
                          'input_size', default_cfg(model_name).input_size),
                          shapes['in_channels'], classes)}
    elif found is None:  # a bare file without --model: the book's DenseNet on Fashion-MNIST
        meta = {'model': 'book', 'kwargs': {}, **_inputs('fashion-mnist', 96, 1, CLASSES)}
    else:
        meta = found
    model = build(meta)
    load_parameters(model, path, ctx=ctx)
    if not all_finite(model.net):
        raise UsageError(f'{path} holds NaN or infinite values: the run that wrote it '
                         'diverged; use an earlier checkpoint or train again with a lower --lr')
    return model, meta
