"""The note a CPU run prints once it knows its speed: how long this run and the book's full
recipe would take on this machine."""
from __future__ import annotations

from densenet.train.config import TrainConfig
from densenet.train.extensions.base import Extension, LoopView, Process
from densenet.train.report import speed_note


class SpeedNote(Extension):
    """Logs `report.speed_note` once the steps are warm (not on a GPU, nor on workers)."""
    name = 'speed'

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> SpeedNote | None:
        return None if process.quiet else cls()

    def on_warm(self, loop: LoopView, images_s: float, step_s: float) -> None:
        steps_left = loop.steps.total - loop.epoch * loop.steps.steps_per_epoch
        loop.log(speed_note(loop.cfg, images_s, steps_left, loop.side))
