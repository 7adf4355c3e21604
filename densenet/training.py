"""One training loop for the CLI, the example script and the launcher.

It trains a model on `densenet.data.FashionMNIST` and writes, into ``out``:
``metrics.csv`` (a row per epoch), ``curves.png``, ``last.params``,
``best.params`` and ``summary.json``; ``checkpoint/`` holds what ``resume``
needs. Every file is written under a temporary name and renamed.
"""
import csv
from contextlib import nullcontext
import dataclasses
import io
import json
import math
import os
import sys
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from . import runtime
from .data import TRAIN_SIZE
from .errors import Diverged, UsageError
from .files import atomic_text, atomic_write, pyplot, save_figure
from .machine import summary_line
from .model import DenseNet
from .modes import set_concat_mode, set_memory_efficient
from .run_folder import Run

KVSTORES = ('local', 'device', 'dist_sync', 'dist_device_sync')
METRIC_FIELDS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc',
                 'lr', 'img_s', 'seconds']


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; the defaults are the book's recipe."""
    epochs: int = 10
    batch_size: int = 128
    resize: int = 96
    lr: float = 0.01
    momentum: float = 0.0
    wd: float = 0.0
    schedule: str = 'constant'     # or 'cosine' (per step, to 0 at the end)
    augment: bool = False
    label_smoothing: float = 0.0  # 0: the book's cross-entropy
    limit: int = None
    holdout: int = 0              # N > 0: validate on the last N training images
    device: str = 'auto'
    seed: int = 0
    data_dir: str = None
    out: str = 'runs/densenet'
    hybridize: bool = True
    recipe: str = 'book'
    resume: bool = False
    kvstore: str = 'device'       # or local, dist_sync, dist_device_sync
    memory_efficient: bool = False  # recompute concat/BN/ReLU in backward (imperative)
    rank_params: str = None       # folder: every worker saves its final parameters here
    overwrite: bool = False       # replace a run already in `out`

    def validate(self, min_size=None):
        """Raise UsageError for values no run can use."""
        if self.epochs < 1:
            raise UsageError(f'--epochs must be at least 1, got {self.epochs}')
        if self.batch_size < 1:
            raise UsageError(f'--batch-size must be at least 1, got {self.batch_size}')
        if not 0 < self.lr < math.inf:
            raise UsageError(f'--lr must be a positive finite number, got {self.lr}')
        if not 0 <= self.holdout < TRAIN_SIZE:
            raise UsageError(f'--holdout must be between 0 and {TRAIN_SIZE - 1} images, '
                             f'got {self.holdout}')
        if self.limit is not None and self.limit < 1:
            raise UsageError(f'--limit must be a positive number of images, got {self.limit}')
        if not 0 <= self.momentum < 1:
            raise UsageError(f'--momentum must be in [0, 1), got {self.momentum}')
        if not 0 <= self.wd < math.inf:
            raise UsageError(f'--wd must be a finite number >= 0, got {self.wd}')
        if not 0 <= self.seed < 2**32:
            raise UsageError(f'--seed must be between 0 and 2**32 - 1, got {self.seed}')
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f'--label-smoothing must be in [0, 1), got {self.label_smoothing}')
        if self.schedule not in ('constant', 'cosine'):
            raise UsageError(f'--schedule must be constant or cosine, got {self.schedule!r}')
        if min_size is not None and self.resize < min_size:
            raise UsageError(f'--resize {self.resize} is below the model\'s minimum input '
                             f'size {min_size}; use --resize {min_size} or more (the book uses 96)')
        if self.kvstore not in KVSTORES:
            raise UsageError(f'--kvstore must be one of {", ".join(KVSTORES)}, '
                             f'got {self.kvstore!r}')
        if self.memory_efficient and self.hybridize:
            raise UsageError('--memory-efficient runs imperatively: add --no-hybridize')
        if self.resume and self.kvstore.startswith('dist'):
            raise UsageError('--resume is not supported with a dist kvstore: restart the run')
        if self.resume and self.overwrite:
            raise UsageError('--resume continues the run in --out, --overwrite replaces it: '
                             'choose one')
        if os.environ.get('DMLC_ROLE') == 'worker' and not self.kvstore.startswith('dist'):
            raise UsageError('this is a worker of `densenet launch`, but it trains without a '
                             'dist kvstore, so every worker would train alone on all the data '
                             'and write the same --out: add --kvstore dist_sync')
        runtime.devices(self.device)
        Run(self.out).check_path()
        if self.data_dir:
            from .data import check_data_dir
            check_data_dir(self.data_dir)


# Named recipes. 'book' is the d2l chapter's; 'fast-cpu' is 23 epochs at 64x64
# that took 54 min on a 2-core AMX Xeon and take longer on other CPUs (README:
# how it was chosen, and its measured time per CPU kind).
RECIPES = {
    'book': dict(epochs=10, batch_size=128, resize=96, lr=0.01, momentum=0.0, wd=0.0,
                 schedule='constant', augment=False),
    'fast-cpu': dict(epochs=23, batch_size=128, resize=64, lr=0.1, momentum=0.9, wd=5e-4,
                     schedule='cosine', augment=True, label_smoothing=0.1),
}


def _duration(seconds):
    return f'{seconds / 60:.0f} min' if seconds >= 120 else f'{seconds:.0f} s'


def smoothed_loss(Y_hat, y, eps):
    """Per-example cross-entropy against labels smoothed by `eps`.

    The target puts 1 - eps on the label and eps spread evenly over all
    classes; eps = 0 is the book's softmax cross-entropy.
    """
    logp = npx.log_softmax(Y_hat, axis=1)
    nll = -npx.pick(logp, y, axis=1)
    return (1 - eps) * nll - eps * logp.mean(axis=1)


def build_model(cfg):
    return DenseNet(lr=cfg.lr)


def prepare_model(model, ctxs, hybridize, memory_efficient=False):
    """Move to `ctxs`; the fast path hybridizes with the oneDNN-friendly concat."""
    model.net.collect_params().reset_ctx(ctxs)
    if memory_efficient:
        set_memory_efficient(model.net, True)
    if hybridize:
        set_concat_mode(model.net, 'legacy')
        model.net.hybridize(static_alloc=True, static_shape=True)
    return model


def evaluate(model, loader, ctxs):
    """(mean loss, accuracy, predictions) of `model` over `loader`, inference mode.

    `model` is anything called on a batch that returns logits: a DenseNet, or
    an INT8/BF16 `densenet.inference.InferenceModel`.
    """
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    total_loss, correct, n, preds = 0.0, 0, 0, []
    for X, y in loader:
        Xs = gluon.utils.split_and_load(X, ctxs, even_split=False)
        ys = gluon.utils.split_and_load(y, ctxs, even_split=False)
        for Xi, yi in zip(Xs, ys):
            Y_hat = model(Xi)
            total_loss += float(loss_fn(Y_hat, yi).sum())
            p = Y_hat.argmax(axis=1).astype('int32')
            correct += int((p == yi).sum())
            n += yi.shape[0]
            preds.append(p.asnumpy())
    return total_loss / n, correct / n, onp.concatenate(preds)


class Progress:
    """A one-line progress bar on stderr with throughput and ETA."""

    def __init__(self, total, prefix, stream=sys.stderr):
        self.total, self.prefix, self.stream = total, prefix, stream
        self.tty = stream.isatty()
        self.start = self.last = time.time()

    def update(self, done, images):
        now = time.time()
        if not (done == self.total or now - self.last >= (0.5 if self.tty else 30)):
            return
        self.last = now
        rate = images / max(now - self.start, 1e-9)
        eta = (now - self.start) / done * (self.total - done)
        bar = '#' * int(20 * done / self.total)
        line = (f'{self.prefix} [{bar:<20}] {done}/{self.total} '
                f'{rate:6.1f} img/s ETA {eta:5.0f}s')
        self.stream.write('\r' + line if self.tty else line + '\n')
        if self.tty and done == self.total:
            self.stream.write('\n')
        self.stream.flush()


def lr_at(cfg, step, total_steps):
    if cfg.schedule == 'cosine':
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    return cfg.lr


def plot_curves(rows, path):
    """Loss and accuracy against epoch, as d2l's ProgressBoard draws them."""
    import matplotlib.ticker
    ep = [r['epoch'] for r in rows]
    fig, ax = pyplot().subplots(figsize=(5, 3.5))
    styles = {'train_loss': '-', 'val_loss': '--', 'train_acc': '-.', 'val_acc': ':'}
    for key, style in styles.items():
        ax.plot(ep, [r[key] for r in rows], style, marker='o', markersize=3, label=key)
    ax.set_xlabel('epoch')
    ax.set_xlim(0.5, max(ep) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_metrics(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f'{r[k]:.6g}' if isinstance(r[k], float) else r[k])
                         for k in METRIC_FIELDS})
    atomic_text(path, buf.getvalue())


def diverged(what, epoch, lr):
    return Diverged(f'training diverged: {what} in epoch {epoch + 1} at learning rate {lr:.4g}; '
                    'nothing from this epoch was written (the last checkpoint, if any, is '
                    f'intact). Try a lower --lr (e.g. --lr {lr / 10:.3g}), and check the data')


def all_finite(net):
    """Whether every parameter (BatchNorm statistics included) of `net` is finite."""
    return all(bool(np.isfinite(p.data()).all()) for p in net.collect_params().values())


def fit(cfg, data=None, log=print):
    """Train as `cfg` says; return the summary dict (also written to summary.json)."""
    runtime.check_threads()
    started = time.time()
    ctxs = runtime.devices(cfg.device)
    mx.random.seed(cfg.seed)
    onp.random.seed(cfg.seed)
    model = build_model(cfg)
    cfg.validate(model.min_input_size())
    # A dist kvstore joins the cluster that `densenet launch` (DMLC_* variables) set up.
    kv = mx.kv.create(cfg.kvstore) if cfg.kvstore.startswith('dist') else None
    rank, workers = (kv.rank, kv.num_workers) if kv else (0, 1)
    if kv:
        log(f'densenet: worker rank {rank} of {workers}')  # labels launch's output
    writer = rank == 0  # only rank 0 evaluates and writes files
    run = Run(cfg.out)
    with run.claimed(cfg.resume, cfg.overwrite, log) if writer else nullcontext() as state:
        if state is not None:
            # Settings added after a checkpoint was written take their defaults.
            defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
            now = dataclasses.asdict(cfg)
            saved = {**defaults, **state['config'], 'out': cfg.out, 'resume': cfg.resume,
                     'overwrite': cfg.overwrite}
            if saved != now:
                diff = sorted(k for k in saved if saved[k] != now[k])
                raise UsageError(f'--resume: {cfg.out} was started with other settings '
                                 f'({", ".join(diff)}); rerun with the same flags or a new --out')
        if data is None:
            from .data import FashionMNIST
            data = FashionMNIST(batch_size=cfg.batch_size, resize=(cfg.resize, cfg.resize),
                                root=cfg.data_dir, limit=cfg.limit, augment=cfg.augment,
                                seed=cfg.seed, shard=(rank, workers) if kv else None,
                                holdout=cfg.holdout)
        train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
        # Deferred shapes are fixed on one batch before parameters move or load.
        model.net(np.zeros((1, 1, cfg.resize, cfg.resize)))
        prepare_model(model, ctxs, cfg.hybridize, cfg.memory_efficient)
        trainer = gluon.Trainer(model.net.collect_params(), 'sgd',
                                {'learning_rate': cfg.lr, 'momentum': cfg.momentum, 'wd': cfg.wd},
                                kvstore=kv or cfg.kvstore)
        rows, best_acc, first_epoch, prior_wall = [], -1.0, 0, 0.0
        if state is not None:
            first_epoch, rows, best_acc = state['epoch'], state['rows'], state['best_val_acc']
            prior_wall = state['wall_s']
            model.net.load_parameters(state['stem'] + '.params', ctx=ctxs)
            trainer.load_states(state['stem'] + '.states')
            log(f'resuming {cfg.out} after epoch {first_epoch}')
        steps_per_epoch = len(train_loader)
        if cfg.label_smoothing:
            def loss_fn(Y_hat, y):
                model.check_labels(y)
                return smoothed_loss(Y_hat, y, cfg.label_smoothing)
        else:  # the book's loss, as d2l.Classifier defines it
            def loss_fn(Y_hat, y):
                return model.loss(Y_hat, y, averaged=False)
        total_steps = cfg.epochs * steps_per_epoch
        # Guessing uniformly costs ln(classes) per image (2.3 for 10); a run whose loss
        # is a hundred times that has left training behind (a diverging --lr 1e6 run
        # passed 1e25 before its loss became NaN), so it stops rather than save it.
        loss_limit = 100 * math.log(model.net[-1].weight.shape[0])
        warned = ctxs[0].device_type == 'gpu' or not writer
        for epoch in range(first_epoch, cfg.epochs):
            if hasattr(train_loader, 'set_epoch'):
                train_loader.set_epoch(epoch)
            bar = Progress(steps_per_epoch, f'epoch {epoch + 1}/{cfg.epochs}')
            tic, seen, loss_sum, correct = time.time(), 0, 0.0, 0
            for i, (X, y) in enumerate(train_loader):
                step = epoch * steps_per_epoch + i
                trainer.set_learning_rate(lr_at(cfg, step, total_steps))
                Xs = gluon.utils.split_and_load(X, ctxs, even_split=False)
                ys = gluon.utils.split_and_load(y, ctxs, even_split=False)
                with autograd.record():
                    outs = [model(Xi) for Xi in Xs]
                    losses = [loss_fn(o, yi) for o, yi in zip(outs, ys)]
                for loss in losses:
                    loss.backward()
                # Gradients are summed over devices and workers: average over the global batch.
                trainer.step(X.shape[0] * workers)
                batch_loss = sum(float(loss.sum()) for loss in losses)
                if not batch_loss / X.shape[0] <= loss_limit:  # also catches NaN
                    raise diverged(f'mean loss {batch_loss / X.shape[0]:.4g} at step {step + 1} '
                                   f'(batch {i + 1})', epoch, trainer.learning_rate)
                loss_sum += batch_loss
                correct += sum(int((o.argmax(axis=1).astype('int32') == yi).sum())
                               for o, yi in zip(outs, ys))
                seen += X.shape[0]
                bar.update(i + 1, seen)
                if i == 0:
                    tic_warm, seen_warm = time.time(), seen  # the first batch builds the graph
                if not warned and i == 5:
                    warned = True
                    rate = (seen - seen_warm) / (time.time() - tic_warm)
                    full = 10 * TRAIN_SIZE / rate * (96 / cfg.resize) ** 2
                    this = (cfg.epochs - epoch) * steps_per_epoch * cfg.batch_size / rate
                    log(f'no GPU: {rate:.0f} img/s on this {summary_line(runtime.machine())}; '
                        f'the book\'s full recipe (10 epochs, 60000 images, 96x96) would take '
                        f'about {full / 3600:.1f} h on this machine, this run about '
                        f'{_duration(this)} of training. Quicker: '
                        + ('--recipe fast-cpu, or ' if cfg.recipe == 'book' else '')
                        + '--limit 5000 --epochs 2 --resize 32.')
            train_s = time.time() - tic
            if not writer:
                log(f'[rank {rank}] epoch {epoch + 1}/{cfg.epochs}: train loss '
                    f'{loss_sum / seen:.4f} acc {correct / seen:.4f} on its shard')
                continue
            val_loss, val_acc, _ = evaluate(model, val_loader, ctxs)
            if not (math.isfinite(val_loss) and all_finite(model.net)):
                raise diverged(f'validation loss {val_loss:.4g}, or non-finite weights, after '
                               'the epoch', epoch, trainer.learning_rate)
            row = {'epoch': epoch + 1, 'train_loss': loss_sum / seen, 'train_acc': correct / seen,
                   'val_loss': val_loss, 'val_acc': val_acc, 'lr': trainer.learning_rate,
                   'img_s': seen / train_s, 'seconds': time.time() - tic}
            rows.append(row)
            log(f'epoch {epoch + 1}/{cfg.epochs}: train loss {row["train_loss"]:.4f} '
                f'acc {row["train_acc"]:.4f} | val loss {val_loss:.4f} acc {val_acc:.4f} | '
                f'{row["img_s"]:.1f} img/s | {row["seconds"]:.1f} s')
            atomic_write(run.path('last.params'), model.net.save_parameters)
            if val_acc > best_acc:
                best_acc = val_acc
                atomic_write(run.path('best.params'), model.net.save_parameters)
            write_metrics(run.path('metrics.csv'), rows)
            plot_curves(rows, run.path('curves.png'))
            if kv is None:  # MXNet cannot save optimizer states of a dist kvstore
                run.save_checkpoint(model, trainer, epoch + 1, rows, cfg, best_acc,
                                    prior_wall + time.time() - started)
        if cfg.rank_params:
            os.makedirs(cfg.rank_params, exist_ok=True)
            atomic_write(os.path.join(cfg.rank_params, f'rank-{rank}.params'),
                         model.net.save_parameters)
        if not writer:
            return None
        summary = {'config': dataclasses.asdict(cfg), 'final_val_acc': rows[-1]['val_acc'],
                   'best_val_acc': best_acc, 'epochs': len(rows),
                   'wall_s': prior_wall + time.time() - started,
                   'machine': runtime.machine(), 'workers': workers, 'metrics': rows}
        atomic_text(run.path('summary.json'), json.dumps(summary, indent=1))
        return summary
