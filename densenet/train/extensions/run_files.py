"""The run folder's files as extensions: each epoch's params, metrics and curves; the
checkpoint that --resume continues from."""
from __future__ import annotations

from mxnet import npx

from densenet.models.meta import Meta
from densenet.models.params import save
from densenet.train.config import TrainConfig
from densenet.train.extensions.base import EpochResult, Extension, LoopView, Process, Row
from densenet.train.report import plot_curves, write_metrics
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
