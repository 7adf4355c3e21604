"""Time-budgeted training: how many steps fit in the time a run is given.

A budgeted run measures its own step time (after the graph is built) and
evaluation time, and plans the total number of steps so that training, one
evaluation and the outputs per epoch, and the summary end inside the budget;
the learning-rate schedule is laid over exactly that many steps. After every
epoch it measures again and re-plans when the plan would eat into the last
half of the reserve, or when a plan more than 2% longer fits.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import re

from densenet.errors import UsageError

_PART = re.compile(r'(\d+(?:\.\d+)?)([hms])')
UNITS = {'h': 3600, 'm': 60, 's': 1}
#: Kept back for what timing cannot foresee: this share of the budget plus RESERVE_S.
RESERVE = 0.03
RESERVE_S = 2.0
#: Below this a run cannot even build its graph and evaluate once.
MIN_BUDGET_S = 10


def early_epochs(epochs: int, fraction: float) -> int:
    """How many of a run's first `epochs` epochs train at the small side.

    Args:
        epochs: the run's epochs.
        fraction: ``--progressive-until``.

    Returns:
        The number of epochs.
    """
    return math.floor(fraction * epochs)


def parse_duration(text: str) -> float:
    """Seconds in '60m', '1h30m', '900s', '1.5h' (a unit is required).

    Args:
        text: the duration.

    Returns:
        The seconds.

    Raises:
        UsageError: text that is not a duration, or one too short for any training.
    """
    text = str(text).strip().lower()
    parts = _PART.findall(text)
    if not text or ''.join(n + u for n, u in parts) != text or \
            len({u for _, u in parts}) != len(parts):
        raise UsageError(f'{text!r} is not a duration: write it with units, e.g. '
                         '60m, 1h30m or 900s')
    seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if seconds < MIN_BUDGET_S:
        raise UsageError(f'{text} is too short for any training: a run needs at least '
                         f'{MIN_BUDGET_S} s to build its graph and evaluate once')
    return seconds


@dataclasses.dataclass
class Plan:
    """The steps a run will take, and what the plan was made from."""
    total_steps: int
    steps_per_epoch: int
    step_s: float
    epoch_overhead_s: float   # evaluation and writing outputs, per epoch
    end_s: float              # expected wall seconds from the run's start
    early_step_s: float | None = None  # progressive resizing: a step at the small side

    @property
    def epochs(self) -> int:
        """The epochs the planned steps take (the last one may be partial)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def describe(self) -> str:
        """The plan in one line, as the run logs it.

        Returns:
            The line.
        """
        part = self.total_steps - (self.epochs - 1) * self.steps_per_epoch
        last = '' if part == self.steps_per_epoch else f', the last one {part} steps'
        return (f'{self.total_steps} steps = {self.epochs} epoch(s) of {self.steps_per_epoch}'
                f'{last}; {self.step_s * 1000:.0f} ms a step'
                + (f' ({self.early_step_s * 1000:.0f} ms at the small side)'
                   if self.early_step_s else '')
                + f', {self.epoch_overhead_s:.1f} s per epoch to evaluate and write')


def reserve_s(budget_s: float) -> float:
    """Seconds of the budget the plan leaves unused (jitter, the summary, exiting).

    Args:
        budget_s: the budget.

    Returns:
        The reserve: the share `RESERVE` of the budget plus `RESERVE_S` seconds.
    """
    return RESERVE * budget_s + RESERVE_S


def cost(total: int, done: int, steps_per_epoch: int, step_s: float, overhead_s: float,
         early: tuple[float, float] | None = None) -> float:
    """Seconds from now to finish `total` steps when `done` are done.

    The steps, and one evaluation + write at the end of every epoch that has not
    ended yet.

    Args:
        total: the planned steps.
        done: the steps done.
        steps_per_epoch: the steps of one epoch.
        step_s: seconds per step (at the full side).
        overhead_s: seconds to evaluate and write after an epoch.
        early: (fraction, seconds): with progressive resizing, the steps of the
            first `fraction` of the epochs take `seconds` each.

    Returns:
        The seconds.
    """
    epochs_left = math.ceil(total / steps_per_epoch) - done // steps_per_epoch
    seconds = (total - done) * step_s + epochs_left * overhead_s
    if early:
        fraction, early_s = early
        small = early_epochs(math.ceil(total / steps_per_epoch), fraction) * steps_per_epoch
        seconds += max(0, min(total, small) - done) * (early_s - step_s)
    return seconds


def plan_steps(budget_s: float, elapsed_s: float, done: int, steps_per_epoch: int,
               step_s: float, overhead_s: float, cap_steps: int, final_s: float = 0.0,
               early: tuple[float, float] | None = None) -> Plan | None:
    """The Plan with the most steps that ends inside the budget.

    Args:
        budget_s: the budget.
        elapsed_s: the seconds spent so far.
        done: the steps done.
        steps_per_epoch: the steps of one epoch.
        step_s: seconds per step.
        overhead_s: seconds to evaluate and write after an epoch.
        cap_steps: the most steps (``--epochs``).
        final_s: work done once after the last epoch (flip-averaged scores).
        early: as for `cost`.

    Returns:
        The plan (at most `cap_steps`, ending inside the budget less its reserve and
        `final_s`), or None when not even one more step and one evaluation fit.
    """
    left = budget_s - reserve_s(budget_s) - elapsed_s - final_s

    def fits(total: int) -> bool:
        return cost(total, done, steps_per_epoch, step_s, overhead_s, early) <= left
    if early:
        # More steps can cost less (one more epoch moves a whole epoch to the cheap side),
        # so the cost is not monotone: take the longest that fits by looking at each.
        lo = next((t for t in range(cap_steps, done, -1) if fits(t)), done)
        if lo == done:
            return None
    else:
        if not fits(done + 1):
            return None
        # The cost is increasing in total: bisect for the first total that does not fit.
        later = range(done + 1, cap_steps + 1)
        lo = done + bisect.bisect_left(later, True, key=lambda total: not fits(total))
    end = elapsed_s + cost(lo, done, steps_per_epoch, step_s, overhead_s, early) + final_s
    return Plan(lo, steps_per_epoch, step_s, overhead_s, end,
                early[1] if early else None)
