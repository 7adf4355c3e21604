"""memory_efficient dense blocks: same outputs, gradients and BN statistics, imperatively
and on the fast path (MXNet's recomputing graph executor)."""
import json
import re

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from densenet import DenseNet, densenet_bc, set_memory_efficient
from densenet.system import runtime

from helpers import built
from numerics import beyond_rounding, perturbed, worst

PATHS = ('imperative', 'fast')


def _step(make, memory_efficient, dtype, shape, noise=False, path='imperative'):
    """Outputs (of the training step, and in inference mode after it), gradients and
    running statistics after one training step. The reference is the standard
    imperative (book-literal) path; `path` 'fast' hybridizes the model.

    `noise`: the input is perturbed by rounding-sized noise (numerics.perturbed).
    """
    mx.random.seed(1)
    model, X = built(make, shape, dtype, noise)
    set_memory_efficient(model.net, memory_efficient)
    if path == 'fast' and memory_efficient:
        model.net.hybridize()
    y = np.arange(shape[0]) % 10
    with autograd.record():
        out = model(X)
        loss = model.loss(out, y)
    loss.backward()
    params = list(model.net.collect_params().values())
    grads = [p.grad().asnumpy() for p in params if p.grad_req != 'null']
    stats = [p.data().asnumpy() for p in params if p.grad_req == 'null']
    return [out.asnumpy(), model(X).asnumpy()], grads, stats


MODELS = [
    (lambda: DenseNet(arch=(2, 2)), (4, 1, 32, 32)),
    (lambda: densenet_bc(depth=22, growth_rate=4, in_channels=1), (4, 1, 16, 16)),
]


def _float32_mismatches(make, shape, path='imperative'):
    """{'outputs'|'gradients'|'statistics': indices beyond rounding} for float32."""
    std, std_noisy = (_step(make, False, 'float32', shape, noise=n) for n in (False, True))
    me = _step(make, True, 'float32', shape, path=path)
    parts = ('outputs', 'gradients', 'statistics')
    return {k: beyond_rounding(me[i], std[i], std_noisy[i]) for i, k in enumerate(parts)}


def test_the_engine_is_naive_on_this_cpu_build():
    assert runtime.naive_engine()


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('make,shape', MODELS)
def test_same_outputs_gradients_and_running_statistics(make, shape, path):
    std64 = _step(make, False, 'float64', shape)
    me64 = _step(make, True, 'float64', shape, path=path)
    for part in range(3):  # the same math: identical in float64
        assert worst(std64[part], me64[part]) <= 1e-12
    # In float32 the paths round differently (the recomputation runs other
    # kernels, e.g. AVX2's, in another order), and these small batches are ill
    # conditioned: on an AVX2 CPU the last layers' gradients of the BC case
    # differ by 5e-4 (4e-3 of their size), while an input change of 8 ulps
    # moves the standard path's own gradients as far. So float32 is held to
    # what rounding explains (numerics.beyond_rounding).
    assert _float32_mismatches(make, shape, path) == {'outputs': [], 'gradients': [],
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
    from densenet.modes.block_mode import _Recompute
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

    from densenet.modes.block_mode import _Recompute
    _step(MODELS[0][0], True, 'float32', MODELS[0][1])
    gc.collect()
    holding = [f for f in gc.get_objects()
               if isinstance(f, _Recompute) and f.saved_tensors]
    assert holding == []


def test_refusals():
    with pytest.raises(ValueError, match='dropout'):
        set_memory_efficient(densenet_bc(depth=22, dropout=0.2).net)
    with pytest.raises(ValueError, match='dropout'):
        densenet_bc(depth=22, dropout=0.2, memory_efficient=True)


def test_constructor_argument_and_method():
    """DenseNetBC(memory_efficient=True) builds blocks in that mode; its method, and
    set_memory_efficient on any model or network, switch it on a built model and back."""
    from densenet import DenseBlock
    from densenet.modes.block_mode import dense_blocks, mode_of
    assert not mode_of(DenseBlock(2, 4)).memory_efficient
    bc = densenet_bc(depth=22, growth_rate=4, memory_efficient=True)
    assert all(mode_of(b).memory_efficient for b in dense_blocks(bc.net))
    assert bc.set_memory_efficient(False) is bc
    assert not any(mode_of(b).memory_efficient for b in dense_blocks(bc.net))
    model = DenseNet(arch=(2, 2))
    assert set_memory_efficient(model) is model
    assert all(mode_of(b).memory_efficient for b in dense_blocks(model.net))
    set_memory_efficient(model, False)
    assert not any(mode_of(b).memory_efficient for b in dense_blocks(model.net))
    # Back in the book's mode each block is the book's DenseBlock, with nothing added.
    assert all(type(b) is DenseBlock and 'block_mode' not in vars(b)
               for b in dense_blocks(model.net))


def _executors(memory_efficient, side=64, batch=64):
    from densenet.modes.mirror import GraphExecutors
    model = DenseNet()
    X = np.random.uniform(size=(batch, 1, side, side))
    model(X)
    set_memory_efficient(model.net, memory_efficient)
    return GraphExecutors(model.net), X


def _recomputed(executors):
    """How many nodes of the traced graph are marked for recomputation."""
    return sum(1 for n in json.loads(executors.sym.tojson())['nodes']
               if n.get('attrs', {}).get('__force_mirroring__') == 'True')


def test_the_fast_path_recomputes_and_plans_less_memory():
    """The memory-efficient graph marks every dense layer's concatenation, BatchNorm and
    ReLU, MXNet's executor mirrors them into backward, and its planner allocates less
    than for the standard graph (the same executor, nothing marked)."""
    std, X = _executors(False)
    me, _ = _executors(True)
    assert _recomputed(std) == 0
    # The book model: 16 layers of BatchNorm and ReLU, 12 joined concatenations.
    assert _recomputed(me) == 16 * 2 + 12
    mirrored = re.findall(r'Name=(\S+)_mirror\n', me.executor(X).debug_str())
    assert len(set(mirrored)) == _recomputed(me)
    assert me.planned_mb(X) < std.planned_mb(X)


def test_the_executor_follows_the_parameters():
    """A cast (new parameter arrays) binds a new executor; the same arrays reuse it."""
    me, X = _executors(True, side=32, batch=2)
    first = me.executor(X)
    assert me.executor(X) is first
    me.net.cast('float64')
    X64 = X.astype('float64')
    assert me.executor(X64) is not first
    out = me.executor(X64).forward(is_train=False)[0]
    assert out.dtype == onp.float64


def test_training_with_a_trainer_on_the_fast_path():
    """gluon.Trainer takes the executor's gradients (not refused as stale), and two SGD
    steps end where the standard path's do (float32: the same rounding bound)."""
    def trained(memory_efficient, noise=False):
        mx.random.seed(3)
        model = DenseNet(arch=(2, 2))
        X = np.random.uniform(size=(8, 1, 32, 32))
        model(X)
        if noise:
            X = perturbed(X)
        if memory_efficient:
            set_memory_efficient(model)
        model.net.hybridize()
        trainer = gluon.Trainer(model.net.collect_params(), 'sgd',
                                {'learning_rate': 0.1, 'momentum': 0.9})
        y = np.arange(8) % 10
        for _ in range(2):
            with autograd.record():
                loss = model.loss(model(X), y)
            loss.backward()
            trainer.step(1)
        return [p.data().asnumpy() for p in model.net.collect_params().values()]
    std, me, noisy = trained(False), trained(True), trained(False, noise=True)
    assert beyond_rounding(me, std, noisy) == []
    assert worst(me, trained(True)) == 0  # deterministic
