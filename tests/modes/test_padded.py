"""The padded trace (densenet.modes.padded): a growth rate of 12 trains on the CPU's fast
path in whole channel blocks, with the book's values, gradients and running statistics."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np
from mxnet.gluon import nn

from densenet import DenseBlock, DenseNet, densenet_bc
from densenet.models.variants import densenet as plain_densenet
from densenet.modes import mirror, padded, prepare_model
from densenet.modes.padded import (
    Channels,
    PaddedStat,
    Unpaddable,
    needs_padding,
    trace_frozen,
    trace_padded,
)

from helpers import built, set_running_stats
from numerics import beyond_rounding, perturbed, worst

MODELS = {
    'bc': (lambda: densenet_bc(depth=16, growth_rate=12), (4, 3, 16, 16)),
    'plain': (lambda: plain_densenet(depth=10, growth_rate=12), (4, 3, 16, 16)),
}


def _evaluated(channels, x, axis, fill):
    """`channels.spread` of the numpy array `x`, evaluated."""
    sym = channels.spread(mx.sym, mx.sym.var('x').as_np_ndarray(), x.shape, axis, fill,
                          'float32')
    return sym.as_nd_ndarray().eval(x=mx.nd.array(x))[0].asnumpy()


def test_spread_puts_the_real_channels_where_positions_says():
    ch = Channels(first=20, first_pad=12, layers=3, growth=12, growth_pad=4)
    assert (ch.real, ch.padded) == (56, 80)
    v = onp.arange(1, ch.real + 1, dtype='float32')
    for fill in (0, 1):
        got = _evaluated(ch, v, 0, fill)
        assert got.shape == (ch.padded,)
        assert (got[ch.positions()] == v).all()
        others = onp.setdiff1d(onp.arange(ch.padded), ch.positions())
        assert len(others) == 24 and (got[others] == fill).all()
        assert list(others[:3]) == [20, 21, 22] and list(others[-4:]) == [76, 77, 78, 79]
    w = onp.random.RandomState(0).uniform(size=(5, ch.real, 3, 3)).astype('float32')
    got = _evaluated(ch, w, 1, 0)
    assert got.shape == (5, ch.padded, 3, 3)
    assert (got[:, ch.positions()] == w).all() and got.sum() == pytest.approx(w.sum(), 1e-5)
    assert (_evaluated(Channels(7), v[:7], 0, 1) == v[:7]).all()  # nothing to spread


def _trained(make, shape, fast, dtype='float32', noise=False):
    """Outputs (two training steps, then inference), and every parameter and running
    statistic after two SGD steps with momentum, from running statistics that are not
    the initial ones (the padded trace must read them, not start afresh)."""
    mx.random.seed(5)
    model, X = built(make, shape, dtype, noise)
    set_running_stats(model.net, seed=2)
    if fast:
        prepare_model(model, [mx.cpu()], hybridize=True)
    trainer = gluon.Trainer(model.net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'momentum': 0.9})
    y = np.arange(shape[0]) % 10
    outs = []
    for _ in range(2):
        with autograd.record():
            out = model(X)
            loss = model.loss(out, y)
        loss.backward()
        trainer.step(1)
        outs.append(out.asnumpy())
    outs.append(model(X).asnumpy())
    values = outs + [p.data().asnumpy() for p in model.net.collect_params().values()]
    return values, (model, X)


@pytest.mark.parametrize('multiple', [8, 16])  # AVX2's channel block, and AVX-512's
@pytest.mark.parametrize('name', sorted(MODELS))
def test_the_fast_path_trains_a_growth_rate_of_12_padded_with_the_books_values(
        name, multiple, monkeypatch):
    monkeypatch.setattr(padded, 'whole_blocks', lambda: multiple)
    make, shape = MODELS[name]
    fast64, (model, X) = _trained(make, shape, True, 'float64')
    book64, _ = _trained(make, shape, False, 'float64')
    # It took the padded trace: every BatchNorm of its graph is over whole blocks.
    executors = model.net.__dict__['_graph_executors']
    assert executors.stats
    aux = [a.shape[0] for a in executors.executor(X).aux_arrays]
    assert aux and all(c % multiple == 0 for c in aux)
    assert any(c % 16 for c in aux) == (multiple == 8)
    assert worst(fast64, book64) <= 1e-12  # the same math: zeros add nothing
    # float32 rounds otherwise (oneDNN's blocked kernels): held to what rounding explains.
    fast, _ = _trained(make, shape, True)
    book, _ = _trained(make, shape, False)
    noisy, _ = _trained(make, shape, False, noise=True)
    assert beyond_rounding(fast, book, noisy) == []


def test_the_running_statistics_come_back_from_the_padded_graph(monkeypatch):
    """Without the copy back after backward the model's statistics stay as they were,
    and the inference output and statistics leave the book's far behind."""
    make, shape = MODELS['bc']
    book, _ = _trained(make, shape, False, 'float64')
    monkeypatch.setattr(PaddedStat, 'store', lambda self, padded: None)
    broken, _ = _trained(make, shape, True, 'float64')
    assert worst(broken[:2], book[:2]) <= 1e-12  # the training outputs do not depend on it
    assert worst([broken[2]], [book[2]]) > 1e-3  # inference reads the statistics


def test_networks_the_trace_does_not_pad():
    """Whole blocks already (the book's model): no padding, the usual graph; a layer it
    cannot spread: no padding either, with the reason."""
    book = DenseNet()  # widths 64 to 248, all multiples of 8
    book(np.zeros((1, 1, 96, 96)))
    assert not needs_padding(book.net)
    odd = nn.HybridSequential()
    odd.add(nn.Conv2D(24, 3, padding=1), DenseBlock(2, 12),
            nn.Activation('sigmoid'),  # sigmoid(0) is not 0
            nn.GlobalAvgPool2D(), nn.Dense(10))
    odd.initialize()
    odd(np.zeros((1, 3, 16, 16)))
    assert not needs_padding(odd)
    with pytest.raises(Unpaddable, match='Activation'):
        trace_padded(odd, mx.sym.var('data').as_np_ndarray())


def test_a_fresh_model_trains_padded_from_its_second_step():
    """Before its first call a model's shapes are unknown: that step runs the usual graph,
    the next ones the padded trace, and the values are the book's all along."""
    def fresh(fast, noise=False):
        mx.random.seed(4)
        model = densenet_bc(depth=16, growth_rate=12)
        if fast:
            prepare_model(model, [mx.cpu()], hybridize=True)
        trainer = gluon.Trainer(model.net.collect_params(), 'sgd', {'learning_rate': 0.1})
        X = np.random.uniform(size=(4, 3, 16, 16))
        if noise:
            X = perturbed(X)
        y = np.arange(4) % 10
        padded = []
        for _ in range(2):
            with autograd.record():
                loss = model.loss(model(X), y)
            loss.backward()
            trainer.step(1)
            padded.append('_graph_executors' in model.net.__dict__)
        return padded, [p.data().asnumpy() for p in model.net.collect_params().values()]
    (padded, fast), (_, book), (_, noisy) = fresh(True), fresh(False), fresh(False, True)
    assert padded == [False, True]
    assert beyond_rounding(fast, book, noisy) == []


def _bc_step(fast, dtype='float64', passes=('grad', 'plain', 'plain'), grad_req='write'):
    """Gradients (the batch's first) after one recorded step of several passes: 'grad'
    a batch that wants its gradient, 'plain' one that does not."""
    mx.random.seed(6)
    model = densenet_bc(depth=16, growth_rate=12)
    shape = (4, 3, 16, 16)
    model(np.zeros(shape))
    model.net.cast(dtype)
    for p in model.net.collect_params().values():
        if p.grad_req != 'null':
            p.grad_req = grad_req
    if fast:
        prepare_model(model, [mx.cpu()], hybridize=True)
    with autograd.record():  # a first step (fast: the padded trace chosen), on both paths
        model.loss(model(np.zeros(shape, dtype=dtype)), np.zeros(4)).backward()
    model.net.collect_params().zero_grad()
    Xs = [np.random.uniform(size=shape).astype(dtype) for _ in passes]
    for X, kind in zip(Xs, passes, strict=True):
        if kind == 'grad':
            X.attach_grad()
    y = np.arange(4) % 10
    with autograd.record():
        loss = sum(model.loss(model(X), y) for X in Xs)
    loss.backward()
    params = model.net.collect_params().values()
    first = [Xs[0].grad.asnumpy()] if passes[0] == 'grad' else []
    return first + [p.grad().asnumpy() if p.grad_req != 'null' else p.data().asnumpy()
                    for p in params], model


def test_what_the_executor_cannot_compute_runs_the_usual_graph(monkeypatch):
    """A batch that wants its gradient, and a pass while the executor holds one whose
    backward has not run (the same batch shape or another), take the hybridized graph:
    the book's gradients and running statistics all the same."""
    forward, passes = mirror._GraphStep.forward, []

    def counted(self, *inputs):
        passes.append(inputs[-1].shape)
        return forward(self, *inputs)
    monkeypatch.setattr(mirror._GraphStep, 'forward', counted)
    fast, _ = _bc_step(True)
    assert passes == [(4, 3, 16, 16)] * 2  # the warm-up step, and the middle pass
    book, _ = _bc_step(False)
    assert float(abs(book[0]).max()) > 0
    assert worst(fast, book) <= 1e-12


def test_gradients_kept_with_add_take_the_usual_graph():
    """MXNet's autograd.Function cannot add to a gradient: accumulating ones stay off the
    executor, and add up as on the book's path."""
    fast, _ = _bc_step(True, passes=('plain', 'plain'), grad_req='add')
    book, _ = _bc_step(False, passes=('plain', 'plain'), grad_req='add')
    assert worst(fast, book) <= 1e-12


def test_a_cast_or_a_new_head_traces_the_padded_graph_again():
    _, model = _bc_step(True, 'float32', passes=('plain',))
    model.reset_classifier(5)
    model.net.cast('float64')
    X = np.random.uniform(size=(4, 3, 16, 16)).astype('float64')
    with autograd.record():
        out = model(X)
        model.loss(out, np.arange(4) % 5).backward()
    assert out.shape == (4, 5) and out.dtype == onp.float64
    assert '_graph_executors' in model.net.__dict__
    assert float(abs(model.net[-1].weight.grad()).max()) > 0  # the new head trained


def test_prepare_model_can_leave_the_padded_trace_off():
    model = densenet_bc(depth=16, growth_rate=12)
    X = np.random.uniform(size=(4, 3, 16, 16))
    model(X)
    prepare_model(model, [mx.cpu()], hybridize=True, padded=False)
    with autograd.record():
        model.loss(model(X), np.arange(4) % 10).backward()
    assert '_graph_executors' not in model.net.__dict__
    prepare_model(model, [mx.cpu()], hybridize=True)
    with autograd.record():
        model.loss(model(X), np.arange(4) % 10).backward()
    assert '_graph_executors' in model.net.__dict__


def test_training_joins_each_layers_input_at_once_and_inference_chains():
    """The training trace joins the block's input and every new feature so far in one
    concatenation per layer, so that no concatenation reads another; the inference
    trace chains two-input concatenations, each reading the one before it."""
    import json
    net = built(lambda: densenet_bc(depth=22, growth_rate=12), (1, 3, 16, 16))[0].net
    data = mx.sym.var('data').as_np_ndarray()
    for (out, _), frozen in ((trace_padded(net, data, 8), False),
                             (trace_frozen(net, data, 8), True)):
        nodes = json.loads(out.as_nd_ndarray().tojson())['nodes']
        concats = [i for i, n in enumerate(nodes) if n['op'] == 'Concat']
        arity = [int(nodes[i]['attrs']['num_args']) for i in concats]
        assert arity == ([2] * 9 if frozen else [2, 3, 4] * 3)  # 3 blocks of 3 layers
        fed = [[nodes[e[0]]['op'] == 'Concat' for e in nodes[i]['inputs']] for i in concats]
        if frozen:  # each but a block's first reads the one before it, then new features
            assert fed == [[False, False], [True, False], [True, False]] * 3
        else:
            assert not any(any(f) for f in fed)
