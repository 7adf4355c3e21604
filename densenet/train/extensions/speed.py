"""The note a CPU run prints once it knows its speed: how long this run and the book's full
recipe would take on this machine."""
from __future__ import annotations

from densenet.data import TRAIN_SIZE
from densenet.system import runtime
from densenet.system.machine import summary_line
from densenet.train.config import TrainConfig
from densenet.train.extensions.base import Extension, LoopView, Process


def speed_note(cfg: TrainConfig, rate: float, steps_left: int, side: int) -> str:
    """The line a CPU run prints once it knows its speed.

    Args:
        cfg: the configuration.
        rate: the measured images per second.
        steps_left: the steps still to take.
        side: the side the rate was measured at.

    Returns:
        The line: how long the book's full recipe, and this run, take here.
    """
    full = 10 * TRAIN_SIZE / rate * (96 / side) ** 2
    this = steps_left * cfg.batch_size / rate
    this_text = f'{this / 60:.0f} min' if this >= 120 else f'{this:.0f} s'
    at = f' if every step were at {side}x{side}' if side != cfg.resize else ''
    return (f'no GPU: {rate:.0f} img/s on this {summary_line(runtime.machine())}; '
            f'the book\'s full recipe (10 epochs, 60000 images, 96x96) would take '
            f'about {full / 3600:.1f} h on this machine, this run about '
            f'{this_text} of training{at}. Quicker: '
            + ('--recipe fast-cpu, or ' if cfg.recipe == 'book' else '')
            + '--limit 5000 --epochs 2 --resize 32.')


class SpeedNote(Extension):
    """Logs `speed_note` once the steps are warm (not on a GPU, nor on workers)."""
    name = 'speed'

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> SpeedNote | None:
        return None if process.quiet else cls()

    def on_warm(self, loop: LoopView, images_s: float, step_s: float) -> None:
        steps_left = loop.steps.total - loop.epoch * loop.steps.steps_per_epoch
        loop.log(speed_note(loop.cfg, images_s, steps_left, loop.side))
