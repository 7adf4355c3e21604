"""The note a CPU run prints once it knows its speed: how long this run and the book's full
recipe would take on this machine."""
from __future__ import annotations

from typing import TYPE_CHECKING

from densenet.train.extensions.base import Extension
from densenet.train.report import speed_note

if TYPE_CHECKING:
    from densenet.train.loop import Loop


class SpeedNote(Extension):
    """Logs `report.speed_note` once the steps are warm."""

    def on_warm(self, loop: Loop, images_s: float, step_s: float) -> None:
        steps_left = loop.steps.total - loop.epoch * loop.steps.steps_per_epoch
        loop.log(speed_note(loop.cfg, images_s, steps_left, loop.side))
