"""INT8, BF16 and fp32 inference models for CPUs (oneDNN), from a trained DenseNet.

MXNet 1.9.1 quantizes (``quantize_net``) and mixes precision (AMP) only
through its legacy, non-numpy API. So the model is traced into a legacy
`Graph` (densenet/deploy/graphs.py; INT8 and BF16 with the legacy
concatenation, fp32 with the fast path's; same values, see block_mode.py),
which INT8 and fp32 first rewrite for oneDNN (BatchNorms as depthwise
convolutions fused with their ReLUs; INT8 concatenations without rescaling).
`InferenceModel` runs such a graph and hides the mode switch: it is MXNet's
`Predictor`, the one interface of every engine (numpy batches in, logits out).
The model handed in is left as it was.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import warnings
from collections.abc import Callable, Sequence

import mxnet as mx
import numpy as onp
from mxnet import np
from mxnet.base import NDArrayHandle, py_str

from densenet.data.batches import DataModule, to_tensor
from densenet.deploy.graphs import (
    Graph,
    block_graph,
    fold_batchnorm,
    graph_block,
    legacy_graph,
    legacy_mode,
    padded_graph,
    plain_concat_inputs,
    share_concat_ranges,
)
from densenet.models.classifier import CheckedClassifier
from densenet.modes.block_mode import channel_block, fast_concat_mode
from densenet.system import runtime
from densenet.system.hints import Array
from densenet.system.machine import unsupported
from densenet.system.mxcompat import copy_into

PRECISIONS = ('fp32', 'bf16', 'int8')


class Predictor:
    """A model for inference on one engine at one precision: numpy batches in, logits out.

    Every engine is one: MXNet (`InferenceModel`), ONNX Runtime and OpenVINO
    (`densenet.deploy.engines.engine`). Called on a numpy batch it returns numpy;
    called on an MXNet array (numpy-mode or legacy) it returns a numpy-mode array on
    that array's device, as the model itself does, so that
    `densenet.train.evaluate.evaluate` and `densenet.models.tta.FlipAverage` take it
    like the model.

    Args:
        name: the engine: 'mxnet', 'onnxruntime' or 'openvino'.
        precision: 'fp32', 'bf16' or 'int8'.
        run: the engine's call, a float32 batch (N, C, H, W) to its logits.
    """

    def __init__(self, name: str, precision: str,
                 run: Callable[[onp.ndarray], onp.ndarray]) -> None:
        self.name, self.precision, self._run = name, precision, run

    def predict(self, X: onp.ndarray) -> onp.ndarray:
        """The logits of a contiguous float32 numpy batch (N, C, H, W), as numpy.

        Args:
            X: the batch.

        Returns:
            The logits (N, classes).
        """
        return self._run(X)

    def __call__(self, X: Array | onp.ndarray) -> Array | onp.ndarray:
        """The logits of a batch (N, C, H, W), float32.

        Args:
            X: the batch: numpy, or an MXNet array (numpy-mode or legacy).

        Returns:
            numpy logits for a numpy batch, else a numpy-mode array on `X`'s device.
        """
        if not isinstance(X, onp.ndarray):
            return np.array(self(X.asnumpy()), ctx=X.ctx)
        return onp.asarray(self.predict(onp.ascontiguousarray(X, dtype=onp.float32)),
                           dtype=onp.float32)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.name!r}, {self.precision!r})'


class InferenceModel(Predictor):
    """A legacy-API graph on MXNet, a `Predictor`.

    The graph runs as an MXNet CachedOp with static memory and shapes, one per
    input shape (replanning for another shape costs milliseconds); the ops of
    the `max_shapes` most recent shapes are kept. Not for concurrent calls from
    several threads (MXNet's static CachedOps are not).

    Args:
        graph: the graph.
        ctx: its device.
        precision: what the graph computes in: 'fp32', 'bf16' or 'int8'.
        max_shapes: how many input shapes keep their compiled op.
        batch1: the symbol run for batch 1 instead of ``graph.symbol`` (the same
            inputs and values; `fp32_model`'s `plain_concat_inputs`).
    """

    def __init__(self, graph: Graph, ctx: mx.Context, precision: str = 'fp32',
                 max_shapes: int = 2, batch1: mx.sym.Symbol | None = None) -> None:
        super().__init__('mxnet', precision, self._run_graph)
        self.graph, self.ctx, self.batch1 = graph, ctx, batch1
        names = graph.symbol.list_inputs()
        if batch1 is not None and batch1.list_inputs() != names:
            raise ValueError('batch1 must take the inputs of graph.symbol, in its order')
        data = names.index(graph.data_name)
        with legacy_mode():
            self._args = [None if i == data else graph.params[n].as_in_context(ctx)
                          for i, n in enumerate(names)]
        flags = [('static_alloc', True), ('static_shape', True), ('data_indices', [data]),
                 ('param_indices', [i for i in range(len(names)) if i != data])]
        # A CachedOp and its input buffer per input shape, for the most recent shapes
        # (made in legacy mode, where `_run_graph` calls this).
        self._compiled = functools.lru_cache(maxsize=max_shapes)(
            lambda shape: (mx.nd.CachedOp(self.symbol_for(shape), flags),
                           mx.nd.empty(shape, ctx=ctx)))

    def symbol_for(self, shape: Sequence[int]) -> mx.sym.Symbol:
        """The symbol that runs a batch of `shape`.

        Args:
            shape: the batch's shape (N, C, H, W).

        Returns:
            ``batch1`` where there is one and N is 1, else the graph's.
        """
        return self.batch1 if self.batch1 is not None and shape[0] == 1 else self.graph.symbol

    def _run_graph(self, X: onp.ndarray) -> onp.ndarray:
        """The logits of a float32 numpy batch (N, C, H, W), as numpy."""
        with legacy_mode():
            op, buffer = self._compiled(tuple(X.shape))
            copy_into(buffer, X)
            return op(*[buffer if a is None else a for a in self._args]).asnumpy()


def calibration_batches(images: onp.ndarray, batch_size: int = 64,
                        resize: int = 96) -> list[onp.ndarray]:
    """Calibration batches from uint8 images.

    Args:
        images: uint8 (N, 28, 28) images.
        batch_size: images per batch.
        resize: the square side.

    Returns:
        numpy float32 batches, N x 1 x H x W, in [0, 1].
    """
    return [to_tensor(images[start:start + batch_size], (resize, resize)).asnumpy()
            for start in range(0, len(images), batch_size)]


def calibration_images(data: DataModule, n: int = 512,
                       seed: int = 0) -> onp.ndarray:
    """`n` training images of a data module, drawn at random, for INT8 calibration.

    Args:
        data: the data module.
        n: the number of images.
        seed: the draw's seed.

    Returns:
        The images, uint8.
    """
    images = data.train_arrays[0]
    idx = onp.random.RandomState(seed).choice(len(images), min(n, len(images)), replace=False)
    return images[onp.sort(idx)]


class PercentileCollector:
    """INT8 thresholds at a percentile of each layer's calibration outputs.

    MXNet 1.9.1 calibrates with the extremes ('naive', which spends the 8-bit
    range on rare outliers) or by KL divergence ('entropy'); this is its
    'customize' hook. It keeps a random sample of every output and takes the
    `percentile` (and, for outputs that go negative, the mirror percentile) as
    the thresholds.

    Args:
        percentile: the threshold's percentile, in (50, 100].
        per_batch: the values sampled from each output per batch.
        seed: the sampling seed.

    Raises:
        ValueError: a percentile outside (50, 100].
    """
    include_layer: list[str] | None = None  # MXNet's hook: None means every layer's output

    def __init__(self, percentile: float = 99.995, per_batch: int = 65536,
                 seed: int = 0) -> None:
        if not 50 < percentile <= 100:
            raise ValueError(f'percentile must be in (50, 100], got {percentile}')
        self.percentile, self.per_batch = percentile, per_batch
        self.rng = onp.random.RandomState(seed)
        self.samples: dict[str, list[onp.ndarray]] = {}
        self.lowest: dict[str, float] = {}

    def collect(self, name: bytes, arr: int) -> None:
        """MXNet's monitor callback.

        Args:
            name: the output's name.
            arr: a raw NDArray handle, ours to free.
        """
        values = mx.nd.NDArray(ctypes.cast(arr, NDArrayHandle), writable=False).asnumpy()
        self.add(py_str(name), values)

    def add(self, name: str, values: onp.ndarray) -> None:
        """Record `values` as an output of layer `name`.

        Args:
            name: the layer output's name.
            values: a numpy array.
        """
        values = values.ravel()
        self.lowest[name] = min(self.lowest.get(name, onp.inf), float(values.min()))
        if values.size > self.per_batch:
            values = values[self.rng.randint(0, values.size, self.per_batch)]
        self.samples.setdefault(name, []).append(values)

    @property
    def min_max_dict(self) -> dict[str, tuple[float, float]]:
        """The thresholds, as MXNet's calibration reads them.

        Returns:
            {layer output: (min, max) threshold}.
        """
        out: dict[str, tuple[float, float]] = {}
        for name, parts in self.samples.items():
            low, high = onp.percentile(onp.concatenate(parts),
                                       [100 - self.percentile, self.percentile])
            out[name] = (0.0 if self.lowest[name] >= 0 else float(low), float(high))
        return out


CALIB_MODES = ('percentile', 'naive', 'entropy')


def default_int8_dtype(caps: dict[str, bool]) -> str:
    """The INT8 activation type for this CPU.

    Without VNNI or AMX oneDNN multiplies uint8 by int8 through saturating 16-bit
    sums, so signed activations agree better with fp32 there (the results pages
    give the figures).

    Args:
        caps: the CPU's capabilities (`densenet.system.machine.capabilities`).

    Returns:
        'auto' (uint8 after ReLUs) with VNNI or AMX; 'int8' (signed, 7 bits for ReLU
        outputs) without.
    """
    return 'auto' if caps['vnni'] or caps['amx'] else 'int8'


_MKLDNN_STATE = "We can't generate TBlob for MKLDNN data"
STALE_ONEDNN_STATE = (
    'INT8 calibration failed inside MXNet: this process ran imperative (non-hybridized) '
    'oneDNN layers, such as book-literal training, whose cached state MXNet 1.9.1 then '
    'misapplies in its fused fully-connected layer; quantize in a new Python process '
    '(`densenet evaluate` and `predict --precision int8` each start one), or start this '
    'one with MXNET_DISABLE_MKLDNN_FC_OPT=1 (read when MXNet loads)')


def int8_model(model: CheckedClassifier, calib_images: onp.ndarray,
               input_shape: Sequence[int] = (1, 1, 96, 96), ctx: mx.Context | None = None,
               calib_mode: str = 'percentile', keep_edges_fp32: bool = True,
               percentile: float = 99.995, quantized_dtype: str | None = None) -> InferenceModel:
    """Quantize with oneDNN INT8, thresholds calibrated on `calib_images`.

    The defaults were chosen by top-1 agreement with fp32 on held-out training
    images: thresholds at a high percentile, with the first convolution (one
    input channel) and the classifier kept in fp32. Before quantization the
    BatchNorms become depthwise convolutions (`fold_batchnorm`), quantized and
    fused with their ReLUs like any convolution; after it, the dense blocks'
    concatenations are spared their rescaling (`share_concat_ranges`). The
    caller's model is not changed.

    Args:
        model: the trained model.
        calib_images: uint8 training images (never the test split).
        input_shape: the shape the graph is traced at.
        ctx: the device (default: the CPU).
        calib_mode: 'percentile', 'naive' (min/max) or 'entropy'.
        keep_edges_fp32: keep the first convolution and the classifier in fp32.
        percentile: the percentile of 'percentile'.
        quantized_dtype: MXNet's 'auto', 'int8' or 'uint8'; default by CPU
            (`default_int8_dtype`).

    Returns:
        The quantized model.

    Raises:
        ValueError: an unknown `calib_mode`.
        RuntimeError: MXNet's own oneDNN state in this process broke the calibration
            (`STALE_ONEDNN_STATE`: after imperative training in the same process).
    """
    quantized_dtype = quantized_dtype or default_int8_dtype(runtime.capabilities())
    if calib_mode not in CALIB_MODES:
        raise ValueError(f'calib_mode must be one of {CALIB_MODES}, got {calib_mode!r}')
    ctx = ctx or mx.cpu()
    graph = legacy_graph(model, input_shape)
    # the first convolution's and the last dense layer's names
    layers = [n['name'] for n in json.loads(graph.symbol.tojson())['nodes']
              if n['op'] in ('Convolution', 'FullyConnected')]
    exclude = [layers[0], layers[-1]] if keep_edges_fp32 else None
    block = graph_block(fold_batchnorm(graph, input_shape), ctx)
    collector = PercentileCollector(percentile) if calib_mode == 'percentile' else None
    data = onp.concatenate(calibration_batches(calib_images, resize=input_shape[-1]))
    # MXNet's quantization announces its oneDNN backend (unless the user asked for that
    # line) and warns that the graph it rebuilds has no data type for its input.
    os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
    with legacy_mode(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'Cannot decide type', UserWarning)
        calib = mx.io.NDArrayIter(data={'data': mx.nd.array(data)}, batch_size=64)
        try:
            qnet = mx.contrib.quantization.quantize_net_v2(
                block, quantized_dtype=quantized_dtype, quantize_mode='full',
                calib_data=calib, calib_mode='customize' if collector else calib_mode,
                LayerOutputCollector=collector, num_calib_examples=len(data), ctx=ctx,
                exclude_layers=exclude)
        except mx.base.MXNetError as e:
            if _MKLDNN_STATE not in str(e):
                raise
            raise RuntimeError(STALE_ONEDNN_STATE) from None
    return InferenceModel(share_concat_ranges(block_graph(qnet)), ctx, 'int8')


def bf16_model(model: CheckedClassifier, input_shape: Sequence[int] = (1, 1, 96, 96),
               ctx: mx.Context | None = None, fuse: bool = True) -> InferenceModel:
    """Mixed precision: oneDNN bfloat16 where AMP allows, fp32 elsewhere.

    Args:
        model: the trained model (left as it was).
        input_shape: the shape the graph is traced at.
        ctx: the device (default: the CPU).
        fuse: let oneDNN fuse the converted graph (BatchNorm with ReLU, casts into
            their neighbours).

    Returns:
        The converted model.

    Raises:
        RuntimeError: the CPU has neither avx512_bf16 nor AMX (the reason says so).
    """
    ctx = ctx or mx.cpu()
    if why := unsupported('bf16', runtime.capabilities()):
        raise RuntimeError(why)
    block = graph_block(legacy_graph(model, input_shape), ctx)
    with legacy_mode():
        from mxnet.contrib import amp
        amp_net = amp.convert_hybrid_block(block, target_dtype='bfloat16', ctx=ctx)
        if fuse:
            # The backend is called MKLDNN in MXNet 1.9.1; an unknown name would
            # silently leave the graph unfused.
            amp_net.optimize_for(mx.nd.zeros(input_shape, ctx=ctx), backend='MKLDNN')
    return InferenceModel(block_graph(amp_net), ctx, 'bf16')


def fp32_model(model: CheckedClassifier, input_shape: Sequence[int] = (1, 1, 96, 96),
               ctx: mx.Context | None = None) -> InferenceModel:
    """fp32 as one static graph: on a CPU, oneDNN-fused, the fastest fp32 inference here.

    The dense blocks compute as on the fast path (`fast_concat_mode`, and on a CPU
    `PaddedConv2D`); on a CPU a network whose channels are not whole channel blocks (a
    growth rate of 12) is traced with zero channels inserted instead (`padded_graph`).
    On a CPU the BatchNorms over a multiple of `CHANNEL_BLOCK` channels become
    depthwise convolutions (`fold_batchnorm`), which oneDNN fuses with the ReLUs after
    them; over other channel counts a depthwise convolution falls to slower kernels
    than the BatchNorm it replaces. On a CPU, batches of one image run a copy of the
    graph whose concatenations take a plain-layout input (`plain_concat_inputs`). The
    values are the model's up to float32 rounding. The caller's model is not changed.

    Args:
        model: the trained model.
        input_shape: the shape the graph is traced at.
        ctx: the device (default: the CPU; oneDNN fuses on a CPU only).

    Returns:
        The model's graph.
    """
    ctx = ctx or mx.cpu()
    block = channel_block(ctx)
    graph = (padded_graph(model) if block > 1 else None) or \
        legacy_graph(model, input_shape, fast_concat_mode(model.net), block)
    graph = fold_batchnorm(graph, input_shape, block)
    if ctx.device_type != 'cpu':
        return InferenceModel(graph, ctx)
    with legacy_mode():  # 'MKLDNN' is the oneDNN backend's name in MXNet 1.9.1
        graph = Graph(graph.symbol.optimize_for('MKLDNN'), graph.params)
    return InferenceModel(graph, ctx, batch1=plain_concat_inputs(graph, input_shape).symbol)


def inference_model(model: CheckedClassifier, precision: str,
                    calib_images: onp.ndarray | None = None,
                    input_shape: Sequence[int] = (1, 1, 96, 96),
                    ctx: mx.Context | None = None) -> InferenceModel:
    """`model` for inference in `precision`.

    Args:
        model: the trained model.
        precision: 'fp32', 'bf16' or 'int8' (PRECISIONS).
        calib_images: uint8 training images; INT8 needs them.
        input_shape: the shape the graph is traced at.
        ctx: the device.

    Returns:
        The model for that precision (`fp32_model`, `bf16_model` or `int8_model`).

    Raises:
        ValueError: an unknown precision, or INT8 without calibration images.
        RuntimeError: BF16 on a CPU that cannot run it.
    """
    if precision == 'int8':
        if calib_images is None:
            raise ValueError('int8 needs calibration images (uint8 N x 28 x 28)')
        return int8_model(model, calib_images, input_shape, ctx)
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    return (fp32_model if precision == 'fp32' else bf16_model)(model, input_shape, ctx)
