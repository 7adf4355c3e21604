"""The interface between the training loop and its extensions.

The loop (loop.py) trains and validates; everything else a run does (time
budgets, weight averaging, progressive resizing, flip-averaged scores, the
files of the run folder and its checkpoints) is an `Extension`, called at fixed
points of the loop. Adding an option means a new extension and its flag, not
a change to the loop.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from densenet.train.loop import EpochResult, Loop


class Extension:
    """Hooks the loop calls, in the order of its extension list; each does nothing here.

    A hook reads and may change the `Loop` it is given (its ``steps.total``, the
    loader's side, the row of metrics); the loop itself reads only what the
    hooks below say they may change.
    """

    def on_fit_start(self, loop: Loop, state: dict[str, Any] | None) -> None:
        """Before the first epoch.

        Args:
            loop: the run.
            state: the checkpoint being resumed, or None.
        """

    def on_epoch_start(self, loop: Loop) -> None:
        """Before an epoch trains (``loop.epoch`` is 0-based); may set ``loop.side``.

        Args:
            loop: the run.
        """

    def on_step_end(self, loop: Loop, step: int) -> None:
        """After every optimizer step. Its time counts as training time.

        Args:
            loop: the run.
            step: the run's steps so far.
        """

    def on_warm(self, loop: Loop, images_s: float, step_s: float) -> None:
        """Once per process, five steps after the first (which builds the graph).

        Its time is not counted as training time.

        Args:
            loop: the run.
            images_s: the measured images per second.
            step_s: the measured seconds per step.
        """

    def on_check(self, loop: Loop, step: int, step_s: float) -> None:
        """Every twentieth of an epoch once warm; may shorten ``loop.steps.total``.

        Not counted as training time.

        Args:
            loop: the run.
            step: the run's steps so far.
            step_s: the mean seconds per step so far this epoch.
        """

    def on_validation_start(self, loop: Loop) -> None:
        """Before the epoch's validation (writer only).

        May change what the model computes in inference mode (its BatchNorm
        statistics), not its weights.

        Args:
            loop: the run.
        """

    def on_validation_end(self, loop: Loop, row: dict[str, Any]) -> str | None:
        """After the epoch's validation (writer only): add columns to `row`.

        Args:
            loop: the run.
            row: the epoch's row.

        Returns:
            A string appended to the epoch's log line, or None.
        """
        return None

    def on_epoch_end(self, loop: Loop, row: dict[str, Any], result: EpochResult) -> None:
        """After the epoch's row is logged (writer only).

        Args:
            loop: the run (``loop.epoch`` now counts the epochs done).
            row: the epoch's row.
            result: what the epoch's training measured.
        """

    def checkpoint(self, loop: Loop, stem: str) -> tuple[list[str], dict[str, Any]]:
        """Files to keep in the checkpoint, written as ``stem + suffix``.

        Args:
            loop: the run.
            stem: the checkpoint's path stem.

        Returns:
            (suffixes, fields for its state.json).
        """
        return [], {}

    def on_fit_end(self, loop: Loop, summary: dict[str, Any] | None) -> None:
        """After the last epoch, on every process.

        Args:
            loop: the run.
            summary: the writer's summary, which takes the extension's fields for
                summary.json; None on other processes.
        """
