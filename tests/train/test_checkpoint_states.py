"""Optimizer states of a checkpoint go back to the parameters they belong to, whatever
Gluon named the parameters in the process that resumes."""
import mxnet as mx
import pytest
from mxnet import autograd, gluon, np

from densenet import DenseNet
from densenet.errors import UsageError
from densenet.train.config import TrainConfig
from densenet.train.loop import load_states
from densenet.train.run_folder import STATES_ORDER
from densenet.train.setup import make_trainer, trained_params


def _model():
    model = DenseNet(arch=(4, 4), growth_rate=8)
    model.net(np.zeros((2, 1, 32, 32)))
    return model


def _step(model, trainer, X, y):
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(model.net(X), y).mean()
    loss.backward()
    trainer.step(1)


def _copy(src, dst):
    for a, b in zip(src.net.collect_params().values(), dst.net.collect_params().values(),
                    strict=True):
        b.set_data(a.data().copy())


def test_states_follow_their_parameters_whatever_their_names(tmp_path):
    """States saved in the network's order load into a model whose Gluon names sort
    differently (a new process's counters): one more step from equal weights and equal
    momenta gives equal weights."""
    _model()  # the names of the next models carry larger counters (conv2d10 < conv2d9)
    cfg = TrainConfig(momentum=0.9, lr=0.1)
    old_model, new_model = _model(), _model()
    names = [p.name for p in trained_params(old_model, cfg)]
    assert sorted(names) != names, 'names sort as the network: the order is not exercised'
    mx.random.seed(1)
    X, y = np.random.uniform(size=(8, 1, 32, 32)), np.array([0, 1, 2, 3, 4, 5, 6, 7])
    old = make_trainer(old_model, cfg, 'device')
    _step(old_model, old, X, y)
    old.save_states(str(tmp_path / 'c.states'))
    _copy(old_model, new_model)
    new = make_trainer(new_model, cfg, 'device')
    load_states(new, {'stem': str(tmp_path / 'c'), 'states_order': STATES_ORDER})
    _step(old_model, old, X, y)
    _step(new_model, new, X, y)
    for a, b in zip(old_model.net.collect_params().values(),
                    new_model.net.collect_params().values(), strict=True):
        assert (a.data() == b.data()).all(), a.name


def test_states_in_another_order_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r'c\.states: optimizer states in another order '
                                         r'than this version writes; start the run again '
                                         r'with --overwrite'):
        load_states(None, {'stem': str(tmp_path / 'c')})
