"""``--engine auto``: the engine this machine has measured fastest for a model, a precision
and a job's size.

`measure` builds one model on every engine that runs a precision here and times the
build (export, quantization, compilation, first call) and the seconds per image at
batch 1 and at a larger batch. `record` keeps the figures in the user's cache folder
(``engines.json`` in `densenet.system.files.user_cache`), under the machine
(`machine_key`: CPU, ISA, threads, engine versions) and the model's shape (`model_key`).
`choose` reads them and picks the engine that finishes a job of N images soonest: its
build time plus N times its time per image. Nothing is measured unless asked
(``densenet engines``); where no figures are recorded, `choose` picks MXNet and says so.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

import mxnet as mx
import numpy as onp

from densenet.deploy.engines import ENGINES, EXTRAS, engine, threads, unavailable
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.system import runtime
from densenet.system.files import atomic_text, user_cache
from densenet.system.machine import cpuinfo

RECORD = 'engines.json'


class Figures(TypedDict):
    """One engine's measured figures for one model and precision."""

    build_s: float   # export, quantization, compilation and the first call
    one_s: float     # seconds per image at batch 1
    batch_s: float   # seconds per image at `batch`
    batch: int


def machine_key() -> str:
    """What decides the engines' speeds here: the CPU, the ISA oneDNN may use, the thread
    count and the engines' versions.

    Returns:
        The key.
    """
    caps = ','.join(k for k, v in runtime.capabilities().items() if v) or 'sse'
    versions = []
    for dist in ('mxnet', 'onnxruntime', 'openvino'):
        try:
            versions.append(f'{dist} {importlib.metadata.version(dist)}')
        except importlib.metadata.PackageNotFoundError:
            continue
    return f'{cpuinfo()[0]} [{caps}], {threads()} threads; {", ".join(versions)}'


def model_key(meta: Meta) -> str:
    """The model's architecture and input shape, as its metadata names them.

    Args:
        meta: the params file's metadata.

    Returns:
        The key.
    """
    kwargs = json.dumps(meta.get('kwargs', {}), sort_keys=True)
    return (f'{meta["model"]} {kwargs} {meta["channels"]}x{meta["input_size"]}x'
            f'{meta["input_size"]}, {len(meta["classes"])} classes')


def installed(name: str) -> bool:
    """Whether `name`'s packages are installed (without importing them).

    Args:
        name: one of `densenet.deploy.engines.ENGINES`.

    Returns:
        Whether it can run.
    """
    modules = EXTRAS[name][0] if name in EXTRAS else ()
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _per_image(predictor: Callable[[onp.ndarray], object], X: onp.ndarray,
               seconds: float) -> float:
    """Seconds per image of `predictor` on `X`: the mean over at least 3 calls and
    `seconds`, after one call not counted."""
    predictor(X)
    calls, tic = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - tic < seconds:
        predictor(X)
        calls += 1
    return (time.perf_counter() - tic) / (calls * len(X))


def _runner(model: CheckedClassifier, name: str, precision: str, calib: onp.ndarray,
            shape: tuple[int, ...]) -> Callable[[onp.ndarray], object]:
    if name == 'mxnet' and precision == 'fp32':  # the model itself, as the commands run it
        return lambda X: model(mx.np.array(X)).asnumpy()
    return engine(model, name, precision, calib if precision == 'int8' else None, shape).predict


def measure(model: CheckedClassifier, meta: Meta, precisions: Sequence[str],
            batch: int = 64, calibration: int = 512, seconds: float = 1.0,
            log: Callable[[str], None] = print) -> dict[str, dict[str, Figures]]:
    """Time `model` on every engine that runs each precision here (installed, and the
    CPU has the instructions).

    Args:
        model: the model (left as it was), on the CPU.
        meta: its metadata (input size and channels).
        precisions: the precisions to time.
        batch: the larger batch's size.
        calibration: int8's calibration images (random pixels: the figures are times).
        seconds: the least time spent timing each batch size.
        log: where a line per engine goes.

    Returns:
        {precision: {engine: figures}}.
    """
    shape = (1, meta['channels'], meta['input_size'], meta['input_size'])
    rng = onp.random.RandomState(0)
    X = rng.uniform(0, 1, (batch, *shape[1:])).astype('float32')
    calib_shape = (calibration, shape[2], shape[3]) + ((shape[1],) if shape[1] > 1 else ())
    calib = rng.randint(0, 256, calib_shape).astype('uint8')
    caps = runtime.capabilities()
    out: dict[str, dict[str, Figures]] = {}
    for precision in precisions:
        for name in ENGINES:
            if unavailable(name, precision, caps) or not installed(name):
                continue
            tic = time.perf_counter()
            predictor = _runner(model, name, precision, calib, shape)
            predictor(X[:1])
            build = time.perf_counter() - tic
            figures = Figures(build_s=build, one_s=_per_image(predictor, X[:1], seconds),
                              batch_s=_per_image(predictor, X, seconds), batch=batch)
            out.setdefault(precision, {})[name] = figures
            log(f'{precision} on {name}: build {build:.2f} s, {1e3 * figures["one_s"]:.2f} ms '
                f'per image at batch 1, {1e3 * figures["batch_s"]:.2f} ms at batch {batch}')
    return out


def _read() -> dict[str, dict[str, dict[str, dict[str, Figures]]]]:
    path = user_cache(RECORD)
    try:
        with open(path) as f:
            data: dict[str, dict[str, dict[str, dict[str, Figures]]]] = json.load(f)
            return data
    except (OSError, ValueError):  # none yet, or unreadable: measured again when asked
        return {}


def record(meta: Meta, figures: dict[str, dict[str, Figures]]) -> str:
    """Keep `figures` for this machine and `meta`'s model (replacing the precisions they
    cover).

    Args:
        meta: the model's metadata.
        figures: `measure`'s result.

    Returns:
        The record's path.
    """
    data = _read()
    models = data.setdefault(machine_key(), {})
    models.setdefault(model_key(meta), {}).update(figures)
    path = user_cache(RECORD)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_text(path, json.dumps(data, indent=1, sort_keys=True))
    return path


def choose(meta: Meta, precision: str, images: int, batch: int) -> tuple[str, str]:
    """The engine that runs `images` images of `meta`'s model at `precision` soonest here.

    Args:
        meta: the model's metadata.
        precision: the precision.
        images: the job's images.
        batch: the batch size they are run at.

    Returns:
        (engine, how it was chosen: a phrase for the output line).
    """
    recorded = _read().get(machine_key(), {}).get(model_key(meta), {}).get(precision, {})
    caps = runtime.capabilities()
    costs = {name: f['build_s'] + images * (f['one_s'] if batch == 1 else f['batch_s'])
             for name, f in recorded.items()
             if name in ENGINES and not unavailable(name, precision, caps) and installed(name)}
    if not costs:
        return 'mxnet', ('auto: no engine timed for this model here yet; `densenet engines` '
                         'times them')
    best = min(costs, key=costs.__getitem__)
    return best, f'auto: fastest measured here for {images} image{"s" * (images != 1)}'
