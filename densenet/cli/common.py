"""What the commands share: the one-line-error parser, the model and engine flags, loading a
trained model onto the fast path, and the labelled images a model is scored on."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Collection
from typing import NoReturn, Protocol

import mxnet as mx
import numpy as onp

from densenet.data import DataModule, open_data
from densenet.data.fashion_mnist import locate
from densenet.deploy.engines import (
    ENGINES,
    MIN_AGREEMENT,
    choose,
    choose_precision,
    engine,
    require,
    unavailable,
)
from densenet.deploy.inference import PRECISIONS, calibration_images
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.models.params import load_model
from densenet.models.preprocess import Preprocess
from densenet.models.pretrained import pretrained_path
from densenet.models.registry import list_models
from densenet.modes import prepare_model
from densenet.system import runtime
from densenet.system.hints import Array
from densenet.train.config import parse_model_arg
from densenet.train.options import positive_int

PROG = 'densenet'


class Commands(Protocol):
    """What ``add_subparsers`` returns, as the commands' ``add_parser`` functions use it."""

    def add_parser(self, name: str, *, help: str) -> argparse.ArgumentParser:
        """A new sub-command's parser."""


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (and a pointer to --help) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def add_params_flags(p: argparse.ArgumentParser, resize: bool = True) -> None:
    """--params (default: the shipped weights), --model and --model-arg (as train defines
    them, for a bare params file) and, unless `resize` is False, --resize."""
    p.add_argument('--params', help='a .params file from densenet train (default: the shipped '
                                    'book model trained on Fashion-MNIST)')
    p.add_argument('--model', choices=list_models(),
                   help='the architecture of a bare params file without metadata '
                        '(default: what its .params.json says, else book)')
    p.add_argument('--model-arg', type=parse_model_arg, action='append', default=None,
                   dest='model_args', metavar='KEY=VALUE',
                   help='a constructor argument of --model, e.g. depth=40, growth_rate=24 or '
                        'transition_pool=max (repeat for more)')
    if resize:
        p.add_argument('--resize', type=positive_int,
                       help='image side (default: the one the model was trained at)')
    else:  # the weights alone are read: no image side to choose
        p.set_defaults(resize=None)


def add_engine_flags(p: argparse.ArgumentParser, auto_precision: bool = False) -> None:
    """--engine and --precision, which mean the same thing for every engine.

    Args:
        p: the command's parser.
        auto_precision: offer --precision auto, as the default.
    """
    p.add_argument('--engine', choices=['auto', *ENGINES], default='auto',
                   help='the inference engine: auto (the one `densenet engines` timed fastest '
                        'here for this model, precision and number of images; MXNet until '
                        "it has), MXNet, ONNX Runtime (pip install 'densenet[onnx]') or "
                        "OpenVINO (pip install 'densenet[openvino]'); the last two run on "
                        'the CPU')
    auto = (f'auto (the default): the fastest that `densenet engines` measured here among '
            f'fp32 and the precisions whose top-1 agreement with fp32 is at least '
            f'{MIN_AGREEMENT:.0%}, fp32 until it has; ' if auto_precision else '')
    p.add_argument('--precision', choices=(['auto'] if auto_precision else []) + list(PRECISIONS),
                   default='auto' if auto_precision else 'fp32',
                   help=f'{auto}bf16: where the CPU has bfloat16 instructions (not on '
                        'onnxruntime); int8: calibrated on 512 training images')


def check_engine_flags(args: argparse.Namespace) -> None:
    """--engine and --precision checked before any model loads (auto as MXNet, which runs
    every precision the CPU has; precision auto as fp32, which every engine runs).

    Args:
        args: the parsed command line, with `engine` and `precision`.

    Raises:
        UsageError: the engine cannot run the precision on this machine, or its extra
            is not installed.
    """
    named = args.engine if args.engine != 'auto' else 'mxnet'
    precision = args.precision if args.precision != 'auto' else 'fp32'
    if why := unavailable(named, precision, runtime.capabilities()):
        engine = '' if named == 'mxnet' else f'--engine {named} '
        raise UsageError(f'{engine}--precision {args.precision}: {why}')
    if named != 'mxnet':
        require(named)


def choose_engine(args: argparse.Namespace, model: CheckedClassifier, meta: Meta,
                  ctxs: list[mx.Context], images: int, batch: int,
                  exclude: Collection[str] = ()) -> str:
    """Replace --engine auto by the engine it picks for `images` images at `batch`
    (`densenet.deploy.engines.choose`; MXNet on a GPU), and --precision auto by the
    precision it picks with it (`choose_precision`, leaving out the precisions `exclude`
    names; fp32 on a GPU).

    Returns:
        How they were chosen, for the output ('' where the flags named them).
    """
    if ctxs[0].device_type != 'cpu':
        auto = 'auto' in (args.engine, args.precision)
        args.engine, args.precision = 'mxnet', 'fp32'  # what device_for loads on a GPU
        return 'auto: the GPU runs MXNet in fp32' if auto else ''
    if args.precision == 'auto':
        args.precision, args.engine, how = choose_precision(model, input_shape(meta), images,
                                                            batch, args.engine, exclude)
        return how
    if args.engine != 'auto':
        return ''
    args.engine, how = choose(model, input_shape(meta), args.precision, images, batch)
    return how


def device_for(args: argparse.Namespace) -> str:
    """The device to load the model on: --device where MXNet may run it in fp32, else the
    CPU (the other engines and precisions run there)."""
    return (args.device if args.engine in ('mxnet', 'auto') and args.precision in ('fp32', 'auto')
            else 'cpu')


def load_trained(args: argparse.Namespace,
                 device: str = 'auto') -> tuple[CheckedClassifier, Meta, list[mx.Context]]:
    """(model on the fast path, its metadata, contexts) for --params (default: the shipped
    weights), rebuilt from its metadata or as --model for a bare file."""
    ctxs = runtime.devices(device)
    args.shipped = args.params is None
    if args.params is None:
        if args.model is not None:
            raise UsageError('--model names the architecture of a --params file: give '
                             '--params too (without it the shipped book model is used)')
        args.params = pretrained_path('book', 'fashion-mnist')
    elif not os.path.isfile(args.params):
        raise UsageError(f'--params {args.params}: no such file')
    model, meta = load_model(args.params, args.model,
                             dict(args.model_args) if args.model_args else None)
    meta = {**meta, 'input_size': args.resize or meta['input_size']}
    if meta['input_size'] < model.min_input_size():
        raise UsageError(f'--resize {meta["input_size"]} is below the minimum input size '
                         f'{model.min_input_size()}')
    return prepare_model(model, ctxs, hybridize=True), meta, ctxs


def on_engine(args: argparse.Namespace, model: CheckedClassifier, meta: Meta,
              ctxs: list[mx.Context], calibration: Callable[[], onp.ndarray]
              ) -> Callable[[Array], Array]:
    """`model` as --engine and --precision run it: the engine's predictor (on MXNet in fp32,
    its fused graph), int8 calibrated on the images `calibration()` returns; on a GPU the
    model itself."""
    if ctxs[0].device_type != 'cpu':
        return model
    calib = calibration() if args.precision == 'int8' else None
    return engine(model, args.engine, args.precision, calib, input_shape(meta))


def input_shape(meta: Meta) -> tuple[int, int, int, int]:
    """The shape of one image batch for the model `meta` describes."""
    return (1, meta['channels'], meta['input_size'], meta['input_size'])


def own_folder(meta: Meta) -> str | None:
    """The image folder the run trained on, where it is still there (None: none)."""
    root = meta.get('data', {}).get('root')
    return root if root and os.path.isdir(root) else None


def calibration(meta: Meta, data_dir: str | None) -> onp.ndarray:
    """int8's calibration images: training images of the run's own image folder (where it
    is still there), else Fashion-MNIST's (found in `data_dir`)."""
    return calibration_images(eval_data(meta, 64, own_folder(meta), data_dir))


def offline_calibration(meta: Meta, data_dir: str | None) -> onp.ndarray | None:
    """`calibration`, where its images are on this machine (nothing is downloaded);
    None where they are not."""
    if own_folder(meta) is None and not locate(data_dir):
        return None
    try:
        return calibration(meta, data_dir)
    except (UsageError, FileNotFoundError):
        return None


def eval_data(meta: Meta, batch_size: int, folder: str | None, data_dir: str | None,
              limit: int | None = None) -> DataModule:
    """The labelled images to score: `folder` (--data, or the run's own folder), else
    Fashion-MNIST's test split (found in `data_dir`), at the model's side and channels."""
    if folder:
        run_data = meta.get('data', {})  # the run's own split, when it trained on `folder`
        split = run_data if os.path.abspath(folder) == run_data.get('root') else {}
        pre = Preprocess.from_meta(meta)
        data = open_data(batch_size, pre.input_size, folder, channels=pre.channels,
                         convert=pre.convert is not None, val_split=split.get('val_split', 0.2),
                         seed=split.get('seed', 0), val_limit=limit)
        if list(data.classes) != list(meta['classes']):
            raise UsageError(f'--data {folder} has the classes {", ".join(data.classes)}, the '
                             f'model was trained on {", ".join(map(str, meta["classes"]))}: give '
                             'a folder with the same class folders')
        return data
    if meta['channels'] != 1 or len(meta['classes']) != 10:
        raise UsageError(f'this model takes {meta["channels"]}-channel images of '
                         f'{len(meta["classes"])} classes, not Fashion-MNIST: give --data with '
                         'a folder of its classes')
    return open_data(batch_size, meta['input_size'], root=data_dir, val_limit=limit)
