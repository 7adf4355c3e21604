"""memory_efficient dense blocks: same outputs, gradients and BN statistics."""
import mxnet as mx
import pytest
from mxnet import autograd, np

from densenet import DenseNet, densenet_bc, runtime, set_memory_efficient
from densenet.training import TrainConfig


def _step(make, memory_efficient, dtype, shape):
    mx.random.seed(1)
    model = make()
    X = np.random.uniform(size=shape)
    model(X)
    if dtype == 'float64':
        model.net.cast('float64')
        X = X.astype('float64')
    set_memory_efficient(model.net, memory_efficient)
    y = np.arange(shape[0]) % 10
    with autograd.record():
        loss = model.loss(model(X), y)
    loss.backward()
    params = list(model.net.collect_params().values())
    grads = [p.grad().asnumpy() for p in params if p.grad_req != 'null']
    stats = [p.data().asnumpy() for p in params if p.grad_req == 'null']
    return model(X).asnumpy(), grads, stats


def _worst(a, b):
    return max(float(abs(x - z).max()) for x, z in zip(a, b))


MODELS = [
    (lambda: DenseNet(arch=(2, 2)), (4, 1, 32, 32)),
    (lambda: densenet_bc(depth=22, growth_rate=4, in_channels=1), (4, 1, 16, 16)),
]


def test_the_engine_is_naive_on_this_cpu_build():
    assert runtime.naive_engine()


@pytest.mark.parametrize('make,shape', MODELS)
def test_same_outputs_gradients_and_running_statistics(make, shape):
    std64, me64 = (_step(make, me, 'float64', shape) for me in (False, True))
    assert abs(std64[0] - me64[0]).max() <= 1e-12
    assert _worst(std64[1], me64[1]) <= 1e-12
    assert _worst(std64[2], me64[2]) <= 1e-12
    std32, me32 = (_step(make, me, 'float32', shape) for me in (False, True))
    assert abs(std32[0] - me32[0]).max() <= 1e-5
    assert _worst(std32[1], me32[1]) <= 1e-5
    assert _worst(std32[2], me32[2]) <= 1e-5
    # The statistics did move: BatchNorm updates them in its backward pass.
    fresh = _step(make, False, 'float32', shape)[2]
    assert _worst(fresh, [0 * s for s in fresh]) > 0


def test_backward_releases_the_stored_features():
    """MXNet keeps each autograd.Function after backward; it must not keep the features."""
    import gc
    from densenet.blocks import _Recompute
    _step(MODELS[0][0], True, 'float32', MODELS[0][1])
    gc.collect()
    holding = [f for f in gc.get_objects()
               if isinstance(f, _Recompute) and f.saved_tensors]
    assert holding == []


def test_refusals():
    with pytest.raises(ValueError, match='dropout'):
        set_memory_efficient(densenet_bc(depth=22, dropout=0.2).net)
    model = DenseNet(arch=(2,))
    model(np.zeros((1, 1, 16, 16)))
    set_memory_efficient(model.net)
    model.net.hybridize()
    with pytest.raises(ValueError, match='without hybridize'):
        with autograd.record():
            model(np.zeros((1, 1, 16, 16)))
    with pytest.raises(ValueError, match='--no-hybridize'):
        TrainConfig(memory_efficient=True).validate()
