"""--precise-bn: BatchNorm statistics that describe the weights being evaluated.

BatchNorm normalises with the batch's statistics while training and with running
averages of them in inference mode. When the weights move faster than those
averages follow (a short run, a high learning rate, plain SGD on a small
dataset), the model scores far worse in inference mode than it trains, down to
chance on the very images it trains on. Before each
validation this extension compares the two on a few training batches; when
inference mode trails by more than `MAX_GAP` (or always, with
``--precise-bn always``) it re-estimates every BatchNorm layer's statistics as
the mean over up to `MAX_BATCHES` training batches, with the current weights.
The weights themselves, and so the training, are not changed.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from densenet.data.batches import unaugmented_train_loader
from densenet.models.classifier import CheckedClassifier
from densenet.system.hints import Array
from densenet.system.mxcompat import layer_kwargs
from densenet.train.config import TrainConfig
from densenet.train.evaluate import evaluate
from densenet.train.extensions.base import Extension, LoopView, Process

#: Training batches compared in both modes to decide whether the statistics are stale.
CHECK_BATCHES = 4
#: Accuracy on those batches by which inference mode may trail training mode.
MAX_GAP = 0.1
#: Training batches the statistics are re-estimated from.
MAX_BATCHES = 200


def mode_gap(model: CheckedClassifier, batches: list[tuple[Array, Array]],
             ctx: mx.Context) -> tuple[float, float]:
    """The accuracy in training mode and in inference mode on `batches`.

    Neither pass (`densenet.train.evaluate.evaluate`, once per mode) changes anything:
    MXNet updates the running statistics in backward only.

    Args:
        model: the model.
        batches: (images, labels) batches.
        ctx: the device.

    Returns:
        (accuracy in training mode, accuracy in inference mode).
    """
    with autograd.train_mode():
        train_acc = evaluate(model, batches, [ctx])[1]
    return train_acc, evaluate(model, batches, [ctx])[1]


def reestimate(model: CheckedClassifier, batches: Iterable[tuple[Array, Array]],
               ctx: mx.Context, max_batches: int = MAX_BATCHES) -> int:
    """Set every BatchNorm layer's running statistics to the mean of batch statistics.

    Each batch's statistics are read back from MXNet's own update of the running
    values, so they are exactly what training mode normalised with. Without a batch
    nothing changes.

    Args:
        model: the model.
        batches: training batches.
        ctx: the device.
        max_batches: the most batches used.

    Returns:
        The number of batches used.
    """
    layers: list[nn.BatchNorm] = []
    model.net.apply(lambda b: layers.append(b) if isinstance(b, nn.BatchNorm) else None)
    # Each running statistic (mean and variance alike) with its layer's momentum.
    stats = [(stat, float(layer_kwargs(b).get('momentum', 0.9)))
             for b in layers for stat in (b.running_mean, b.running_var)]
    sums: list[Array] = [0.0] * len(stats)  # arrays from the first batch on
    used = 0
    for X, _ in itertools.islice(batches, max_batches):
        before = [stat.data(ctx).copy() for stat, _ in stats]
        with autograd.record(train_mode=True):
            out = model(X.as_in_context(ctx))
        out.backward()
        sums = [total + (stat.data(ctx) - m * old) / (1 - m)
                for total, (stat, m), old in zip(sums, stats, before, strict=True)]
        used += 1
    if used:
        for (stat, _), total in zip(stats, sums, strict=True):
            # In place on every device: set_data would also reset the trainer's kvstore,
            # which a dist kvstore refuses mid-run.
            for arr in stat.list_data():
                arr[:] = (total / used).as_in_context(arr.ctx)
    return used


class PreciseBatchNorm(Extension):
    """``--precise-bn``: BatchNorm statistics that describe the weights evaluated.

    Before each validation it re-estimates stale (``auto``) or all (``always``)
    BatchNorm statistics on training images; ``off`` only warns when they are
    stale. A run with frozen features keeps the statistics it loaded.

    Args:
        mode: 'auto', 'always' or 'off' (``--precise-bn`` checks it).
    """
    name = 'precise_bn'

    def __init__(self, mode: str = 'auto') -> None:
        self.mode = mode

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> PreciseBatchNorm | None:
        return cls(cfg.precise_bn) if process.writer and not cfg.freeze_features else None

    def on_validation_start(self, loop: LoopView) -> None:
        # The training images, unaugmented, at the evaluation side, in an order fixed by
        # the run's seed (an image folder lists its images class by class, and a batch of
        # one class has the statistics of that class only). The loader's own generator
        # draws the order: nothing of the run's random state is used.
        ctx = loop.ctxs[0]
        loader = unaugmented_train_loader(loop.data, shuffle=True, seed=loop.cfg.seed)
        loader.set_epoch(loop.epoch)
        sample = list(itertools.islice(loader, CHECK_BATCHES))
        loader.set_epoch(loop.epoch)
        train_acc, infer_acc = mode_gap(loop.model, sample, ctx)
        stale = train_acc - infer_acc > MAX_GAP
        if self.mode == 'off' or not (stale or self.mode == 'always'):
            if stale:
                loop.log(f'warning: on training images the model scores {infer_acc:.2f} in '
                         f'inference mode against {train_acc:.2f} in training mode: its '
                         "BatchNorm running statistics lag the weights, so its scores "
                         'understate it; use --precise-bn auto (or train longer, or with '
                         '--momentum 0.9 and a lower --lr)')
            return
        used = reestimate(loop.model, loader, ctx)
        after = mode_gap(loop.model, sample, ctx)[1]
        why = (f'inference mode scored {infer_acc:.2f} against {train_acc:.2f} in training '
               'mode on training images' if stale else '--precise-bn always')
        loop.log(f'BatchNorm statistics re-estimated from {used} training batches ({why}; '
                 f'now {after:.2f})')

