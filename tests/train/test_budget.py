"""--budget: the run plans its steps from its own speed and ends inside the budget."""
import json
import math
import os
import types

import pytest

from densenet.errors import UsageError
from densenet.train import BudgetPlanner, Steps, TrainConfig, lr_at
from densenet.train.planning import cost, parse_duration, plan_steps, reserve_s

from helpers import cli, kill_after_first_checkpoint


def test_durations():
    assert parse_duration('60m') == 3600 and parse_duration('1h30m') == 5400
    assert parse_duration('900s') == 900 and parse_duration('1.5h') == 5400
    assert parse_duration(' 2m30s ') == 150
    for bad in ('', '60', '5x', '1h1h', 'm', '-5m', '1h 30m'):
        with pytest.raises(UsageError, match='is not a duration'):
            parse_duration(bad)
    with pytest.raises(UsageError, match='too short for any training'):
        parse_duration('3s')


def test_plan_fits_the_budget_and_is_the_longest_that_does():
    spe, step_s, overhead = 100, 0.5, 20.0
    plan = plan_steps(3600, 60, 6, spe, step_s, overhead, cap_steps=10_000)
    left = 3600 - reserve_s(3600) - 60
    assert cost(plan.total_steps, 6, spe, step_s, overhead) <= left
    assert cost(plan.total_steps + 1, 6, spe, step_s, overhead) > left
    assert plan.end_s <= 3600 - reserve_s(3600) == 3600 - 0.03 * 3600 - 2
    # By hand: E whole epochs cost 50 E + 20 E s, less 3 s for the 6 steps done; the
    # budget leaves 3600 - 110 - 60 = 3430 s: 49 epochs (3427 s) fit, a 50th does not.
    assert plan.epochs == math.ceil(plan.total_steps / spe) == 49 and plan.total_steps == 4900
    assert plan_steps(3600, 60, 6, spe, step_s, overhead, cap_steps=2300).total_steps == 2300
    # 80 s less 3% and 2 s, 20 s gone: (n - 6) 0.5 + 20 <= 55.6: n = 77, part of one epoch.
    short = plan_steps(80, 20, 6, spe, step_s, overhead, cap_steps=10_000)
    assert short.total_steps == 77 and short.epochs == 1
    assert plan_steps(30, 20, 6, spe, step_s, overhead, cap_steps=10_000) is None


def planner_for(cfg, steps, val_batches, log=lambda s: None, elapsed=10.0):
    """A `BudgetPlanner` started on a stand-in loop of `steps`, its wall time `elapsed`."""
    loop = types.SimpleNamespace(cfg=cfg, steps=steps, val_loader=range(val_batches), log=log,
                                 elapsed=lambda: elapsed, extensions=[])
    planner = BudgetPlanner()
    planner.on_fit_start(loop)
    return planner, loop


def test_a_spent_budget_ends_the_run_and_says_so_in_the_plans():
    """A run that finds its budget spent after an epoch (a slow machine, a resume's second
    start-up) stops there, and its last plan is that length."""
    lines = []
    cfg = TrainConfig(budget=60, epochs=50)
    budget, loop = planner_for(cfg, Steps(50 * 63, 63), val_batches=4, log=lines.append)
    plans = budget.plans
    budget.first_plan(step_s=0.1, done=6, eval_batch_s=lambda side=None: 0.05)
    planned = plans[0]['total_steps']
    assert plans[0]['why'] == 'plan' and 63 < planned < 50 * 63
    loop.elapsed = lambda: 59.0  # after epoch 2, with less than a step's time left
    budget.replan(0.1, 1.2, 126)
    assert loop.steps.total == 126 and lines[-1] == ('re-plan: the budget is spent; the '
                                                       'run ends here')
    assert plans[-1] == {'at_step': 126, 'why': 'budget spent', 'total_steps': 126,
                         'epochs': 2, 'final_s': 0.0}


def test_within_the_last_epoch_only_an_overrun_re_plans():
    """Checks within an epoch shorten a plan that a slowdown makes overrun, but only in
    its last epoch (earlier, the epoch's end re-plans), and never lengthen one."""
    cfg = TrainConfig(budget=600, epochs=5)
    budget, loop = planner_for(cfg, Steps(5 * 100, 100), val_batches=4)
    plans = budget.plans
    budget.first_plan(step_s=0.2, done=6, eval_batch_s=lambda side=None: 0.5)
    assert loop.steps.total == 500  # the --epochs cap fits
    loop.elapsed = lambda: 500.0
    budget.replan(0.5, None, 150, lengthen=False)  # overruns, but in epoch 2 of 5
    assert loop.steps.total == 500 and len(plans) == 1
    budget.replan(0.5, 3.0, 200)  # epoch 2's end re-plans
    shorter = plan_steps(600, 500.0, 200, 100, 0.5, 3.0, 500).total_steps
    assert loop.steps.total == shorter and 300 < shorter < 400  # ends in epoch 4
    loop.elapsed = lambda: 540.0
    budget.replan(0.1, None, 320, lengthen=False)  # faster: a longer plan fits, not taken
    assert loop.steps.total == shorter and len(plans) == 2
    loop.elapsed = lambda: 575.0
    budget.replan(0.5, None, 320, lengthen=False)  # the last epoch overruns: re-planned
    last = plan_steps(600, 575.0, 320, 100, 0.5, 3.0, 500).total_steps
    assert plans[-1]['why'] == 're-plan' and plans[-1]['at_step'] == 320
    assert loop.steps.total == last < shorter


def test_budget_in_the_config():
    with pytest.raises(UsageError, match='--budget plans each process'):
        TrainConfig(budget=600, kvstore='dist_sync').validate()


def test_bad_durations_exit_2_and_write_nothing(tmp_path):
    for bad, message in [('5x', "'5x' is not a duration"), ('60', 'with units'),
                         ('3s', 'too short for any training')]:
        proc = cli('train', '--budget', bad, '--out', str(tmp_path / 'out'), check=False)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and message in err[0], proc.stderr
    assert not os.listdir(tmp_path)


def read_summary(out):
    with open(os.path.join(out, 'summary.json')) as f:
        return json.load(f)


QUICK = ['train', '--recipe', 'fast-cpu', '--limit', '4000', '--resize', '32',
         '--batch-size', '64', '--epochs', '50', '--val-limit', '2000']


@pytest.mark.slow
@pytest.mark.alone
def test_a_budgeted_run_ends_inside_its_budget_with_a_complete_schedule(tmp_path,
                                                                        real_data_dir):
    out = str(tmp_path / 'run')
    proc = cli(*QUICK, '--budget', '30s', '--out', out, '--data-dir', real_data_dir)
    s = read_summary(out)
    assert s['budget_s'] == 30 and s['plans'][0]['why'] == 'plan' and 'plan: ' in proc.stdout
    # The plan keeps 3% + 2 s back (2.9 s).
    assert s['wall_s'] <= 30
    assert s['steps'] < 50 * 63  # the budget, not --epochs, set the length
    assert s['steps'] == s['plan']['total_steps']
    # The first epoch's progress bar counts the planned epochs, not the --epochs cap.
    assert f"epoch 1/{s['plans'][0]['epochs']} [" in proc.stderr, proc.stderr
    cfg = TrainConfig.from_recipe(**s['config'])
    last = s['plans'][-1]
    if last['why'] == 'budget spent':
        # The machine fell behind the plan by more than its reserve (a shared machine's
        # speed moves by several percent within seconds): the run stops where that shows,
        # inside the budget, and the plans say so; its schedule was laid over the longer
        # plan before it.
        assert s['steps'] == last['at_step'] == last['total_steps'] < s['plans'][-2][
            'total_steps']
        assert 're-plan: the budget is spent; the run ends here' in proc.stdout
        return
    # The schedule was laid over exactly the steps taken: its last step has the
    # last learning rate of a cosine over that many steps (near 0), not a cut-off one.
    assert s['metrics'][-1]['lr'] == pytest.approx(lr_at(cfg, s['steps'] - 1, s['steps']),
                                                   rel=1e-6)
    assert s['metrics'][-1]['lr'] < 0.01 * cfg.lr


@pytest.mark.slow
def test_budget_with_resume_continues_the_same_plan(tmp_path, real_data_dir):
    out = str(tmp_path / 'run')
    args = [*QUICK, '--budget', '40s', '--data-dir', real_data_dir]
    saved, _ = kill_after_first_checkpoint(args, out, wait_s=120)
    plans = saved['extensions']['budget']['plans']  # the budget's part of the checkpoint
    assert saved['epoch'] == 1 and plans[0]['why'] == 'plan'
    resumed = cli(*args, '--out', out, '--resume').stdout
    # No new plan: the saved one goes on (re-plans may follow).
    assert not [line for line in resumed.splitlines() if line.startswith('plan: ')]
    s = read_summary(out)
    assert s['plans'][:len(plans)] == plans
    assert s['steps'] == s['plans'][-1]['total_steps']


@pytest.mark.slow
def test_a_budget_too_short_for_one_step_and_an_evaluation(tmp_path, real_data_dir):
    out = str(tmp_path / 'run')
    proc = cli('train', '--resize', '96', '--budget', '10s', '--out', out,
               '--data-dir', real_data_dir, check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and 'is too short for this run' in err[-1], proc.stderr
    assert not os.path.exists(out)
