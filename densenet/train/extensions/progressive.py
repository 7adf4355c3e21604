"""Progressive resizing: the first part of a run trains on smaller images, the rest (and
every evaluation) at the run's side. A step's cost falls about with the square of the
side, so a slow machine fits more epochs into the same time."""
from __future__ import annotations

from collections.abc import Sequence

from densenet.train.config import TrainConfig
from densenet.train.extensions.base import Extension, LoopView, Process, Row
from densenet.train.planning import early_epochs


def side_for_epoch(cfg: TrainConfig, epoch: int, epochs: int,
                   sides_so_far: Sequence[float] = ()) -> int:
    """The training side of `epoch` (0-based) in a run planned for `epochs`.

    The small side (``cfg.progressive``) for the first ``cfg.progressive_until``
    of the epochs, then ``cfg.resize``. A run that has trained at the full side
    stays there, even when a re-plan adds epochs.

    Args:
        cfg: the configuration.
        epoch: the epoch.
        epochs: the planned epochs.
        sides_so_far: the sides of the epochs already trained.

    Returns:
        The side.
    """
    if not cfg.progressive or cfg.resize in sides_so_far:
        return cfg.resize
    return cfg.progressive if epoch < early_epochs(epochs, cfg.progressive_until) else cfg.resize


class ProgressiveResizing(Extension):
    """``--progressive``: sets each epoch's training side (`side_for_epoch`).

    The loop trains the epoch at that side; the extension records it in the
    epoch's row (``side``).
    """
    name = 'progressive'

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> ProgressiveResizing | None:
        return cls() if cfg.progressive else None

    def early_share(self, cfg: TrainConfig) -> float:
        return cfg.progressive_until

    def on_epoch_start(self, loop: LoopView) -> int:
        return side_for_epoch(loop.cfg, loop.epoch, loop.steps.epochs,
                              [r['side'] for r in loop.rows])

    def on_validation_end(self, loop: LoopView, row: Row) -> None:
        row['side'] = loop.side
