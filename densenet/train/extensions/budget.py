"""--budget as an extension: the run times its own steps and evaluations, plans how many
steps fit (planning.py), and re-plans as it goes, so that it ends inside the budget.

`BudgetPlanner` holds the plans and the rules for changing them, and applies them
at the loop's hooks: the first plan once the steps are warm, a check every
twentieth of the plan's last epoch, and a re-plan after every epoch.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import cast

from densenet.errors import UsageError
from densenet.train.config import TrainConfig
from densenet.train.evaluate import time_inference
from densenet.train.extensions.base import (
    EpochResult,
    Extension,
    LoopView,
    Process,
    Row,
    State,
    Summary,
    scored_weights,
)
from densenet.train.planning import Plan, cost, plan_steps, reserve_s
from densenet.train.run_folder import Json

#: A plan as the run records it (summary.json, the checkpoint).
PlanRecord = dict[str, Json]


class BudgetPlanner(Extension):
    """``--budget``: plans and re-plans ``loop.steps.total`` so that the run ends inside
    ``cfg.budget``.

    It plans from the passes the run makes: its training steps (those of the
    extensions' `Extension.early_share` of the epochs at the speed measured there), a
    validation of the model and of every extension's `Extension.variants` after each
    epoch, and the extensions' `Extension.final_passes` at the end. Adds budget_s, plan and plans to
    summary.json and keeps the plans in the checkpoint. It comes after the files'
    extensions: an epoch's measured cost includes writing them.

    Attributes:
        loop: the run, from `on_fit_start` on.
        plans: the plans made so far.
    """
    name = 'budget'
    loop: LoopView

    def __init__(self) -> None:
        self.plans: list[PlanRecord] = []
        self.final_s, self.resumed = 0.0, False
        # A full-side step over a small-side one (timed by inference), once the first
        # steps were timed at a smaller side than the run's.
        self.full_over_small: float | None = None

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> BudgetPlanner | None:
        return cls() if cfg.budget else None

    def on_fit_start(self, loop: LoopView) -> None:
        self.loop, self.budget_s = loop, loop.cfg.budget or 0.0
        self.cap = loop.cfg.epochs * loop.steps.steps_per_epoch
        self.evals = len(scored_weights(loop.extensions))
        self.final_evals = sum(e.final_passes(self.evals) for e in loop.extensions)
        self.early = max((e.early_share(loop.cfg) for e in loop.extensions), default=0.0)

    def state_dict(self) -> State:
        return State({'plans': list(self.plans)})

    def load_state_dict(self, state: State) -> None:
        # The plans as _record wrote them (the checkpoint is this version's own).
        self.plans = cast(list[PlanRecord], state.values['plans'])
        last = self.plans[-1] if self.plans else {}
        self.final_s = cast(float, last.get('final_s', 0.0))
        self.full_over_small = cast('float | None', last.get('full_over_small'))
        self.resumed = True  # a resumed run keeps its plan until its first epoch ends

    def _steps(self, step_s: float, side: int | None) -> tuple[float, tuple[float, float] | None]:
        """(seconds a full-side step takes, `early` for plan_steps) from a step measured at
        `side`: while the run is still at the small side, the rest of that phase costs
        what was measured and the full side that times the measured ratio."""
        if side in (None, self.loop.cfg.resize) or not self.full_over_small:
            return step_s, None
        return step_s * self.full_over_small, (self.early, step_s)

    def _record(self, plan: Plan, done: int, why: str) -> None:
        steps = self.loop.steps
        steps.total = plan.total_steps
        self.plans.append({'at_step': done, 'why': why, 'total_steps': plan.total_steps,
                           'epochs': plan.epochs, 'step_s': plan.step_s,
                           'epoch_overhead_s': plan.epoch_overhead_s,
                           'final_s': self.final_s, 'expected_end_s': plan.end_s,
                           **({'early_step_s': plan.early_step_s,
                               'full_over_small': self.full_over_small}
                              if plan.early_step_s else {})})
        end = time.strftime('%H:%M:%S', time.localtime(time.time() + plan.end_s
                                                       - self.loop.elapsed()))
        capped = ' (--epochs caps it)' if plan.total_steps == self.cap else ''
        if self.final_s:
            capped += f'; {self.final_s:.0f} s at the end for the final scores'
        self.loop.log(f'{why}: {plan.describe()}{capped}; expected to end at {end}, '
                      f'{plan.end_s / 60:.1f} min into the {self.budget_s / 60:.1f} min budget')
        if plan.total_steps < steps.steps_per_epoch:
            self.loop.log(f'the budget fits {plan.total_steps} of an epoch\'s '
                          f'{steps.steps_per_epoch} steps: this run trains on part of the data')

    def first_plan(self, step_s: float, done: int, eval_batch_s: Callable[..., float],
                   side: int | None = None) -> None:
        """The plan from the first timed steps and validation batches.

        Writing the outputs is taken as 1 s until an epoch has measured it.

        Args:
            step_s: the measured seconds per step.
            done: the steps done.
            eval_batch_s: `eval_batch_s(side)` times one validation batch (at the full
                side without `side`).
            side: the side the steps were timed at (None: the full side).

        Raises:
            UsageError: a budget too short for one step and one evaluation.
        """
        full_batch_s = eval_batch_s()
        pass_s = len(self.loop.val_loader) * full_batch_s
        overhead, self.final_s = self.evals * pass_s + 1.0, self.final_evals * pass_s
        if side not in (None, self.loop.cfg.resize):
            self.full_over_small = full_batch_s / eval_batch_s(side)
        full_step_s, early = self._steps(step_s, side)
        elapsed = self.loop.elapsed()
        plan = plan_steps(self.budget_s, elapsed, done, self.loop.steps.steps_per_epoch,
                          full_step_s, overhead, self.cap, self.final_s, early)
        if plan is None:
            raise UsageError(f'--budget {self.budget_s:.0f} s is too short for this run: '
                             f'{elapsed:.0f} s went to loading and building, and a '
                             f'step takes {step_s:.2f} s; give a longer --budget, or fewer '
                             'images (--limit) or a smaller --resize')
        self._record(plan, done, 'plan')

    def replan(self, step_s: float, overhead_s: float | None, done: int,
               side: int | None = None, lengthen: bool = True) -> None:
        """Plan again from what the last epoch (or the steps so far) measured.

        After an epoch the new plan is adopted when the old one would overrun, or
        when the new one is more than 2% longer. Within an epoch (`lengthen=False`,
        `overhead_s` None: the last plan's) only a plan that would overrun is
        shortened. A budget spent ends the run (``why: budget spent``).

        Args:
            step_s: the measured seconds per step.
            overhead_s: the measured seconds to evaluate and write, or None.
            done: the steps done.
            side: the side the steps were trained at.
            lengthen: whether the plan may grow.
        """
        steps = self.loop.steps
        spe = steps.steps_per_epoch
        if done >= steps.total or (not lengthen and steps.total > math.ceil(done / spe) * spe):
            return
        if overhead_s is None:
            overhead_s = cast(float, self.plans[-1]['epoch_overhead_s'])
        elapsed = self.loop.elapsed()
        step_s, early = self._steps(step_s, side)
        plan = plan_steps(self.budget_s, elapsed, done, spe, step_s, overhead_s, self.cap,
                          self.final_s, early)
        total = plan.total_steps if plan else done
        # The plan stands while it ends with at least half the reserve left, and unless
        # one more than 2% longer fits: measured times wobble by a few percent.
        ends = elapsed + cost(steps.total, done, spe, step_s, overhead_s, early) + self.final_s
        overruns = ends > self.budget_s - reserve_s(self.budget_s) / 2
        if overruns or (lengthen and total > 1.02 * steps.total):
            if plan is None:  # recorded too, so that the last plan is the run's length
                self.loop.log('re-plan: the budget is spent; the run ends here')
                steps.total = done
                self.plans.append({'at_step': done, 'why': 'budget spent', 'total_steps': done,
                                   'epochs': math.ceil(done / spe), 'final_s': self.final_s,
                                   **({'full_over_small': self.full_over_small}
                                      if self.full_over_small else {})})
            else:
                self._record(plan, done, 're-plan')

    def on_warm(self, loop: LoopView, images_s: float, step_s: float) -> None:
        if self.resumed:
            return
        self.first_plan(
            step_s, loop.epoch * loop.steps.steps_per_epoch + 6,
            lambda at=None: time_inference(loop.model, loop.val_loader, loop.ctxs, side=at),
            loop.side)

    def on_check(self, loop: LoopView, step: int, step_s: float) -> None:
        self.replan(step_s, None, step, loop.side, lengthen=False)

    def on_epoch_end(self, loop: LoopView, row: Row, result: EpochResult,
                     is_best: bool) -> None:
        done = min(loop.epoch * loop.steps.steps_per_epoch, loop.steps.total)
        self.replan(result.step_s, time.time() - loop.epoch_tic, done, loop.side)

    def on_fit_end(self, loop: LoopView, summary: Summary | None) -> None:
        if summary is not None:
            plan = self.plans[-1] if self.plans else None
            summary.update(budget_s=loop.cfg.budget, plan=plan, plans=self.plans)
