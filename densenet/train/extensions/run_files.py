"""The run folder's files as extensions: each epoch's params, metrics and curves; the
checkpoint that --resume continues from; every worker's final parameters."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from densenet.errors import UsageError
from densenet.models.params import save
from densenet.system.files import atomic_write
from densenet.train.extensions.base import Extension
from densenet.train.report import plot_curves, write_metrics
from densenet.train.run_folder import BEST, CURVES, LAST, METRICS

if TYPE_CHECKING:
    from densenet.train.loop import EpochResult, Loop


class EpochFiles(Extension):
    """After every epoch: last.params (and best.params), their metadata, metrics.csv, curves.png."""

    def on_epoch_end(self, loop: Loop, row: dict[str, Any], result: EpochResult) -> None:
        meta = dict(loop.meta, epoch=row['epoch'])
        save(loop.model, loop.run.path(LAST), meta)
        if loop.is_best:
            save(loop.model, loop.run.path(BEST), meta)
        write_metrics(loop.run.path(METRICS), loop.rows)
        plot_curves(loop.rows, loop.run.path(CURVES))


class Checkpoints(Extension):
    """After every epoch, the checkpoint; when a run resumes, everything back from it.

    The checkpoint holds the parameters, the optimizer states, every extension's
    own part and the rows so far.
    """

    def on_fit_start(self, loop: Loop, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        loop.model.net.load_parameters(state['stem'] + '.params', ctx=loop.ctxs)
        load_states(loop, state)
        loop.epoch = loop.first_epoch = state['epoch']
        loop.rows, loop.best_acc, loop.prior_wall = (state['rows'], state['best_val_acc'],
                                                     state['wall_s'])
        loop.log(f'resuming {loop.cfg.out} after epoch {loop.epoch}')

    def on_epoch_end(self, loop: Loop, row: dict[str, Any], result: EpochResult) -> None:
        def write(stem: str) -> tuple[list[str], dict[str, Any]]:
            atomic_write(stem + '.params', loop.model.net.save_parameters)
            atomic_write(stem + '.states', loop.trainer.save_states)
            parts, fields = ['.params', '.states'], {}
            for ext in loop.extensions:
                ext_parts, ext_fields = ext.checkpoint(loop, stem)
                parts += ext_parts
                fields.update(ext_fields)
            return parts, fields
        loop.run.save_checkpoint(loop.epoch, write, {
            'rows': loop.rows, 'config': loop.config_dict(), 'best_val_acc': loop.best_acc,
            'wall_s': loop.elapsed(), 'total_steps': loop.steps.total,
            'states_order': STATES_ORDER})


#: How a checkpoint's optimizer states are indexed: by the trainer's parameters in the
#: network's order (`densenet.train.setup.trained_params`).
STATES_ORDER = 'network'


def load_states(loop: Loop, state: dict[str, Any]) -> None:
    """Load the checkpoint's optimizer states into ``loop.trainer``.

    Args:
        loop: the loop, its trainer built by `densenet.train.setup.make_trainer`.
        state: the checkpoint's record.

    Raises:
        UsageError: a checkpoint whose states are not in the network's order.
    """
    if state.get('states_order') != STATES_ORDER:
        raise UsageError(f'{state["stem"]}.states: optimizer states in another order than '
                         'this version writes; start the run again with --overwrite')
    loop.trainer.load_states(state['stem'] + '.states')


class RankParams(Extension):
    """Every worker's final parameters as ``rank-N.params`` in a folder.

    The distributed tests compare them.

    Args:
        folder: where the files go.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, loop: Loop, summary: dict[str, Any] | None) -> None:
        os.makedirs(self.folder, exist_ok=True)
        atomic_write(os.path.join(self.folder, f'rank-{loop.rank}.params'),
                     loop.model.net.save_parameters)
