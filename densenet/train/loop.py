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

from densenet.system import runtime
from densenet.data.fashion_mnist import TRAIN_SIZE
from densenet.errors import Diverged, UsageError
from densenet.system.files import atomic_text, atomic_write, pyplot, save_figure
from densenet.system.machine import summary_line
from densenet.train.planning import cost, plan_steps, reserve_s
from densenet.models.params import all_finite
from densenet.train.resizing import side_for_epoch
from densenet.train.ema import WeightEMA
from densenet.models.registry import default_cfg, get_model, model_kwargs
from densenet.modes import prepare_model
from densenet.train.run_folder import Run

KVSTORES = ('local', 'device', 'dist_sync', 'dist_device_sync')
METRIC_FIELDS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc',
                 'lr', 'img_s', 'seconds']
EMA_FIELDS = ['ema_val_loss', 'ema_val_acc']  # with --ema: the averaged weights' figures
RESIZE_FIELDS = ['side']  # with --progressive: the side each epoch trained at


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
    erase: float = 0.0            # share of training images given random erasing (batches.py)
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
    memory_efficient: bool = False  # recompute concat/BN/ReLU in backward
    rank_params: str = None       # folder: every worker saves its final parameters here
    overwrite: bool = False       # replace a run already in `out`
    model: str = 'book'           # a registry name (densenet.list_models())
    model_args: dict = dataclasses.field(default_factory=dict)  # its constructor arguments
    data: str = None              # an image folder (densenet.data.ImageFolder); None: Fashion-MNIST
    channels: int = None          # ImageFolder: 1 or 3; None: 1 if every image is grayscale
    val_split: float = 0.2        # ImageFolder without train/ and val/: share held out
    skip_bad_images: bool = False  # ImageFolder: skip unreadable files instead of stopping
    budget: float = None          # seconds the whole run may take (None: no budget)
    init: str = None              # params file to start from (fine-tuning)
    freeze_features: bool = False  # train only the classifier
    ema: float = 0.0              # decay of a moving average of the weights (ema.py); 0: none
    tta: bool = False             # also score the final model with flip averaging (tta.py)
    progressive: int = 0          # side of the early epochs (resizing.py); 0: always `resize`
    progressive_until: float = 0.5  # share of the epochs trained at that side

    def validate(self, min_size=None):
        """Raise UsageError for values no run can use."""
        if self.epochs < 1:
            raise UsageError(f'--epochs must be at least 1, got {self.epochs}')
        if self.batch_size < 1:
            raise UsageError(f'--batch-size must be at least 1, got {self.batch_size}')
        if not 0 < self.lr < math.inf:
            raise UsageError(f'--lr must be a positive finite number, got {self.lr}')
        model_kwargs(self.model, self.model_args)  # a UsageError naming the choices
        if self.data and self.holdout:
            raise UsageError('--holdout picks Fashion-MNIST training images; with --data, '
                             'hold images out with --val-split (or a val/ folder)')
        if self.data and self.data_dir:
            raise UsageError('--data-dir is where Fashion-MNIST is; --data trains on an image '
                             'folder instead: give one of them')
        if self.channels not in (None, 1, 3):
            raise UsageError(f'--channels must be 1 or 3, got {self.channels}')
        if self.budget is not None and not 0 <= self.budget < math.inf:
            raise UsageError(f'--budget must be a duration, got {self.budget} s')
        if not 0 < self.val_split < 1:
            raise UsageError(f'--val-split must be between 0 and 1, got {self.val_split}')
        if self.init and not os.path.isfile(self.init):
            raise UsageError(f'--init {self.init}: no such file; give a .params file of the '
                             'same architecture')
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
        if not 0 <= self.erase <= 1:
            raise UsageError(f'--erase must be a probability in [0, 1] (0: off), e.g. 0.5; '
                             f'got {self.erase}')
        if not 0 <= self.ema < 1:
            raise UsageError(f'--ema must be a decay in [0, 1) (0: off), e.g. 0.999; '
                             f'got {self.ema}')
        if self.schedule not in ('constant', 'cosine'):
            raise UsageError(f'--schedule must be constant or cosine, got {self.schedule!r}')
        if min_size is not None and self.resize < min_size:
            raise UsageError(f'--resize {self.resize} is below the model\'s minimum input '
                             f'size {min_size}; use --resize {min_size} or more (the book uses 96)')
        if self.progressive and not 0 < self.progressive < self.resize:
            raise UsageError(f'--progressive {self.progressive} must be a side smaller than '
                             f'--resize {self.resize} (0: off), e.g. --progressive '
                             f'{max(self.resize * 3 // 4, 1)}')
        if min_size is not None and self.progressive and self.progressive < min_size:
            raise UsageError(f'--progressive {self.progressive} is below the model\'s minimum '
                             f'input size {min_size}; use --progressive {min_size} or more')
        if not 0 < self.progressive_until < 1:
            raise UsageError(f'--progressive-until must be a share of the epochs between 0 '
                             f'and 1, e.g. 0.5; got {self.progressive_until}')
        if self.kvstore not in KVSTORES:
            raise UsageError(f'--kvstore must be one of {", ".join(KVSTORES)}, '
                             f'got {self.kvstore!r}')
        if self.budget and self.kvstore.startswith('dist'):
            raise UsageError('--budget plans each process\'s steps from its own speed, and the '
                             'workers of a dist kvstore must take the same steps: give --epochs '
                             '(and --budget off with --recipe fast-cpu)')
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
            from densenet.data.fashion_mnist import check_data_dir
            check_data_dir(self.data_dir)
        if self.data:
            from densenet.data.image_folder import check_folder
            check_folder(self.data)


# Named recipes. 'book' is the d2l chapter's; 'fast-cpu' is 23 epochs at 64x64
# that took 37-54 min on 2-core Xeon/EPYC CPUs, budgeted to the hour, scored with
# flip averaging too (README: how it was chosen, its measured time per CPU kind).
RECIPES = {
    'book': dict(epochs=10, batch_size=128, resize=96, lr=0.01, momentum=0.0, wd=0.0,
                 schedule='constant', augment=False),
    'fast-cpu': dict(epochs=23, batch_size=128, resize=64, lr=0.1, momentum=0.9, wd=5e-4,
                     schedule='cosine', augment=True, label_smoothing=0.1, budget=3600.0,
                     tta=True),
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


def build_model(cfg, channels=1, num_classes=10):
    """The registered model `cfg.model` for `channels`-channel images of `num_classes`."""
    return get_model(cfg.model, lr=cfg.lr, in_channels=channels, num_classes=num_classes,
                     **cfg.model_args)


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


def time_inference(model, loader, ctxs, batches=2, side=None):
    """Seconds per inference batch of `loader` (at `side` x `side` if given), timed after
    one batch that builds the graph."""
    if side:
        resize, loader.resize = loader.resize, (side, side)
    try:
        it = iter(loader)
        times = []
        for _ in range(batches + 1):
            X, _ = next(it, (None, None))
            if X is None:
                break
            tic = time.time()
            model(X.as_in_context(ctxs[0])).wait_to_read()
            times.append(time.time() - tic)
    finally:
        if side:
            loader.resize = resize
    return min(times[1:] or times)


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
    if 'ema_val_acc' in rows[-1]:
        styles['ema_val_acc'] = (0, (1, 3))
    for key, style in styles.items():
        ax.plot(ep, [r[key] for r in rows], linestyle=style, marker='o', markersize=3,
                label=key)
    ax.set_xlabel('epoch')
    ax.set_xlim(0.5, max(ep) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_metrics(path, rows):
    buf = io.StringIO()
    fields = METRIC_FIELDS + [k for k in EMA_FIELDS + RESIZE_FIELDS if k in rows[-1]]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f'{r[k]:.6g}' if isinstance(r[k], float) else r[k])
                         for k in fields})
    atomic_text(path, buf.getvalue())


def diverged(what, epoch, lr):
    return Diverged(f'training diverged: {what} in epoch {epoch + 1} at learning rate {lr:.4g}; '
                    'nothing from this epoch was written (the last checkpoint, if any, is '
                    f'intact). Try a lower --lr (e.g. --lr {lr / 10:.3g}), and check the data')


def make_data(cfg, shard=None):
    """The data module `cfg` names: an ImageFolder for --data, else Fashion-MNIST."""
    if cfg.data:
        from densenet.data.image_folder import ImageFolder
        return ImageFolder(cfg.data, batch_size=cfg.batch_size, resize=cfg.resize,
                           channels=cfg.channels, val_split=cfg.val_split, seed=cfg.seed,
                           augment=cfg.augment, limit=cfg.limit, shard=shard,
                           skip_bad_images=cfg.skip_bad_images, erase=cfg.erase)
    from densenet.data.fashion_mnist import FashionMNIST
    return FashionMNIST(batch_size=cfg.batch_size, resize=(cfg.resize, cfg.resize),
                        root=cfg.data_dir, limit=cfg.limit, augment=cfg.augment,
                        seed=cfg.seed, shard=shard, holdout=cfg.holdout, erase=cfg.erase)


def initialize_from(model, path, ctxs, log=print):
    """Start `model` from the params file `path` (this library's, saved either way, or a
    Gluon model-zoo file), with a new classifier when the class counts differ."""
    from densenet.models.params import build, load_parameters, shape_args
    from densenet.models.variants import load_gluon_zoo_parameters
    shapes = shape_args(path)
    source = build({'model': model.registry_name,
                    'kwargs': {**model.registry_kwargs, **shapes}})
    try:
        load_parameters(source, path)
    except UsageError:
        if default_cfg(model.registry_name).dataset != 'imagenet':
            raise
        load_gluon_zoo_parameters(source, path)  # its own clear error if this fails too
    theirs, mine = source.classifier_params(), model.classifier_params()
    head_kept = [p.shape for p in theirs.values()] == [p.shape for p in mine.values()]
    skip = set() if head_kept else set(theirs.values())
    for (_, src), (_, dst) in zip(source.net.collect_params().items(),
                                  model.net.collect_params().items()):
        if src not in skip:
            if src.shape != dst.shape:
                raise UsageError(f'--init {path}: parameter shapes {src.shape} and {dst.shape} '
                                 f'differ: the file is not a {model.registry_name} with these '
                                 'settings (check --model, --model-arg and the channel count)')
            dst.set_data(src.data().copyto(dst.list_ctx()[0]))
    log(f'initialised from {path}' + ('' if head_kept else
        f' (its {shapes["num_classes"]}-class classifier replaced by a new '
        f'{model.net[-1].weight.shape[0]}-class one)'))


def freeze_features(model):
    """Train only the classifier: every other parameter stops taking gradients."""
    head = set(model.classifier_params().values())
    for p in model.net.collect_params().values():
        if p not in head:
            p.grad_req = 'null'


def forward_train(model, X, frozen):
    """Logits of a training batch; with frozen features only the classifier is recorded
    (features come from inference-mode BatchNorm, so its statistics stay as loaded)."""
    if not frozen:
        return model(X)
    with autograd.pause(train_mode=False):
        features = model.forward_features(X)
    return model.net[-1](features)


def restore(state, model, trainer, ctxs, ema=None):
    """(first epoch, rows, best accuracy, wall seconds so far) from a checkpoint state."""
    if ema is not None:
        ema.load(state['stem'] + '.ema.params')
        ema.updates = state['ema_updates']
    model.net.load_parameters(state['stem'] + '.params', ctx=ctxs)
    trainer.load_states(state['stem'] + '.states')
    return state['epoch'], state['rows'], state['best_val_acc'], state['wall_s']


def check_resumable(state, cfg):
    """A UsageError unless the checkpoint was written with these settings."""
    # Settings added after a checkpoint was written take their defaults.
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                         else f.default) for f in dataclasses.fields(TrainConfig)}
    now = dataclasses.asdict(cfg)
    saved = {**defaults, **state['config'], 'out': cfg.out, 'resume': cfg.resume,
             'overwrite': cfg.overwrite}
    if saved != now:
        diff = sorted(k for k in saved if saved[k] != now[k])
        raise UsageError(f'--resume: {cfg.out} was started with other settings '
                         f'({", ".join(diff)}); rerun with the same flags or a new --out')


def make_loss(model, cfg):
    """Per-example loss: the book's (d2l.Classifier.loss), or label-smoothed."""
    if cfg.label_smoothing:
        def loss_fn(Y_hat, y):
            model.check_labels(y)
            return smoothed_loss(Y_hat, y, cfg.label_smoothing)
    else:
        def loss_fn(Y_hat, y):
            return model.loss(Y_hat, y, averaged=False)
    return loss_fn


def speed_note(cfg, rate, steps_left, side=None):
    """The line a CPU run prints once it knows its speed (measured at `side`, by default
    the run's)."""
    side = side or cfg.resize
    full = 10 * TRAIN_SIZE / rate * (96 / side) ** 2
    this = steps_left * cfg.batch_size / rate
    at = f' if every step were at {side}x{side}' if side != cfg.resize else ''
    return (f'no GPU: {rate:.0f} img/s on this {summary_line(runtime.machine())}; '
            f'the book\'s full recipe (10 epochs, 60000 images, 96x96) would take '
            f'about {full / 3600:.1f} h on this machine, this run about '
            f'{_duration(this)} of training{at}. Quicker: '
            + ('--recipe fast-cpu, or ' if cfg.recipe == 'book' else '')
            + '--limit 5000 --epochs 2 --resize 32.')


class Steps:
    """The run's planned number of steps; a budget may change it between epochs."""

    def __init__(self, total, steps_per_epoch):
        self.total, self.steps_per_epoch = total, steps_per_epoch

    @property
    def epochs(self):
        return math.ceil(self.total / self.steps_per_epoch)


def train_one_epoch(model, trainer, loader, ctxs, cfg, epoch, loss_fn, workers=1,
                    steps=None, on_warm=None, ema=None, on_step=None):
    """One pass over `loader` (or the part of it that `steps.total` leaves); returns
    (mean loss, accuracy, images, seconds, seconds per step after the first). A
    `WeightEMA` is updated after every step.

    `on_warm(images/s, seconds/step)` is called once, five steps past the first (which
    builds the graph); `on_step(steps done in the run, seconds/step so far this epoch)`
    every twentieth of an epoch after that. Both may change `steps.total`.
    """
    if hasattr(loader, 'set_epoch'):
        loader.set_epoch(epoch)
    steps_per_epoch = len(loader)
    steps = steps or Steps(cfg.epochs * steps_per_epoch, steps_per_epoch)
    # Guessing uniformly costs ln(classes) per image (2.3 for 10); a run whose loss
    # is a hundred times that has left training behind (a diverging --lr 1e6 run
    # passed 1e25 before its loss became NaN), so it stops rather than save it.
    loss_limit = 100 * math.log(max(model.net[-1].weight.shape[0], 2))
    first = epoch * steps_per_epoch
    check_every = max(1, steps_per_epoch // 20)
    bar = Progress(min(steps_per_epoch, steps.total - first),
                   f'epoch {epoch + 1}/{steps.epochs}')
    tic, seen, loss_sum, correct, done = time.time(), 0, 0.0, 0, 0
    for i, (X, y) in enumerate(loader):
        step = first + i
        if step >= steps.total:
            break
        trainer.set_learning_rate(lr_at(cfg, step, steps.total))
        Xs = gluon.utils.split_and_load(X, ctxs, even_split=False)
        ys = gluon.utils.split_and_load(y, ctxs, even_split=False)
        with autograd.record():
            outs = [forward_train(model, Xi, cfg.freeze_features) for Xi in Xs]
            losses = [loss_fn(o, yi) for o, yi in zip(outs, ys)]
        for loss in losses:
            loss.backward()
        # Gradients are summed over devices and workers: average over the global batch.
        trainer.step(X.shape[0] * workers)
        if ema is not None:
            ema.update()
        batch_loss = sum(float(loss.sum()) for loss in losses)
        if not batch_loss / X.shape[0] <= loss_limit:  # also catches NaN
            raise diverged(f'mean loss {batch_loss / X.shape[0]:.4g} at step {step + 1} '
                           f'(batch {i + 1})', epoch, trainer.learning_rate)
        loss_sum += batch_loss
        correct += sum(int((o.argmax(axis=1).astype('int32') == yi).sum())
                       for o, yi in zip(outs, ys))
        seen += X.shape[0]
        done += 1
        bar.total = min(steps_per_epoch, steps.total - first)
        bar.update(i + 1, seen)
        if i == 0:
            tic_warm, seen_warm = time.time(), seen  # the first batch builds the graph
            paused = 0.0  # seconds in the callbacks (planning times inference), not steps
        callback_tic = time.time()
        if on_warm and i == 5:
            elapsed = callback_tic - tic_warm
            on_warm((seen - seen_warm) / elapsed, elapsed / 5)
            on_warm = None
            bar.prefix = f'epoch {epoch + 1}/{steps.epochs}'  # the first plan may change it
        if on_step and i >= 5 and (i + 1) % check_every == 0:
            on_step(step + 1, (callback_tic - tic_warm - paused) / i)
        paused += time.time() - callback_tic
    end = time.time()
    step_s = (end - tic_warm - paused) / (done - 1) if done > 1 else end - tic
    return loss_sum / seen, correct / seen, seen, end - tic, step_s


class Budget:
    """Plans and re-plans `steps.total` so that the run ends inside `cfg.budget` (budget.py);
    does nothing without a budget."""

    def __init__(self, cfg, steps, val_batches, log, elapsed, plans):
        self.cfg, self.steps, self.log, self.elapsed = cfg, steps, log, elapsed
        self.val_batches, self.plans = val_batches, plans
        self.cap = cfg.epochs * steps.steps_per_epoch
        # Passes over the validation set: per epoch (the weights, and their average with
        # --ema), and once at the end with --tta (each pass twice: image and mirror).
        self.evals = 1 + bool(cfg.ema)
        self.final_evals = 2 * self.evals if cfg.tta else 0
        self.final_s = plans[-1].get('final_s', 0.0) if plans else 0.0
        # --progressive: a full-side step over a small-side one (timed by inference).
        self.full_over_small = plans[-1].get('full_over_small') if plans else None

    def _steps(self, step_s, side):
        """(seconds a full-side step takes, `early` for plan_steps) from a step measured at
        `side`: while the run is still at the small side, the rest of that phase costs
        what was measured and the full side that times the measured ratio."""
        if side in (None, self.cfg.resize) or not self.full_over_small:
            return step_s, None
        return step_s * self.full_over_small, (self.cfg.progressive_until, step_s)

    def _record(self, plan, done, why):
        self.steps.total = plan.total_steps
        self.plans.append({'at_step': done, 'why': why, 'total_steps': plan.total_steps,
                           'epochs': plan.epochs, 'step_s': plan.step_s,
                           'epoch_overhead_s': plan.epoch_overhead_s,
                           'final_s': self.final_s, 'expected_end_s': plan.end_s,
                           **({'early_step_s': plan.early_step_s,
                               'full_over_small': self.full_over_small}
                              if plan.early_step_s else {})})
        end = time.strftime('%H:%M:%S', time.localtime(time.time() + plan.end_s
                                                       - self.elapsed()))
        capped = ' (--epochs caps it)' if plan.total_steps == self.cap else ''
        if self.final_s:
            capped += f'; {self.final_s:.0f} s at the end for the flip-averaged (--tta) scores'
        self.log(f'{why}: {plan.describe()}{capped}; expected to end at {end}, '
                 f'{plan.end_s / 60:.1f} min into the {self.cfg.budget / 60:.1f} min budget')
        if plan.total_steps < self.steps.steps_per_epoch:
            self.log(f'the budget fits {plan.total_steps} of an epoch\'s '
                     f'{self.steps.steps_per_epoch} steps: this run trains on part of the data')

    def first_plan(self, step_s, done, eval_batch_s, side=None):
        """The plan from the first timed steps (at `side`) and validation batches
        (`eval_batch_s(side)` times one, at the full side without `side`); writing the
        outputs is taken as 1 s until an epoch has measured it."""
        if not self.cfg.budget:
            return
        full_batch_s = eval_batch_s()
        pass_s = self.val_batches * full_batch_s
        overhead, self.final_s = self.evals * pass_s + 1.0, self.final_evals * pass_s
        if side not in (None, self.cfg.resize):
            self.full_over_small = full_batch_s / eval_batch_s(side)
        full_step_s, early = self._steps(step_s, side)
        plan = plan_steps(self.cfg.budget, self.elapsed(), done, self.steps.steps_per_epoch,
                          full_step_s, overhead, self.cap, self.final_s, early)
        if plan is None:
            raise UsageError(f'--budget {self.cfg.budget:.0f} s is too short for this run: '
                             f'{self.elapsed():.0f} s went to loading and building, and a '
                             f'step takes {step_s:.2f} s; give a longer --budget, or fewer '
                             'images (--limit) or a smaller --resize')
        self._record(plan, done, 'plan')

    def replan(self, step_s, overhead_s, done, side=None, lengthen=True):
        """After an epoch (trained at `side`): plan again from what it measured; adopt the
        new plan when the old one would overrun, or when the new one is more than 2% longer.
        Within an epoch (`lengthen=False`, `overhead_s` None: the last plan's) only an
        overrun re-plans, and only in the plan's last epoch, where no epoch end is left to
        bend the schedule at (earlier, checks within an epoch would only chase noise)."""
        spe = self.steps.steps_per_epoch
        if not self.cfg.budget or done >= self.steps.total:
            return
        if not lengthen and self.steps.total > math.ceil(done / spe) * spe:
            return
        if overhead_s is None:
            overhead_s = self.plans[-1]['epoch_overhead_s']
        elapsed = self.elapsed()
        step_s, early = self._steps(step_s, side)
        plan = plan_steps(self.cfg.budget, elapsed, done, spe, step_s, overhead_s, self.cap,
                          self.final_s, early)
        total = plan.total_steps if plan else done
        # The plan stands while it ends with at least half the reserve left, and unless
        # one more than 2% longer fits: measured times wobble by a few percent.
        ends = (elapsed + cost(self.steps.total, done, spe, step_s, overhead_s, early)
                + self.final_s)
        overruns = ends > self.cfg.budget - reserve_s(self.cfg.budget) / 2
        if overruns or (lengthen and total > 1.02 * self.steps.total):
            if plan is None:  # recorded too, so that the last plan is the run's length
                self.log('re-plan: the budget is spent; the run ends here')
                self.steps.total = done
                self.plans.append({'at_step': done, 'why': 'budget spent', 'total_steps': done,
                                   'epochs': math.ceil(done / spe), 'final_s': self.final_s,
                                   **({'full_over_small': self.full_over_small}
                                      if self.full_over_small else {})})
            else:
                self._record(plan, done, 're-plan')


def write_epoch(run, model, meta, rows, is_best, ema=None):
    """last.params (and best.params when it is the best so far; ema.params, the averaged
    weights, with --ema) with their metadata, metrics.csv and curves.png."""
    from densenet.models.params import save
    meta = dict(meta, epoch=rows[-1]['epoch'])
    save(model, run.path('last.params'), meta)
    if is_best:
        save(model, run.path('best.params'), meta)
    if ema is not None:
        with ema.applied():
            save(model, run.path('ema.params'), dict(meta, ema_decay=ema.decay))
    write_metrics(run.path('metrics.csv'), rows)
    plot_curves(rows, run.path('curves.png'))


def flip_averaged_scores(model, loader, ctxs, ema, log):
    """The summary's --tta figures: the final weights' (and average's) accuracy with
    logits averaged over each image and its mirror image."""
    from densenet.models.tta import FlipAverage
    scores = {'final_val_acc_tta': evaluate(FlipAverage(model), loader, ctxs)[1]}
    if ema is not None:
        with ema.applied():
            scores['final_ema_val_acc_tta'] = evaluate(FlipAverage(model), loader, ctxs)[1]
    log('flip-averaged (--tta): ' + ', '.join(f'{k} {v:.4f}' for k, v in scores.items()))
    return scores


def fit(cfg, data=None, log=print):
    """Train as `cfg` says; return the summary dict (also written to summary.json)."""
    from densenet.models.params import describe
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
    channels, classes = getattr(data, 'channels', 1), list(getattr(data, 'classes', range(10)))
    model = build_model(cfg, channels, len(classes))
    cfg.validate(model.min_input_size())
    meta = describe(model, cfg.resize, classes, getattr(data, 'name', 'fashion-mnist'),
                    recipe=cfg.recipe, seed=cfg.seed)
    if cfg.data:  # evaluate --data on the same folder rebuilds the held-out split
        meta['data'] = {'root': os.path.abspath(cfg.data), 'val_split': cfg.val_split,
                        'seed': cfg.seed}
    writer = rank == 0  # only rank 0 evaluates and writes files
    run = Run(cfg.out)
    with run.claimed(cfg.resume, cfg.overwrite, log) if writer else nullcontext() as state:
        if state is not None:
            check_resumable(state, cfg)
        train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
        # Deferred shapes are fixed on one batch before parameters move or load.
        model.net(np.zeros((1, channels, cfg.resize, cfg.resize)))
        if cfg.init and state is None:
            initialize_from(model, cfg.init, ctxs, log)
        if cfg.freeze_features:
            freeze_features(model)
        prepare_model(model, ctxs, cfg.hybridize, cfg.memory_efficient)
        params = (model.classifier_params() if cfg.freeze_features
                  else model.net.collect_params())
        trainer = gluon.Trainer(params, 'sgd',
                                {'learning_rate': cfg.lr, 'momentum': cfg.momentum, 'wd': cfg.wd},
                                kvstore=kv or cfg.kvstore)
        ema = WeightEMA(model.net, cfg.ema) if cfg.ema else None
        rows, best_acc, first_epoch, prior_wall = [], -1.0, 0, 0.0
        if state is not None:
            first_epoch, rows, best_acc, prior_wall = restore(state, model, trainer, ctxs, ema)
            log(f'resuming {cfg.out} after epoch {first_epoch}')
        loss_fn = make_loss(model, cfg)
        quiet = ctxs[0].device_type == 'gpu' or not writer
        spe = len(train_loader)
        steps = Steps(state.get('total_steps', cfg.epochs * spe) if state else cfg.epochs * spe,
                      spe)
        budget = Budget(cfg, steps, len(val_loader), log,
                        lambda: prior_wall + time.time() - started,
                        state.get('plans', []) if state else [])
        epoch = first_epoch
        while epoch < steps.epochs:
            fresh = epoch == first_epoch  # this process's first epoch: time the steps
            side = side_for_epoch(cfg, epoch, steps.epochs, [r.get('side') for r in rows])
            if cfg.progressive:
                train_loader.resize = (side, side)

            def on_warm(rate, step_s, fresh=fresh, side=side):
                if fresh and not state:
                    budget.first_plan(
                        step_s, epoch * spe + 6,
                        lambda at=None: time_inference(model, val_loader, ctxs, side=at), side)
                if fresh and not quiet:
                    log(speed_note(cfg, rate, steps.total - epoch * spe, side))
            def on_step(done, step_s, side=side):
                budget.replan(step_s, None, done, side, lengthen=False)
            train_loss, train_acc, seen, train_s, step_s = train_one_epoch(
                model, trainer, train_loader, ctxs, cfg, epoch, loss_fn, workers, steps,
                on_warm, ema, on_step if cfg.budget else None)
            if not writer:
                log(f'[rank {rank}] epoch {epoch + 1}/{steps.epochs}: train loss '
                    f'{train_loss:.4f} acc {train_acc:.4f} on its shard')
                epoch += 1
                continue
            tic = time.time()
            val_loss, val_acc, _ = evaluate(model, val_loader, ctxs)
            if not (math.isfinite(val_loss) and all_finite(model.net)):
                raise diverged(f'validation loss {val_loss:.4g}, or non-finite weights, after '
                               'the epoch', epoch, trainer.learning_rate)
            row = {'epoch': epoch + 1, 'train_loss': train_loss, 'train_acc': train_acc,
                   'val_loss': val_loss, 'val_acc': val_acc, 'lr': trainer.learning_rate,
                   'img_s': seen / train_s, **({'side': side} if cfg.progressive else {})}
            averaged = ''
            if ema is not None:
                with ema.applied():
                    row['ema_val_loss'], row['ema_val_acc'], _ = evaluate(model, val_loader,
                                                                          ctxs)
                averaged = f' (EMA {row["ema_val_acc"]:.4f})'
            row['seconds'] = train_s + time.time() - tic
            rows.append(row)
            log(f'epoch {epoch + 1}/{steps.epochs}: train loss {train_loss:.4f} '
                f'acc {train_acc:.4f} | val loss {val_loss:.4f} acc {val_acc:.4f}{averaged} | '
                f'{row["img_s"]:.1f} img/s | {row["seconds"]:.1f} s')
            write_epoch(run, model, meta, rows, val_acc > best_acc, ema)
            best_acc = max(best_acc, val_acc)
            epoch += 1
            if kv is None:  # MXNet cannot save optimizer states of a dist kvstore
                run.save_checkpoint(model, trainer, epoch, rows, cfg, best_acc,
                                    prior_wall + time.time() - started,
                                    total_steps=steps.total, plans=budget.plans, ema=ema)
            budget.replan(step_s, time.time() - tic, min(epoch * spe, steps.total), side)
        if cfg.rank_params:
            os.makedirs(cfg.rank_params, exist_ok=True)
            atomic_write(os.path.join(cfg.rank_params, f'rank-{rank}.params'),
                         model.net.save_parameters)
        if not writer:
            return None
        final = flip_averaged_scores(model, val_loader, ctxs, ema, log) if cfg.tta else {}
        if ema is not None:
            final = dict(final_ema_val_acc=rows[-1]['ema_val_acc'], **final)
        summary = {'config': dataclasses.asdict(cfg), 'final_val_acc': rows[-1]['val_acc'],
                   'best_val_acc': best_acc, 'epochs': len(rows), 'steps': steps.total,
                   'wall_s': prior_wall + time.time() - started, 'model': meta,
                   'machine': runtime.machine(), 'workers': workers, 'metrics': rows,
                   **final}
        if cfg.budget:
            summary.update(budget_s=cfg.budget, plan=budget.plans[-1] if budget.plans else None,
                           plans=budget.plans)
        atomic_text(run.path('summary.json'), json.dumps(summary, indent=1))
        return summary
