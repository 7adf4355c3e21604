"""memory_efficient dense blocks: same outputs, gradients and BN statistics."""
import mxnet as mx
import pytest
from mxnet import autograd, np

from densenet import DenseNet, densenet_bc, runtime, set_memory_efficient
from densenet.training import TrainConfig
from numerics import perturbed, beyond_rounding, worst


def _step(make, memory_efficient, dtype, shape, noise=False):
    """Outputs, gradients and running statistics after one training step.

    `noise`: the input is perturbed by rounding-sized noise (numerics.perturbed).
    """
    mx.random.seed(1)
    model = make()
    X = np.random.uniform(size=shape)
    model(X)
    if dtype == 'float64':
        model.net.cast('float64')
        X = X.astype('float64')
    if noise:
        X = perturbed(X)
    set_memory_efficient(model.net, memory_efficient)
    y = np.arange(shape[0]) % 10
    with autograd.record():
        loss = model.loss(model(X), y)
    loss.backward()
    params = list(model.net.collect_params().values())
    grads = [p.grad().asnumpy() for p in params if p.grad_req != 'null']
    stats = [p.data().asnumpy() for p in params if p.grad_req == 'null']
    return [model(X).asnumpy()], grads, stats


MODELS = [
    (lambda: DenseNet(arch=(2, 2)), (4, 1, 32, 32)),
    (lambda: densenet_bc(depth=22, growth_rate=4, in_channels=1), (4, 1, 16, 16)),
]


def _float32_mismatches(make, shape):
    """{'outputs'|'gradients'|'statistics': indices beyond rounding} for float32."""
    std, me, std_noisy = (_step(make, m, 'float32', shape, noise=n)
                          for m, n in ((False, False), (True, False), (False, True)))
    parts = ('outputs', 'gradients', 'statistics')
    return {k: beyond_rounding(me[i], std[i], std_noisy[i]) for i, k in enumerate(parts)}


def test_the_engine_is_naive_on_this_cpu_build():
    assert runtime.naive_engine()


@pytest.mark.parametrize('make,shape', MODELS)
def test_same_outputs_gradients_and_running_statistics(make, shape):
    std64, me64 = (_step(make, me, 'float64', shape) for me in (False, True))
    for part in range(3):  # the same math: identical in float64
        assert worst(std64[part], me64[part]) <= 1e-12
    # In float32 the paths round differently (the recomputation runs other
    # kernels, e.g. AVX2's, in another order), and these small batches are ill
    # conditioned: on an AVX2 CPU the last layers' gradients of the BC case
    # differ by 5e-4 (4e-3 of their size), while an input change of 8 ulps
    # moves the standard path's own gradients as far. So float32 is held to
    # what rounding explains (numerics.beyond_rounding).
    assert _float32_mismatches(make, shape) == {'outputs': [], 'gradients': [],
                                                'statistics': []}
    # The statistics did move: BatchNorm updates them in its backward pass.
    fresh = _step(make, False, 'float32', shape)[2]
    assert worst(fresh, [0 * s for s in fresh]) > 0


@pytest.mark.parametrize('make,shape', MODELS)
def test_the_float32_bound_catches_a_wrong_recomputed_value(make, shape, monkeypatch):
    """One recomputed input value off by 0.01 (activations are of order 1) fails the check.

    Measured margins: the book model's gradients move 750 times, the BC
    model's 17 times the rounding spread (AVX2 kernels).
    """
    from densenet.modes import _Recompute
    backward, done = _Recompute.backward, []

    def wrong(self, dY):
        if not done:  # the first layer to run backward: the model's last
            done.append(True)
            with mx.util.np_shape(True), mx.util.np_array(True):
                xs = [x.copy() for x in self.saved_tensors]
                xs[-1][0, 0, 0, 0] += 0.01
            self.saved_tensors = tuple(xs)
        return backward(self, dY)
    monkeypatch.setattr(_Recompute, 'backward', wrong)
    assert _float32_mismatches(make, shape)['gradients'] != []


def test_backward_releases_the_stored_features():
    """MXNet keeps each autograd.Function after backward; it must not keep the features."""
    import gc
    from densenet.modes import _Recompute
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
