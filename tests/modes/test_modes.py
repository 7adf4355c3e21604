"""Modes are switched on the model they are asked for, or for a `with` block only."""
import mxnet as mx
import numpy as onp
from mxnet import autograd, np

from densenet import DenseNet, set_concat_mode
from densenet.deploy import Predictor
from densenet.deploy.export import export_mxnet
from densenet.deploy.inference import fp32_model, int8_model
from densenet.modes.block_mode import BlockMode, concat_mode, dense_blocks, mode_of
from densenet.system.mxcompat import is_hybridized

from helpers import set_running_stats

SHAPE = (4, 1, 32, 32)


def _state(model):
    """What a caller could notice: modes, hybridization, one training step's gradients
    and the outputs after it (the step updates BatchNorm's running statistics)."""
    X = np.array(onp.random.RandomState(0).uniform(size=SHAPE).astype('float32'))
    with autograd.record():
        loss = model.loss(model(X), np.array([1, 2, 3, 4]))
    loss.backward()
    grads = [p.grad().asnumpy() for p in model.net.collect_params().values()
             if p.grad_req != 'null']
    return ([mode_of(b) for b in dense_blocks(model.net)], is_hybridized(model.net),
            model(X).asnumpy(), grads)


def _model():
    mx.random.seed(0)
    model = DenseNet(arch=(2, 2))
    model(np.zeros(SHAPE))
    set_running_stats(model.net, seed=1)
    return model


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    assert onp.array_equal(a[2], b[2])
    assert all(onp.array_equal(x, y) for x, y in zip(a[3], b[3], strict=True))


def test_export_and_inference_leave_the_model_as_it_was(tmp_path):
    """After each, `model` still equals `untouched` (each check is one step on both)."""
    untouched, model = _model(), _model()
    first = _state(untouched)
    assert first[0] == [BlockMode()] * 2 and first[1] is False  # the book's imperative path
    _same(_state(model), first)
    export_mxnet(model, str(tmp_path), input_shape=SHAPE)
    _same(_state(model), _state(untouched))
    images = (onp.random.RandomState(0).rand(64, 28, 28) * 255).astype('uint8')
    int8_model(model, images, input_shape=SHAPE)
    _same(_state(model), _state(untouched))
    fast = fp32_model(model, input_shape=SHAPE)
    assert isinstance(fast, Predictor) and fast.precision == 'fp32'
    X = np.array(onp.random.RandomState(1).uniform(size=SHAPE).astype('float32'))
    assert onp.abs(fast(X).asnumpy() - model(X).asnumpy()).max() <= 1e-5  # a true copy
    _same(_state(model), _state(untouched))


def test_concat_mode_restores_modes_and_hybridization():
    model = _model()
    set_concat_mode(model.net, 'legacy')
    with concat_mode(model.net, 'numpy', hybridize=True):
        assert is_hybridized(model.net)
        assert [mode_of(b) for b in dense_blocks(model.net)] == [BlockMode(), BlockMode()]
        model(np.zeros(SHAPE))
    assert not is_hybridized(model.net)
    assert [mode_of(b) for b in dense_blocks(model.net)] == [BlockMode('legacy')] * 2


def test_fast_concat_is_chosen_by_growth_rate():
    """oneDNN's concat on the fast path only where it trains (growth a multiple of 16)."""
    from densenet import get_model
    from densenet.modes.block_mode import fast_concat_mode, growth_rates
    assert growth_rates(DenseNet().net) == [32] * 4
    assert fast_concat_mode(DenseNet().net) == 'legacy'
    assert fast_concat_mode(get_model('densenet121').net) == 'legacy'
    bc = get_model('densenet_bc_100', depth=40)
    assert growth_rates(bc.net) == [12] * 3 and fast_concat_mode(bc.net) == 'numpy'
    assert fast_concat_mode(get_model('densenet_bc_100', depth=40, growth_rate=16).net) == \
        'legacy'
