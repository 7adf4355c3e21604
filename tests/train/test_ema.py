"""--ema: the moving average of the weights, against a numpy recomputation, and in a run."""
import json
import os
import types

import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from densenet import DenseNet
from densenet.errors import UsageError
from densenet.train import Steps, TrainConfig, default_extensions
from densenet.train.extensions.budget import BudgetPlanner
from densenet.train.extensions.ema import WeightEMA
from densenet.train.planning import plan_steps

from helpers import cli, kill_after_first_checkpoint, read_metrics, set_running_stats


def small_net(seed=0):
    model = DenseNet(num_channels=8, growth_rate=4, arch=(2, 2))
    model.net(np.zeros((2, 1, 32, 32)))
    set_running_stats(model.net, seed)
    return model


def snapshot(net):
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


def test_ema_equals_a_numpy_recomputation_over_a_few_steps():
    model = small_net()
    net = model.net
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.5, 'momentum': 0.9})
    decay = 0.2  # (1 + t) / (10 + t) is 0.1 and 0.18 for t = 0, 1; then decay caps it
    ema = WeightEMA(net, decay)
    expected = snapshot(net)
    rng = onp.random.RandomState(1)
    for t in range(4):
        X = np.array(rng.rand(8, 1, 32, 32).astype('float32'))
        y = np.array(rng.randint(0, 10, 8).astype('int32'))
        with autograd.record():  # training mode: BatchNorm's running statistics move too
            loss = model.loss(net(X), y, averaged=False)
        loss.backward()
        trainer.step(8)
        ema.update()
        d = min(decay, (1 + t) / (10 + t))
        now = snapshot(net)
        expected = {k: d * expected[k] + (1 - d) * now[k] for k in now}
    got = {k: a.asnumpy() for k, a in zip(net.collect_params(), ema.average, strict=True)}
    for k, want in expected.items():
        # float32: each update rounds once per operation (~6e-8 relative), four updates.
        scale = max(1.0, float(onp.abs(want).max()))
        assert abs(got[k] - want).max() <= 1e-6 * scale, k
    # The average lags the weights: it is not simply the last weights (nor the first).
    stats = [k for k in now if k.endswith('running_mean')]
    assert stats and all(abs(got[k] - now[k]).max() > 1e-4 for k in stats)
    assert ema.updates == 4 and ema.rate() == decay


def test_applied_swaps_the_average_in_and_back_and_save_writes_it(tmp_path):
    model = small_net()
    ema = WeightEMA(model.net, 0.5)
    own = snapshot(model.net)
    ema.average = [a + 1 for a in ema.average]
    X = np.array(onp.random.RandomState(2).rand(2, 1, 32, 32).astype('float32'))
    with ema.applied() as net:
        inside = snapshot(net)
        averaged_out = net(X).asnumpy()
    assert all(onp.array_equal(inside[k], own[k] + 1) for k in own)
    assert all(onp.array_equal(v, own[k]) for k, v in snapshot(model.net).items())
    path = str(tmp_path / 'ema.params')
    ema.save(path)
    other = small_net(seed=5)
    other.net.load_parameters(path)
    assert abs(other.net(X).asnumpy() - averaged_out).max() == 0
    # load takes the average back without touching the network's own weights.
    fresh = WeightEMA(model.net, 0.5)
    fresh.load(path)
    assert all(onp.array_equal(a.asnumpy(), b.asnumpy())
               for a, b in zip(fresh.average, ema.average, strict=True))
    assert all(onp.array_equal(v, own[k]) for k, v in snapshot(model.net).items())


def test_bad_decays_are_refused():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(UsageError, match='--ema must be a decay'):
            TrainConfig.from_recipe('book', ema=bad).validate()
    assert TrainConfig.from_recipe('book', ema=0.5).ema == 0.5


def test_the_budget_counts_the_extra_passes_of_ema_and_tta():
    """Per epoch two validation passes (weights, average); at the end four (each flipped)."""
    cfg = TrainConfig.from_recipe('book', ema=0.999, tta=True, budget=600, epochs=100)
    loop = types.SimpleNamespace(cfg=cfg, model=small_net(), steps=Steps(100 * 50, 50),
                                 val_loader=range(10), log=lambda s: None,
                                 elapsed=lambda: 20.0)
    loop.extensions = default_extensions(cfg, quiet=True)
    for ext in loop.extensions:
        ext.on_fit_start(loop)
    planner = next(e for e in loop.extensions if isinstance(e, BudgetPlanner))
    plans = planner.plans
    planner.first_plan(step_s=0.5, done=6, eval_batch_s=lambda: 0.2)
    # One pass: 10 batches of 0.2 s. Overhead 2 passes + 1 s for writing; final 4 passes.
    want = plan_steps(600, 20.0, 6, 50, 0.5, 2 * 2.0 + 1.0, 100 * 50, final_s=4 * 2.0)
    assert plans[0]['total_steps'] == want.total_steps
    assert plans[0]['final_s'] == 8.0 and plans[0]['epoch_overhead_s'] == 5.0
    plain = plan_steps(600, 20.0, 6, 50, 0.5, 2.0 + 1.0, 100 * 50)
    assert want.total_steps < plain.total_steps  # the passes did cost steps


@pytest.mark.slow
def test_a_run_with_ema_and_tta_resumes_exactly_and_ema_params_is_the_average(
        tmp_path, real_data_dir):
    val = ['--val-limit', '1000']
    args = ['train', '--recipe', 'fast-cpu', '--resize', '32', '--batch-size', '64',
            '--limit', '1280', '--epochs', '2', '--budget', 'off', '--ema', '0.99', '--tta',
            *val, '--data-dir', real_data_dir]
    base = str(tmp_path / 'base')
    cli(*args, '--out', base)
    rows = read_metrics(base)
    assert len(rows) == 2 and float(rows[-1]['ema_val_acc']) > 0.3
    assert rows[-1]['ema_val_acc'] != rows[-1]['val_acc'] or \
        rows[-1]['ema_val_loss'] != rows[-1]['val_loss']
    with open(os.path.join(base, 'summary.json')) as f:
        s = json.load(f)
    assert s['final_ema_val_acc'] == pytest.approx(float(rows[-1]['ema_val_acc']), abs=1e-5)
    # evaluate scores ema.params (the average) with flips as training's --tta did.
    proc = cli('evaluate', '--params', os.path.join(base, 'ema.params'), '--tta',
               '--data-dir', real_data_dir, '--limit', val[1])  # the run's test images
    acc = float(proc.stdout.split('test accuracy ')[1].split()[0])
    assert 'flip-averaged' in proc.stdout
    assert acc == pytest.approx(s['final_ema_val_acc_tta'], abs=1e-4)
    # Killed after epoch 1 and resumed: the average continues from its checkpoint.
    out = str(tmp_path / 'killed')
    saved, _ = kill_after_first_checkpoint(args, out)
    assert saved['extensions']['ema']['updates'] == 20  # 1280 / 64 steps in epoch 1
    cli(*args, '--out', out, '--resume')
    keys = ['epoch', 'val_acc', 'val_loss', 'ema_val_acc', 'ema_val_loss']
    assert [{k: r[k] for k in keys} for r in read_metrics(out)] == \
        [{k: r[k] for k in keys} for r in rows]
    with open(os.path.join(out, 'ema.params'), 'rb') as a, \
            open(os.path.join(base, 'ema.params'), 'rb') as b:
        assert a.read() == b.read()
