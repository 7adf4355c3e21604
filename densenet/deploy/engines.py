"""One trained model, three inference engines: MXNet (oneDNN), ONNX Runtime and OpenVINO.

`engine` returns a `densenet.deploy.inference.Predictor`: called on numpy float32
batches (N, C, H, W), it returns the logits as numpy, so that the commands and the
tests treat every engine alike. A
precision means the same thing for each engine:

- ``fp32``: float32 throughout.
- ``bf16``: bfloat16 where the CPU has it (`densenet.system.machine.unsupported`
  says where not). MXNet mixes precision with AMP; OpenVINO is asked for bf16
  through its precision hint. ONNX Runtime has no bf16 CPU inference and is
  refused.
- ``int8``: thresholds calibrated on the package's calibration images
  (`densenet.deploy.inference.calibration_images`). MXNet quantizes with
  oneDNN; ONNX Runtime runs a static QDQ model (per-channel weights, percentile
  thresholds, first convolution and classifier kept in fp32, as MXNet's INT8
  keeps them); OpenVINO reads that same QDQ model. NNCF, OpenVINO's own
  quantizer, needs numpy >= 1.24 in the releases that know OpenVINO 2026, which
  mxnet 1.9.1 cannot import.

OpenVINO's precision hint is always set (``f32`` unless bf16 is asked for):
left alone, it picks bf16 on CPUs that have it. Each engine gets the thread
count MXNet's OpenMP pool has (`threads`).

ONNX Runtime and OpenVINO are optional extras: ``pip install 'densenet[onnx]'``
and ``pip install 'densenet[openvino]'``; without them `engine` raises a
`UsageError` naming the extra.

The engine ``auto`` is the one this machine has timed fastest for the model, the
precision and the job's number of images. `measure` builds the model on every
engine that runs a precision here and times the build (export, quantization,
compilation, first call) and the seconds per image at batch 1 and at a larger
batch; `record` keeps the figures in the user's cache folder (``engines.json`` in
`densenet.system.files.user_cache`), under the machine (`machine_key`: CPU, ISA,
threads, engine versions) and the model's architecture and input shape
(`model_key`); `choose` picks the engine whose build time plus N times its time
per image is least. Nothing is timed unless asked (``densenet engines``); where no
figures are recorded, `choose` picks MXNet and says so. Given held-out images,
`measure` also keeps each engine's top-1 agreement with MXNet's fp32 at each
precision, and `choose_precision` (``predict``'s ``--precision auto``) picks the
cheapest (precision, engine) among fp32 and those agreeing on at least
`MIN_AGREEMENT` of the images.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from types import ModuleType, SimpleNamespace
from typing import Any, NotRequired, TypedDict

import mxnet as mx
import numpy as onp

from densenet.deploy.export import batch_shape, export_onnx, import_extra
from densenet.deploy.inference import (
    PRECISIONS,
    Predictor,
    calibration_batches,
    default_int8_dtype,
    inference_model,
)
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.params import load_model
from densenet.system import runtime
from densenet.system.files import atomic_text, user_cache
from densenet.system.machine import cpuinfo, unsupported

ENGINES = ('mxnet', 'onnxruntime', 'openvino')
#: engine: (the packages it imports, its name, the extra that installs them)
EXTRAS: dict[str, tuple[tuple[str, ...], str, str]] = {
    'onnxruntime': (('onnx', 'onnxruntime'), 'ONNX Runtime', 'onnx'),
    'openvino': (('onnx', 'openvino'), 'OpenVINO', 'openvino'),
}
#: ONNX Runtime's calibration for INT8: thresholds at a high percentile of each activation.
ONNX_CALIBRATION = 'Percentile'
#: OpenVINO's name for each precision's inference precision hint.
OPENVINO_HINTS = {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}
#: The timings `record` keeps, in the user's cache folder, and their layout's version.
RECORD, RECORD_FORMAT = 'engines.json', 1
#: The least top-1 agreement with fp32 of a precision that `choose_precision` may pick.
MIN_AGREEMENT = 0.99


def require(engine: str, *extra_modules: str) -> list[ModuleType]:
    """Import `engine`'s packages (and `extra_modules`), in that order.

    Args:
        engine: 'onnxruntime' or 'openvino'.
        *extra_modules: further modules the caller needs from the same extra.

    Returns:
        The imported modules.

    Raises:
        UsageError: one is not installed; the message names the extra that installs it.
    """
    modules, name, extra = EXTRAS[engine]
    return [import_extra(m, f'--engine {engine}', name, extra) for m in modules + extra_modules]


def unavailable(engine: str, precision: str, caps: dict[str, bool]) -> str | None:
    """Why `engine` cannot run `precision` on this machine (a sentence with the fix), or None.

    Args:
        engine: one of `ENGINES`.
        precision: one of `densenet.deploy.inference.PRECISIONS`.
        caps: `densenet.system.runtime.capabilities()`.

    Returns:
        The reason, or None where the engine runs that precision here.

    Raises:
        ValueError: an unknown engine or precision.
    """
    if engine not in ENGINES:
        raise ValueError(f'engine must be one of {ENGINES}, got {engine!r}')
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if engine == 'onnxruntime' and precision == 'bf16':
        return ('ONNX Runtime has no bfloat16 inference on CPUs: use --engine openvino or '
                'mxnet for bf16, or fp32 or int8 with onnxruntime')
    return unsupported(precision, caps)


def threads() -> int:
    """The thread count MXNet's OpenMP pool has: OMP_NUM_THREADS, else the available cores.

    Returns:
        A positive thread count.
    """
    value = os.environ.get('OMP_NUM_THREADS', '').strip()
    return int(value) if value.isdigit() and int(value) > 0 else runtime.available_cores()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Mute the ONNX Runtime quantizer's progress prints and per-tensor warnings."""
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.root.setLevel(level)


def qdq_model(onnx_path: str, calib_images: onp.ndarray, side: int, out_path: str) -> str:
    """Write `onnx_path` statically quantized to INT8 (QDQ format) as `out_path`.

    Per-channel INT8 weights, activations with thresholds at ONNX Runtime's
    percentile calibration (`ONNX_CALIBRATION`) over `calib_images`; the first
    convolution (one input channel) and the classifier stay fp32. On CPUs without
    VNNI or AMX the weights use 7 bits (ONNX Runtime's ``reduce_range``), for the
    saturating 16-bit sums that `default_int8_dtype` describes.

    Args:
        onnx_path: an fp32 model from `densenet.deploy.export.export_onnx`.
        calib_images: uint8 images (N, H, W) or (N, H, W, C), training images.
        side: the side the model takes.
        out_path: where the quantized model is written.

    Returns:
        `out_path`.

    Raises:
        UsageError: ONNX Runtime's quantization tools are not installed.
    """
    onnx, _, quant = require('onnxruntime', 'onnxruntime.quantization')
    model = onnx.load(onnx_path)
    for i, node in enumerate(model.graph.node):  # MXNet's exporter leaves most unnamed
        node.name = node.name or f'{node.op_type}_{i}'
    # ONNX Runtime's CalibrationDataReader protocol: get_next, the next feed, None after the last
    feeds = iter([{model.graph.input[0].name: batch}
                  for batch in calibration_batches(calib_images, resize=side)])
    layers = [n.name for n in model.graph.node if n.op_type in ('Conv', 'Gemm', 'MatMul')]
    with tempfile.TemporaryDirectory() as tmp:
        named, prepared = os.path.join(tmp, 'named.onnx'), os.path.join(tmp, 'prepared.onnx')
        onnx.save(model, named)
        with _quiet():
            quant.quant_pre_process(named, prepared, skip_symbolic_shape=True)
            quant.quantize_static(
                prepared, out_path, SimpleNamespace(get_next=lambda: next(feeds, None)),
                quant_format=quant.QuantFormat.QDQ,
                per_channel=True, reduce_range=default_int8_dtype(runtime.capabilities()) != 'auto',
                activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
                calibrate_method=quant.CalibrationMethod[ONNX_CALIBRATION],
                nodes_to_exclude=[layers[0], layers[-1]])
    return out_path


def _onnxruntime(ort: ModuleType, onnx_path: str, precision: str) -> Predictor:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()  # nodes run one after another (the default)
    session = ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return Predictor('onnxruntime', precision, lambda X: session.run(None, {name: X})[0])


def _openvino(ov: ModuleType, onnx_path: str, precision: str) -> Predictor:
    request = ov.Core().compile_model(
        ov.convert_model(onnx_path), 'CPU',
        {'INFERENCE_PRECISION_HINT': OPENVINO_HINTS[precision],
         'INFERENCE_NUM_THREADS': threads()}).create_infer_request()
    # infer returns copies of the outputs (share_outputs=False): the request reuses its buffers
    return Predictor('openvino', precision, lambda X: request.infer({0: X})[0])


def engine(params_or_model: str | CheckedClassifier, engine: str, precision: str = 'fp32',
           calib_images: onp.ndarray | None = None,
           input_shape: Sequence[int] | None = None, images: int = 1,
           batch: int = 1) -> Predictor:
    """A trained model on `engine` at `precision`, as a `Predictor`.

    Args:
        params_or_model: a .params file (rebuilt from its metadata, as
            `densenet.models.params.load_model` does) or a model.
        engine: 'mxnet', 'onnxruntime', 'openvino' or 'auto' (`choose` picks one for
            `images` images at `batch`).
        precision: 'fp32', 'bf16' or 'int8'.
        calib_images: uint8 training images for int8
            (`densenet.deploy.inference.calibration_images`).
        input_shape: the shape of one batch, (1, C, H, W); default: the params file's
            input size, else the model's default side.
        images: with 'auto': the images the predictor is for.
        batch: with 'auto': the batch size they come in.

    Returns:
        The `Predictor`: called on a float32 batch (N, C, H, W), it returns the logits
        (N, classes) as float32 numpy. The model handed in is left as it was.

    Raises:
        ValueError: an unknown engine or precision, or int8 without calibration images.
        UsageError: the engine cannot run `precision` on this machine (bf16 without
            the CPU's bfloat16 instructions; bf16 on ONNX Runtime), or its extra is
            not installed.
    """
    model = params_or_model
    if isinstance(model, str):
        model, meta = load_model(model)
        input_shape = input_shape or (1, meta['channels'], meta['input_size'], meta['input_size'])
    shape = batch_shape(model, input_shape)
    if engine == 'auto':  # as `measure` timed it
        engine = choose(model, shape, precision, images, batch)[0]
    if why := unavailable(engine, precision, runtime.capabilities()):
        raise UsageError(f'{engine} {precision}: {why}')
    if precision == 'int8' and calib_images is None:
        raise ValueError('int8 needs calibration images (uint8 N x H x W)')
    modules = require(engine) if engine != 'mxnet' else []  # before any work
    if engine == 'mxnet':
        return inference_model(model, precision, calib_images, shape, mx.cpu())
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, tmp, input_shape=shape)
        if precision == 'int8':
            assert calib_images is not None
            path = qdq_model(path, calib_images, shape[-1], os.path.join(tmp, 'int8.onnx'))
        run = _onnxruntime if engine == 'onnxruntime' else _openvino
        return run(modules[-1], path, precision)  # the engine's own module


class Figures(TypedDict):
    """One engine's measured figures for one model and precision."""

    build_s: float   # export, quantization, compilation and the first call
    one_s: float     # seconds per image at batch 1
    batch_s: float   # seconds per image at `batch`
    batch: int
    # top-1 agreement with MXNet's fp32 on `agreement_images` held-out images, where
    # measured, for the weights whose `weights_digest` is `agreement_weights`
    agreement: NotRequired[float]
    agreement_images: NotRequired[int]
    agreement_weights: NotRequired[str]


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


def model_key(model: CheckedClassifier, shape: Sequence[int]) -> str:
    """The model's architecture (its name and a digest of every parameter's shape, so a new
    classifier or another depth is another model) and input shape.

    Args:
        model: the model.
        shape: one batch's shape, (1, C, H, W).

    Returns:
        The key.
    """
    shapes = json.dumps([p.shape for p in model.net.collect_params().values()])
    digest = hashlib.sha256(shapes.encode()).hexdigest()[:16]
    side = 'x'.join(map(str, shape[1:]))
    return f'{model.registry_name or type(model).__name__} {digest} {side}'


def weights_digest(model: CheckedClassifier) -> str:
    """A digest of the model's parameter values (running statistics included): agreement
    with fp32 is a property of trained weights, where timings are of the architecture.

    Args:
        model: the model.

    Returns:
        The digest.
    """
    digest = hashlib.sha256()
    for param in model.net.collect_params().values():  # in the order the model defines them
        digest.update(param.data().asnumpy().tobytes())
    return digest.hexdigest()[:16]


def installed(name: str) -> bool:
    """Whether `name`'s packages import (MXNet always does).

    Args:
        name: one of `densenet.deploy.engines.ENGINES`.

    Returns:
        Whether it can run.
    """
    try:
        return name == 'mxnet' or bool(require(name))
    except UsageError:  # not installed, or an install that fails to import
        return False


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


def _top1(predictor: Callable[[onp.ndarray], onp.ndarray],
          batches: Callable[[], Iterable[onp.ndarray]]) -> onp.ndarray:
    """The class `predictor` gives each image of `batches()`."""
    return onp.concatenate([onp.asarray(predictor(X)).argmax(axis=1) for X in batches()])


def measure(model: CheckedClassifier, shape: Sequence[int], precisions: Sequence[str],
            batch: int = 64, calibration: int = 512, seconds: float = 1.0,
            log: Callable[[str], None] = print,
            check: Callable[[], Iterable[onp.ndarray]] | None = None,
            calib: onp.ndarray | None = None) -> dict[str, dict[str, Figures]]:
    """Time `model` on every engine that runs each precision here (installed, and the
    CPU has the instructions), and where `check` is given, measure how often each agrees
    with MXNet's fp32 on the top class.

    Args:
        model: the model, on the CPU; left as it was.
        shape: one batch's shape, (1, C, H, W).
        precisions: the precisions to time.
        batch: the larger batch's size.
        calibration: how many random images int8 is calibrated on where `calib` is None
            (enough for its times, not for its agreement).
        seconds: the least time spent timing each batch size.
        log: where a line per engine goes.
        check: a function that yields held-out float32 batches (N, C, H, W), anew at
            each call; None: agreement is not measured.
        calib: uint8 training images that int8 is calibrated on, as the commands
            calibrate it (`densenet.deploy.inference.calibration_images`); without them
            int8's agreement is not measured (random calibration images say nothing of it).

    Returns:
        {precision: {engine: figures}}.
    """
    shape = tuple(shape)
    rng = onp.random.RandomState(0)
    X = rng.uniform(0, 1, (batch, *shape[1:])).astype('float32')
    calib_shape = (calibration, shape[2], shape[3]) + ((shape[1],) if shape[1] > 1 else ())
    real_calib = calib is not None
    if calib is None:
        calib = rng.randint(0, 256, calib_shape).astype('uint8')
    caps = runtime.capabilities()
    # MXNet fp32's classes and the weights they are of, where agreement is measured
    reference = None if check is None else (
        _top1(engine(model, 'mxnet', 'fp32', None, shape).predict, check), weights_digest(model))
    out: dict[str, dict[str, Figures]] = {}
    for precision in precisions:
        for name in ENGINES:
            if unavailable(name, precision, caps) or not installed(name):
                continue
            tic = time.perf_counter()
            predictor = engine(model, name, precision, calib if precision == 'int8' else None,
                               shape).predict
            predictor(X[:1])
            build = time.perf_counter() - tic
            figures = Figures(build_s=build, one_s=_per_image(predictor, X[:1], seconds),
                              batch_s=_per_image(predictor, X, seconds), batch=batch)
            line = (f'{precision} on {name}: build {build:.2f} s, {1e3 * figures["one_s"]:.2f} '
                    f'ms per image at batch 1, {1e3 * figures["batch_s"]:.2f} ms at batch {batch}')
            if check is not None and reference is not None and (precision != 'int8'
                                                                 or real_calib):
                classes, weights = reference
                figures['agreement'] = float((_top1(predictor, check) == classes).mean())
                figures['agreement_images'] = len(classes)
                figures['agreement_weights'] = weights
                line += (f', top-1 agreement with fp32 {figures["agreement"]:.4f} on '
                         f'{len(classes)} images')
            out.setdefault(precision, {})[name] = figures
            log(line)
    return out


def _read() -> dict[str, Any]:
    """The recorded timings, {machine: {model: {precision: {engine: figures}}}}; {} where
    there are none, or the file is unreadable or of another layout (timed again when
    asked)."""
    try:
        with open(user_cache(RECORD)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    ok = isinstance(data, dict) and data.get('format') == RECORD_FORMAT
    return data['timings'] if ok and isinstance(data.get('timings'), dict) else {}


def record_path() -> str:
    """Where `record` writes, its folder made.

    Returns:
        The path.

    Raises:
        UsageError: a folder this user cannot write to (checked before any timing).
    """
    path = user_cache(RECORD)
    folder = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise UsageError(f'{folder} is not a folder this user can write the timings to: set '
                         'DENSENET_CACHE to one')
    return path


def record(model: CheckedClassifier, shape: Sequence[int],
           figures: dict[str, dict[str, Figures]]) -> str:
    """Keep `figures` for this machine, `model` and input `shape` (replacing the precisions
    they cover).

    Args:
        model: the model.
        shape: one batch's shape, (1, C, H, W).
        figures: `measure`'s result.

    Returns:
        The record's path.

    Raises:
        UsageError: a cache folder this user cannot write to.
    """
    timings, key, machine = _read(), model_key(model, shape), machine_key()
    if not isinstance(timings.get(machine), dict):
        timings[machine] = {}
    models = timings[machine]
    models[key] = {**(models[key] if isinstance(models.get(key), dict) else {}), **figures}
    path = record_path()
    atomic_text(path, json.dumps({'format': RECORD_FORMAT, 'timings': timings}, indent=1,
                                 sort_keys=True))
    return path


def _costs(model: CheckedClassifier, shape: Sequence[int], images: int, batch: int
           ) -> dict[tuple[str, str], tuple[float, float | None]]:
    """{(precision, engine): (seconds for `images` images at `batch`, top-1 agreement with
    fp32 of these weights, or None)} from the recorded figures, for the engines that run
    the precision here; a damaged entry counts as none."""
    caps = runtime.capabilities()
    try:
        recorded = _read()[machine_key()][model_key(model, shape)]
        entries = [(precision, name, f) for precision, by_engine in recorded.items()
                   if precision in PRECISIONS for name, f in by_engine.items()
                   if name in ENGINES and not unavailable(name, precision, caps)]
    except (KeyError, TypeError, AttributeError):
        return {}
    weights = None
    costs = {}
    for precision, name, f in entries:
        try:
            cost = float(f['build_s'] + images * (f['one_s'] if batch == 1 else f['batch_s']))
            agreement = None
            if 'agreement' in f:
                weights = weights or weights_digest(model)
                if f.get('agreement_weights') == weights:
                    agreement = float(f['agreement'])
        except (KeyError, TypeError, ValueError):
            continue
        costs[precision, name] = (cost, agreement)
    return costs


def _fastest(costs: dict[tuple[str, str], tuple[float, float | None]]) -> tuple[str, str] | None:
    """The cheapest (precision, engine) of `costs` whose engine imports (only the engines
    tried are imported)."""
    return next((key for key in sorted(costs, key=lambda k: costs[k][0])
                 if installed(key[1])), None)


def choose(model: CheckedClassifier, shape: Sequence[int], precision: str, images: int,
           batch: int) -> tuple[str, str]:
    """The engine that runs `images` images of `model` at `precision` soonest here.

    Args:
        model: the model.
        shape: one batch's shape, (1, C, H, W).
        precision: the precision.
        images: the job's images.
        batch: the batch size they are run at.

    Returns:
        (engine, how it was chosen: a phrase for the output line).
    """
    best = _fastest({k: v for k, v in _costs(model, shape, images, batch).items()
                     if k[0] == precision})
    if best is None:
        return 'mxnet', ('auto: no engine timed for this model here yet; `densenet engines` '
                         'times them')
    return best[1], _fastest_for(images)


def _fastest_for(images: int) -> str:
    return f'auto: fastest measured here for {images} image{"s" * (images != 1)}'


def choose_precision(model: CheckedClassifier, shape: Sequence[int], images: int, batch: int,
                     engine: str = 'auto', exclude: Collection[str] = ()
                     ) -> tuple[str, str, str]:
    """The precision, and the engine, that run `images` images of `model` soonest here
    among fp32 and the precisions whose top-1 agreement with fp32, measured for these
    weights on that engine, is at least `MIN_AGREEMENT`.

    Args:
        model: the model.
        shape: one batch's shape, (1, C, H, W).
        images: the job's images.
        batch: the batch size they are run at.
        engine: 'auto', or the one engine to consider.
        exclude: precisions not to consider (e.g. int8 where no calibration images are
            at hand).

    Returns:
        (precision, engine, how they were chosen: a phrase for the output line); fp32 on
        MXNet (or `engine`) where fp32 is not timed here.
    """
    costs = {k: v for k, v in _costs(model, shape, images, batch).items()
             if (engine == 'auto' or k[1] == engine) and k[0] not in exclude
             and (k[0] == 'fp32' or (v[1] is not None and v[1] >= MIN_AGREEMENT))}
    best = _fastest(costs)
    if best is None or not any(precision == 'fp32' for precision, _ in costs):
        return 'fp32', 'mxnet' if engine == 'auto' else engine, (
            'auto: no precision timed for this model here yet; `densenet engines` times them')
    agreement = costs[best][1]
    why = '' if best[0] == 'fp32' else f', {agreement:.2%} top-1 agreement with fp32'
    return (*best, _fastest_for(images) + why)
