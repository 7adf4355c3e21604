"""Weights that ship with the package, each checked against its SHA-256 before use.

``densenet.pretrained('book', 'fashion-mnist')`` is the book's DenseNet trained
with ``--recipe fast-cpu``; its ``.params.json`` says which run made it (recipe,
seed, test accuracy, machine) and holds the file's SHA-256.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from typing import cast

import mxnet as mx

from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.models.params import load_model, read_meta

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
#: (model, dataset) -> file name in densenet/weights/
SHIPPED: dict[tuple[str, str], str] = {('book', 'fashion-mnist'): 'book-fashion-mnist.params'}


def pretrained_path(model: str = 'book', dataset: str = 'fashion-mnist') -> str:
    """The verified path of the shipped weights for (model, dataset).

    Args:
        model: the registry name.
        dataset: what they were trained on.

    Returns:
        The params file's path.

    Raises:
        UsageError: no weights ship for the pair, the file or its .json is
            missing, or the file's SHA-256 differs from the recorded one (damaged).
    """
    if (model, dataset) not in SHIPPED:
        have = ', '.join(f'{m}/{d}' for m, d in SHIPPED)
        raise UsageError(f'no shipped weights for {model} on {dataset}; there are: {have}')
    path = os.path.join(WEIGHTS_DIR, SHIPPED[model, dataset])
    meta = read_meta(path) if os.path.isfile(path) else None
    if meta is None:
        raise UsageError(f'{path} (or its .json) is missing from this installation; '
                         'reinstall densenet')
    if (got := hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()) != meta['sha256']:
        raise UsageError(f'{path}: SHA-256 {got} differs from the recorded {meta["sha256"]}: the '
                         'file is damaged; reinstall densenet')
    return path


def pretrained_info(model: str = 'book', dataset: str = 'fashion-mnist') -> Meta:
    """The metadata of the shipped weights (provenance, accuracy, machine).

    Args:
        model: the registry name.
        dataset: what they were trained on.

    Returns:
        The .params.json as a dict.

    Raises:
        UsageError: as `pretrained_path`.
    """
    return cast(Meta, read_meta(pretrained_path(model, dataset)))


def pretrained(model: str = 'book', dataset: str = 'fashion-mnist',
               ctx: mx.Context | list[mx.Context] | None = None) -> CheckedClassifier:
    """The model `model` with the weights trained on `dataset`, verified.

    Args:
        model: the registry name.
        dataset: what they were trained on.
        ctx: the devices to load onto.

    Returns:
        The model.

    Raises:
        UsageError: as `pretrained_path`.
    """
    return load_model(pretrained_path(model, dataset), ctx=ctx)[0]
