"""The training loop: `fit` builds a run, `Loop` trains and validates it epoch by epoch,
`train_one_epoch` runs the steps.

The loop knows SGD steps, validation, the learning-rate schedule and the
divergence check; every other option (budget, weight averaging, progressive resizing, flip
averaging, the run folder's files and checkpoints) is an extension
(densenet/train/extensions) that the loop calls at its hooks. It writes
``metrics.csv``, ``curves.png``, ``last.params``, ``best.params`` and
``summary.json`` into ``out`` through those extensions; ``checkpoint/`` holds
what ``resume`` needs. Every file is written under a temporary name and renamed.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, npx

from densenet.data import DataModule
from densenet.data.shapes import fix_shapes
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.models.params import all_finite
from densenet.modes import prepare_model
from densenet.system import runtime
from densenet.system.files import atomic_text
from densenet.train.config import TrainConfig
from densenet.train.evaluate import evaluate
from densenet.train.extensions import Extension, default_extensions, run_folder_files
from densenet.train.extensions.base import EpochResult, Row, State, Steps, Summary, scored_weights
from densenet.train.objective import diverged, forward_train, loss_limit, lr_at, make_loss
from densenet.train.run_folder import ARRAYS, STATES_ORDER, SUMMARY, Checkpoint, Run
from densenet.train.setup import (
    build_model,
    check_resumable,
    freeze_features,
    initialize_from,
    make_data,
    make_trainer,
    run_metadata,
)

__all__ = ['Loop', 'Steps', 'EpochResult', 'fit', 'train_one_epoch']


class Progress:
    """A one-line progress bar with throughput and ETA, on `sys.stderr` as it is when the
    bar is made (so that a caller's redirection of stderr is honoured)."""

    def __init__(self) -> None:
        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.time()

    def update(self, prefix: str, done: int, total: int, images: int) -> None:
        """Show `done` of `total` steps (at most every 0.5 s on a terminal, every 30 s in a log).

        Args:
            prefix: the text before the bar.
            done: the steps done.
            total: the steps of the epoch.
            images: the images seen.
        """
        now = time.time()
        if not (done == total or now - self.last >= (0.5 if self.tty else 30)):
            return
        self.last, spent = now, now - self.start
        line = (f'{prefix} [{"#" * int(20 * done / total):<20}] {done}/{total} '
                f'{images / max(spent, 1e-9):6.1f} img/s ETA {spent / done * (total - done):5.0f}s')
        self.stream.write('\r' + line if self.tty else line + '\n')
        if self.tty and done == total:
            self.stream.write('\n')
        self.stream.flush()


class Loop:
    """One run's training: the model, its optimizer and data, and where the run stands.

    Extensions see it as a `densenet.train.extensions.base.LoopView`: read-only but
    for ``steps.total``, which a budget plans. `fit` builds one; the arguments are
    what it built. The loaders, the planned steps (``--epochs`` of them, or a resumed
    run's) and the loss follow from them.

    Args:
        cfg: the configuration.
        model: the model, on its devices.
        trainer: the optimizer.
        ctxs: the devices.
        data: the data module.
        run: the run folder.
        meta: the model's metadata, written beside every params file.
        extensions: the extensions, in the order their hooks are called.
        rank: this worker's rank (0 evaluates and writes).
        workers: the number of workers.
        log: where lines go.
        started: when the run started (default: now).
    """

    def __init__(self, cfg: TrainConfig, model: CheckedClassifier, trainer: gluon.Trainer,
                 ctxs: list[mx.Context], data: DataModule, run: Run, meta: Meta,
                 extensions: list[Extension], rank: int = 0, workers: int = 1,
                 log: Callable[[str], None] = print, started: float | None = None) -> None:
        self.cfg, self.model, self.trainer, self.ctxs = cfg, model, trainer, ctxs
        self.data, self.run, self.meta, self.extensions = data, run, meta, extensions
        self.rank, self.workers, self.log = rank, workers, log
        self.train_loader, self.val_loader = data.train_dataloader(), data.val_dataloader()
        self.steps = Steps(cfg.epochs * len(self.train_loader), len(self.train_loader))
        self.loss_fn = make_loss(model, cfg)
        self.writer = rank == 0  # only rank 0 evaluates and writes files
        self.started = self.epoch_tic = time.time() if started is None else started
        self.epoch = self.first_epoch = 0
        self.rows: list[Row] = []
        self.best_acc, self.prior_wall = -1.0, 0.0
        self.side = cfg.resize

    def elapsed(self) -> float:
        """Wall seconds of the run so far, across resumes.

        Returns:
            The seconds.
        """
        return self.prior_wall + time.time() - self.started

    def resume(self, state: Checkpoint) -> None:
        """Continue from a checkpoint: the weights, the optimizer states, the rows and
        counters, and every extension's part (`Extension.load_state_dict`).

        Args:
            state: the checkpoint.

        Raises:
            UsageError: a checkpoint whose states are not in the network's order.
        """
        stem = state['stem']
        self.model.net.load_parameters(stem + '.params', ctx=self.ctxs)
        load_states(self.trainer, state)
        arrays = npx.load(stem + ARRAYS) if ARRAYS in state['files'] else {}
        for ext in self.extensions:
            if ext.name in state['extensions']:
                ext.load_state_dict(State(state['extensions'][ext.name], [
                    arrays[k] for k in sorted(arrays) if k.startswith(ext.name + ':')]))
        self.epoch = self.first_epoch = state['epoch']
        self.steps.total = state['total_steps']
        self.rows, self.best_acc = state['rows'], state['best_val_acc']
        self.prior_wall = state['wall_s']
        self.log(f'resuming {self.cfg.out} after epoch {self.epoch}')

    def run_fit(self, state: Checkpoint | None = None) -> Summary | None:
        """Train until the planned steps are done; the writer writes summary.json.

        Args:
            state: the checkpoint being resumed, or None.

        Returns:
            The summary: the common fields and the extensions', or None on a worker that
            does not write.

        Raises:
            Diverged: a non-finite or exploding loss, or non-finite weights.
        """
        for ext in self.extensions:
            ext.on_fit_start(self)
        if state is not None:
            self.resume(state)
        while self.epoch < self.steps.epochs:
            sides = [s for s in (ext.on_epoch_start(self) for ext in self.extensions) if s]
            self.side = sides[0] if sides else self.cfg.resize
            if sides:
                self.train_loader.resize = (self.side, self.side)
            result = train_one_epoch(self)
            if not self.writer:
                self.log(f'[rank {self.rank}] epoch {self.epoch + 1}/{self.steps.epochs}: train '
                         f'loss {result.loss:.4f} acc {result.acc:.4f} on its shard')
                self.epoch += 1
                continue
            row, is_best = self.end_epoch(result)
            for ext in self.extensions:
                ext.on_epoch_end(self, row, result, is_best)
        summary: Summary | None = {
            'config': self.cfg.as_dict(), 'final_val_acc': self.rows[-1]['val_acc'],
            'best_val_acc': self.best_acc, 'epochs': len(self.rows), 'steps': self.steps.total,
            'model': self.meta, 'machine': runtime.machine(), 'workers': self.workers,
            'metrics': self.rows} if self.writer else None
        for ext in self.extensions:
            ext.on_fit_end(self, summary)
        if summary is not None:
            summary['wall_s'] = self.elapsed()  # the extensions' final work included
            atomic_text(self.run.path(SUMMARY), json.dumps(summary, indent=1))
        return summary

    def end_epoch(self, result: EpochResult) -> tuple[Row, bool]:
        """Validate the model and the extensions' `variants`, make and log the epoch's row;
        count the epoch done.

        Args:
            result: what the epoch's training measured.

        Returns:
            (the row: metrics.csv's columns and the extensions', whether the epoch scored
            the best validation accuracy so far).

        Raises:
            Diverged: a non-finite validation loss or non-finite weights.
        """
        self.epoch_tic = time.time()
        for ext in self.extensions:
            ext.on_validation_start(self)
        row: Row = {'epoch': self.epoch + 1, 'train_loss': result.loss, 'train_acc': result.acc}
        for prefix, applied in scored_weights(self.extensions).items():
            with applied:
                row[prefix + 'val_loss'], row[prefix + 'val_acc'], _ = evaluate(
                    self.model, self.val_loader, self.ctxs)
        val_loss, val_acc = row['val_loss'], row['val_acc']
        if not (math.isfinite(val_loss) and all_finite(self.model.net)):
            raise diverged(f'validation loss {val_loss:.4g}, or non-finite weights, after '
                           'the epoch', self.epoch, self.trainer.learning_rate)
        row.update(lr=self.trainer.learning_rate, img_s=result.images / result.seconds)
        notes = ''.join(filter(None, (ext.on_validation_end(self, row)
                                      for ext in self.extensions)))
        row['seconds'] = result.seconds + time.time() - self.epoch_tic
        self.rows.append(row)
        self.log(f'epoch {self.epoch + 1}/{self.steps.epochs}: train loss {result.loss:.4f} '
                 f'acc {result.acc:.4f} | val loss {val_loss:.4f} acc {val_acc:.4f}{notes} | '
                 f'{row["img_s"]:.1f} img/s | {row["seconds"]:.1f} s')
        is_best = val_acc > self.best_acc
        self.best_acc = max(self.best_acc, val_acc)
        self.epoch += 1
        return row, is_best


def load_states(trainer: gluon.Trainer, state: Checkpoint) -> None:
    """Load the checkpoint's optimizer states into `trainer`.

    Args:
        trainer: the trainer, built by `densenet.train.setup.make_trainer`.
        state: the checkpoint.

    Raises:
        UsageError: a checkpoint whose states are not in the network's order.
    """
    if state.get('states_order') != STATES_ORDER:
        raise UsageError(f'{state["stem"]}.states: optimizer states in another order than '
                         'this version writes; start the run again with --overwrite')
    trainer.load_states(state['stem'] + '.states')


def train_one_epoch(loop: Loop) -> EpochResult:
    """One pass over the training loader (or the part of it that ``steps.total`` leaves):
    per batch, split over the devices, forward, backward and an SGD step.

    Calls the extensions' ``on_step_end`` after every step, ``on_warm`` once in this
    process's first epoch five steps past the first (which builds the graph), and
    ``on_check`` every twentieth of an epoch after that; the time of the last two is
    left out of the step times.

    Args:
        loop: the run.

    Returns:
        What the epoch measured.

    Raises:
        Diverged: a batch loss that is not finite or above `loss_limit`.
    """
    cfg, loader, steps, epoch = loop.cfg, loop.train_loader, loop.steps, loop.epoch
    loader.set_epoch(epoch)
    limit = loss_limit(loop.model.net[-1].weight.shape[0])
    first = epoch * steps.steps_per_epoch
    check_every = max(1, steps.steps_per_epoch // 20)
    bar = Progress()
    tic, seen, loss_sum, correct, done = time.time(), 0, 0.0, 0, 0
    tic_warm, seen_warm, paused = tic, 0, 0.0
    for i, (X, y) in enumerate(loader):
        step = first + i
        if step >= steps.total:
            break
        loop.trainer.set_learning_rate(lr_at(cfg, step, steps.total))
        Xs = gluon.utils.split_and_load(X, loop.ctxs, even_split=False)
        ys = gluon.utils.split_and_load(y, loop.ctxs, even_split=False)
        with autograd.record():
            outs = [forward_train(loop.model, Xi, cfg.freeze_features) for Xi in Xs]
            losses = [loop.loss_fn(o, yi) for o, yi in zip(outs, ys, strict=True)]
        for loss in losses:
            loss.backward()
        # Gradients are summed over devices and workers: average over the global batch.
        loop.trainer.step(X.shape[0] * loop.workers)
        for ext in loop.extensions:
            ext.on_step_end(loop, step + 1)
        batch_loss = sum(float(loss.sum()) for loss in losses)
        if not batch_loss / X.shape[0] <= limit:  # also catches NaN
            raise diverged(f'mean loss {batch_loss / X.shape[0]:.4g} at step {step + 1} '
                           f'(batch {i + 1})', epoch, loop.trainer.learning_rate)
        loss_sum += batch_loss
        correct += sum(int((o.argmax(axis=1).astype('int32') == yi).sum())
                       for o, yi in zip(outs, ys, strict=True))
        seen, done = seen + X.shape[0], i + 1
        # A plan may change the run's epochs, and a check shorten this one.
        bar.update(f'epoch {epoch + 1}/{steps.epochs}', done,
                   min(steps.steps_per_epoch, steps.total - first), seen)
        if i == 0:
            tic_warm, seen_warm = time.time(), seen  # the first batch builds the graph
        callback_tic = time.time()
        if i == 5 and epoch == loop.first_epoch:
            elapsed = callback_tic - tic_warm
            for ext in loop.extensions:
                ext.on_warm(loop, (seen - seen_warm) / elapsed, elapsed / 5)
        if i >= 5 and (i + 1) % check_every == 0:
            for ext in loop.extensions:
                ext.on_check(loop, step + 1, (callback_tic - tic_warm - paused) / i)
        paused += time.time() - callback_tic
    end = time.time()
    step_s = (end - tic_warm - paused) / (done - 1) if done > 1 else end - tic
    return EpochResult(loss_sum / seen, correct / seen, seen, end - tic, step_s)


def fit(cfg: TrainConfig, data: DataModule | None = None,
        log: Callable[[str], None] = print,
        extensions: list[Extension] | None = None) -> Summary | None:
    """Train as `cfg` says, writing the run folder.

    Args:
        cfg: the configuration.
        data: a data module that replaces the one `cfg` names.
        log: where lines go.
        extensions: replaces the list the configuration asks for (`default_extensions`).

    Returns:
        The summary dict (also written to summary.json), or None on a worker of a
        dist kvstore that is not rank 0.

    Raises:
        UsageError: a bad value, path or file (nothing written).
        Diverged: the run diverged (nothing from that epoch is written).
        DiskFull: the disk filled up (the last complete files stay).
    """
    runtime.check_threads()
    started = time.time()
    ctxs = runtime.devices(cfg.device)
    mx.random.seed(cfg.seed)
    onp.random.seed(cfg.seed)
    # A dist kvstore joins the cluster that `densenet launch` (DMLC_* variables) set up.
    kv = mx.kv.create(cfg.kvstore) if cfg.kvstore.startswith('dist') else None
    rank, workers = (kv.rank, kv.num_workers) if kv else (0, 1)
    if kv:
        log(f'densenet: worker rank {rank} of {workers}')  # labels launch's output
    if data is None:
        data = make_data(cfg, shard=(rank, workers) if kv else None)
    model = build_model(cfg, data.channels, len(data.classes))
    cfg.validate(model.min_input_size())
    meta = run_metadata(cfg, model, data)
    run = Run(cfg.out, run_folder_files())
    with run.claimed(cfg.resume, cfg.overwrite, log) if rank == 0 else nullcontext() as state:
        if state is not None:
            check_resumable(state, cfg)
        # Deferred shapes are fixed on one batch before parameters move or load.
        fix_shapes(model.net, cfg.resize, data.channels)
        if cfg.init and state is None:
            initialize_from(model, cfg.init, ctxs, log)
        if cfg.freeze_features:
            freeze_features(model)
        prepare_model(model, ctxs, cfg.hybridize, cfg.memory_efficient)
        trainer = make_trainer(model, cfg, kv or cfg.kvstore)
        if extensions is None:
            extensions = default_extensions(cfg, writer=rank == 0, dist=kv is not None,
                                            quiet=ctxs[0].device_type == 'gpu' or rank != 0)
        return Loop(cfg, model, trainer, ctxs, data, run, meta, extensions, rank, workers, log,
                    started).run_fit(state)
