"""--progressive: smaller training images early, the run's side late, and budgets that
plan for both step costs."""
import os
import types

import mxnet as mx
import numpy as onp
import pytest

from densenet.data import FashionMNIST
from densenet.errors import UsageError
from densenet.models.params import load_model
from densenet.train import BudgetPlanner, Steps, TrainConfig, evaluate, fit
from densenet.train.extensions.progressive import ProgressiveResizing, side_for_epoch
from densenet.train.planning import cost, early_epochs, plan_steps, reserve_s

from helpers import cli, read_metrics


def test_the_schedule_trains_small_then_full_and_never_goes_back():
    cfg = TrainConfig(resize=64, progressive=48, progressive_until=0.5)
    assert [side_for_epoch(cfg, e, 7) for e in range(7)] == [48] * 3 + [64] * 4
    assert early_epochs(7, 0.5) == 3 and early_epochs(1, 0.5) == 0
    # A re-plan to 12 epochs would put epoch 4 back at 48; a run that trained at 64 stays.
    assert side_for_epoch(cfg, 4, 12, [48, 48, 48, 64]) == 64
    assert side_for_epoch(cfg, 3, 12, [48, 48, 48]) == 48
    assert side_for_epoch(TrainConfig(resize=64), 0, 7) == 64


@pytest.mark.slow
def test_bad_sides_and_shares_are_refused():
    with pytest.raises(UsageError, match='smaller than --resize 64'):
        TrainConfig(resize=64, progressive=64).validate()
    with pytest.raises(UsageError, match="below the model's minimum input size 29"):
        TrainConfig(resize=64, progressive=16).validate(min_size=29)
    for share in (0.0, 1.0, -0.5):
        with pytest.raises(UsageError, match='--progressive-until must be a share'):
            TrainConfig(progressive_until=share).validate()
    proc = cli('train', '--resize', '40', '--progressive', '48', check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and '--progressive 48' in err[0], proc.stderr


def test_the_plan_counts_cheap_early_steps_and_is_the_longest_that_fits():
    spe, full_s, small_s, overhead = 100, 0.4, 0.25, 3.0
    early = (0.5, small_s)
    plan = plan_steps(3600, 60, 6, spe, full_s, overhead, 100_000, early=early)
    left = 3600 - reserve_s(3600) - 60
    assert cost(plan.total_steps, 6, spe, full_s, overhead, early) <= left
    # Not monotone in the steps, so every longer plan is checked, not only the next one.
    assert all(cost(t, 6, spe, full_s, overhead, early) > left
               for t in range(plan.total_steps + 1, 100_000, 7))
    # By hand: e epochs, floor(e / 2) of them at 0.25 s a step, the rest at 0.4 s.
    e = plan.epochs
    by_hand = (e // 2 * spe - 6) * small_s + (plan.total_steps - e // 2 * spe) * full_s \
        + e * overhead
    assert cost(plan.total_steps, 6, spe, full_s, overhead, early) == pytest.approx(by_hand)
    plain = plan_steps(3600, 60, 6, spe, full_s, overhead, 100_000)
    assert plan.total_steps > 1.2 * plain.total_steps  # the cheap half buys epochs
    assert plan.early_step_s == small_s and '250 ms at the small side' in plan.describe()


def test_the_budget_times_both_sides_and_switches_to_measured_full_steps():
    cfg = TrainConfig(resize=64, progressive=32, budget=900, epochs=100)
    loop = types.SimpleNamespace(cfg=cfg, steps=Steps(100 * 50, 50), val_loader=range(10),
                                 log=lambda s: None, elapsed=lambda: 20.0,
                                 extensions=[ProgressiveResizing()])
    budget = BudgetPlanner()
    budget.on_fit_start(loop)
    plans = budget.plans
    timed = {None: 0.25, 32: 0.0625}  # inference batch at 64 (the full side) and at 32
    budget.first_plan(step_s=0.125, done=6, eval_batch_s=lambda side=None: timed[side], side=32)
    # Full-side steps estimated as the measured small one times the inference ratio (4x).
    want = plan_steps(900, 20.0, 6, 50, 0.5, 10 * 0.25 + 1.0, 100 * 50, early=(0.5, 0.125))
    assert plans[0]['total_steps'] == want.total_steps
    assert plans[0]['full_over_small'] == 4.0 and plans[0]['early_step_s'] == 0.125
    # Once at the full side, its measured steps alone count (here slower than estimated).
    loop.steps.total, loop.elapsed = want.total_steps, lambda: 700.0
    done = early_epochs(want.epochs, 0.5) * 50
    budget.replan(0.6, 3.5, done, side=64)
    again = plan_steps(900, 700.0, done, 50, 0.6, 3.5, 100 * 50)
    assert plans[-1]['why'] == 're-plan' and plans[-1]['total_steps'] == again.total_steps
    assert 'early_step_s' not in plans[-1]


def record_sides(loader, sides):
    """Make `loader` note the side of every training batch it yields, by epoch."""
    base = type(loader)

    def recording_iter(self):
        epoch = self.epoch
        for X, y in base.__iter__(self):
            sides.setdefault(epoch, set()).add(tuple(X.shape[2:]))
            yield X, y
    loader.__class__ = type('Recording', (base,), {'__iter__': recording_iter})


@pytest.mark.slow
def test_a_progressive_run_switches_at_the_planned_epoch_and_is_a_fixed_size_model(
        tmp_path, real_data_dir):
    out = str(tmp_path / 'run')
    cfg = TrainConfig(epochs=4, batch_size=64, resize=40, progressive=32, limit=512,
                      holdout=256, data_dir=real_data_dir, out=out, lr=0.1, augment=True)
    data = FashionMNIST(batch_size=64, resize=(40, 40), root=real_data_dir, limit=512,
                        augment=True, holdout=256)
    loader, sides = data.train_dataloader(), {}
    record_sides(loader, sides)
    data.train_dataloader = lambda: loader
    summary = fit(cfg, data=data, log=lambda s: None)
    assert sides == {0: {(32, 32)}, 1: {(32, 32)}, 2: {(40, 40)}, 3: {(40, 40)}}
    assert [int(r['side']) for r in read_metrics(out)] == [32, 32, 40, 40]
    # The trained weights, loaded into a freshly built model (never run at 32), give the
    # final epoch's validation figures at 40x40.
    model, _ = load_model(os.path.join(out, 'last.params'))
    loss, acc, _ = evaluate(model, data.val_dataloader(), [mx.cpu()])
    assert acc == summary['final_val_acc']
    # 256 float32 cross-entropies summed: relative rounding well under 1e-5.
    assert loss == pytest.approx(summary['metrics'][-1]['val_loss'], rel=1e-5)
    assert onp.isfinite(loss) and acc > 0.3  # and it learnt something (10 classes: 0.1)
