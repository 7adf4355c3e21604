"""The run folder's files as extensions: each epoch's params, metrics and curves; the
checkpoint that --resume continues from."""
from __future__ import annotations

import csv
import io

from mxnet import npx

from densenet.models.meta import Meta
from densenet.models.params import save
from densenet.system.files import atomic_text, pyplot, save_figure
from densenet.train.config import TrainConfig
from densenet.train.extensions.base import EpochResult, Extension, LoopView, Process, Row
from densenet.train.run_folder import (
    ARRAYS,
    BEST,
    CURVES,
    LAST,
    METRICS,
    PARAMS,
    STATES,
    STATES_ORDER,
)

#: The columns of metrics.csv every run has, in order; the columns extensions add to the
#: rows follow them, in the order the last row holds them.
METRIC_FIELDS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc',
                 'lr', 'img_s', 'seconds']


def plot_curves(rows: list[dict[str, float]], path: str) -> None:
    """Write loss and accuracy against epoch as a PNG, as d2l's ProgressBoard draws them.

    Args:
        rows: the epochs' rows.
        path: the PNG file.
    """
    import matplotlib.ticker
    ep = [r['epoch'] for r in rows]
    fig, ax = pyplot().subplots(figsize=(5, 3.5), layout='tight')
    styles: dict[str, str | tuple[int, tuple[int, int]]] = {
        'train_loss': '-', 'val_loss': '--', 'train_acc': '-.', 'val_acc': ':'}
    # The accuracy of other weights the run scores (the extensions' variants).
    styles.update({k: (0, (1, 3)) for k in rows[-1] if k.endswith('_val_acc')})
    for key, style in styles.items():
        ax.plot(ep, [r[key] for r in rows], linestyle=style, marker='o', markersize=3,
                label=key)
    ax.set(xlabel='epoch', xlim=(0.5, max(ep) + 0.5))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def write_metrics(path: str, rows: list[dict[str, float]]) -> None:
    """Write metrics.csv: a row per epoch, the standard columns then the extensions'.

    Args:
        path: the CSV file.
        rows: the epochs' rows.
    """
    buf = io.StringIO()
    fields = METRIC_FIELDS + [k for k in rows[-1] if k not in METRIC_FIELDS]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: (f'{r[k]:.6g}' if isinstance(r[k], float) else r[k]) for k in fields}
                     for r in rows)
    atomic_text(path, buf.getvalue())


class EpochFiles(Extension):
    """After every epoch: last.params (and best.params), their metadata, metrics.csv, curves.png."""
    name = 'files'

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> EpochFiles | None:
        return cls() if process.writer else None

    def on_epoch_end(self, loop: LoopView, row: Row, result: EpochResult,
                     is_best: bool) -> None:
        meta: Meta = {**loop.meta, 'epoch': int(row['epoch'])}
        save(loop.model, loop.run.path(LAST), meta)
        if is_best:
            save(loop.model, loop.run.path(BEST), meta)
        write_metrics(loop.run.path(METRICS), loop.rows)
        plot_curves(loop.rows, loop.run.path(CURVES))


class Checkpoints(Extension):
    """After every epoch, the checkpoint that ``--resume`` continues from (not with a dist
    kvstore, whose optimizer states MXNet cannot save).

    It holds the parameters, the optimizer states, the loop's rows and counters, and
    every extension's `Extension.state_dict`: its values in state.json under its name,
    its arrays in the ``.arrays`` file as ``NAME:INDEX``.
    """
    name = 'checkpoint'

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> Checkpoints | None:
        return cls() if process.writer and not process.dist else None

    def on_epoch_end(self, loop: LoopView, row: Row, result: EpochResult,
                     is_best: bool) -> None:
        states = {e.name: s for e in loop.extensions if (s := e.state_dict()) is not None}
        arrays = {f'{name}:{i:06d}': a for name, s in states.items()
                  for i, a in enumerate(s.arrays)}
        writers = {PARAMS: loop.model.net.save_parameters, STATES: loop.trainer.save_states}
        if arrays:
            writers[ARRAYS] = lambda path: npx.save(path, arrays)
        loop.run.save_checkpoint(loop.epoch, writers, {
            'rows': loop.rows, 'config': loop.cfg.as_dict(), 'best_val_acc': loop.best_acc,
            'wall_s': loop.elapsed(), 'total_steps': loop.steps.total,
            'states_order': STATES_ORDER,
            'extensions': {name: s.values for name, s in states.items()}})
