"""BatchNorm and ReLU fused into one oneDNN operator (densenet.modes.fused): the same
gradients, running statistics and outputs as the two layers, only where MXNet computes
the fused backward right."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as onp
from mxnet import autograd, np
from mxnet.gluon import nn

import densenet
from densenet import set_concat_mode
from densenet.deploy.inference import fp32_model
from densenet.modes import concat_mode, prepare_model
from densenet.modes.block_mode import retrace
from densenet.modes.fused import (
    FusedBatchNorm,
    FusedReLU,
    fusion_applies,
    is_fused,
    set_fused_bn_relu,
)
from densenet.system.mxcompat import cached_graph, leaves

from helpers import set_running_stats
from numerics import EPS32

FUSED_OP = '_contrib_BatchNormWithReLU'

# One child process, with oneDNN's AVX2 kernels on any CPU (where the fusion applies:
# fusion_applies): for each case, the fused and the unfused fast path take the same
# two SGD steps from the same weights; it prints their largest differences and, with
# DNNL_VERBOSE=1, oneDNN's calls of each case's fused run after a marker line.
_CHILD = r"""
import json, sys
import densenet, mxnet as mx, numpy as onp
from mxnet import autograd, gluon, np
from densenet.modes import prepare_model
from densenet.modes.fused import FusedBatchNorm

def run(case, fuse):
    _, name, side, channels, batch, kwargs, padded, memory_efficient = case
    mx.random.seed(4)
    model = densenet.get_model(name, in_channels=channels, num_classes=10, **kwargs)
    model.net(np.zeros((1, channels, side, side)))
    prepare_model(model, [mx.cpu()], hybridize=True, fuse=fuse, padded=padded,
                  memory_efficient=memory_efficient)
    trainer = gluon.Trainer(model.net.collect_params(), 'sgd', {'learning_rate': 0.01})
    rng = onp.random.RandomState(0)
    X = np.array(rng.uniform(size=(batch, channels, side, side)).astype('float32'))
    y = np.array(onp.arange(batch) % 10, dtype='int32')
    for _ in range(2):
        with autograd.record():
            loss = model.loss(model(X), y)
        loss.backward()
        trainer.step(1)
    fused = []
    model.net.apply(lambda b: fused.append(b.fuse_in_graph)
                    if isinstance(b, FusedBatchNorm) else None)
    params = [p.data().asnumpy() for p in model.net.collect_params().values()]
    out = model(X).asnumpy()
    assert all(onp.isfinite(p).all() for p in params) and onp.isfinite(out).all(), name
    return params, out, fused

for case in json.loads(sys.argv[1]):
    want, want_out, _ = run(case, False)
    print('case', case[0], flush=True)
    got, got_out, marks = run(case, True)
    print(json.dumps({
        'case': case[0], 'marked': sum(marks), 'pairs': len(marks),
        'params': max(float(abs(g - w).max() / max(abs(w).max(), 1e-30))
                      for g, w in zip(got, want)),
        'out': float(abs(got_out - want_out).max() / abs(want_out).max())}), flush=True)
"""

# (label, model, side, channels, batch, get_model arguments, padded, memory-efficient):
# the book's model, also memory-efficient (its BatchNorms run again in backward); a
# DenseNet-BC on its padded trace, also at 64x64, and on its hybridized graph, whose
# concatenations are numpy ones; DenseNet-121; d2l's ResNet-18.
_CASES = [('book', 'book', 96, 1, 4, {}, True, False),
          ('book-memory-efficient', 'book', 32, 1, 4, {}, True, True),
          ('bc', 'densenet_bc_100', 16, 3, 4, {'depth': 16}, True, False),
          ('bc-unpadded', 'densenet_bc_100', 16, 3, 4, {'depth': 16}, False, False),
          ('bc-64', 'densenet_bc_100', 64, 1, 4, {'depth': 16}, True, False),
          ('densenet121', 'densenet121', 32, 3, 2, {}, True, False),
          ('d2l_resnet18', 'd2l_resnet18', 32, 1, 4, {}, True, False)]


def _bnorm_calls(log):
    """oneDNN's BatchNorm calls with a fused ReLU in `log`: (pass, data layout) each."""
    calls = []
    for line in log.splitlines():
        fields = line.split(',')
        if line.startswith('dnnl_verbose,exec,cpu,batch_normalization,') and \
                any(f.startswith('flags:') and 'R' in f for f in fields):
            layout = next(f for f in fields if f.startswith('data_')).split(':')[3]
            calls.append((fields[5], layout))
    return calls


def test_fused_fast_path_trains_as_the_unfused_one_and_reads_blocked_inputs():
    """Two SGD steps on each model, fused and not: the same parameters (running
    statistics included) and outputs to a few float32 roundings (the same operations,
    in another operator). Every fused BatchNorm reads its input in oneDNN's blocked
    layout, the condition for MXNet's fused backward to read its ReLU mask right, and
    as many run as the rules of fused.py fuse: every pair that feeds a convolution
    or the stem's 3x3 max pool (not the head's, which feeds a global pool; d2l's
    ResNet-18 has one pair, its stem's, which feeds a residual block), but in
    DenseNet-BC's hybridized graph only those whose input is no numpy concatenation's
    or made from one (2 of 14). At 64x64 DenseNet-BC's global pooling hands its gradient
    back in another blocked layout than its input's (acdB8b)."""
    env = dict(os.environ, DNNL_MAX_CPU_ISA='AVX2', DNNL_VERBOSE='1')
    run = subprocess.run([sys.executable, '-c', _CHILD, json.dumps(_CASES)], env=env,
                         capture_output=True, text=True, check=True)
    logs = run.stdout.split('\ncase ')[1:]
    assert len(logs) == len(_CASES)
    steps = 2
    # (pairs, fused in the hybridized graph, fused BatchNorm calls a step, those run again
    # before their backward: a memory-efficient model's dense layers')
    expected = {'book': (21, 20, 20, 0), 'book-memory-efficient': (21, 20, 20, 16),
                'bc': (15, 2, 14, 0), 'bc-unpadded': (15, 2, 2, 0), 'bc-64': (15, 2, 14, 0),
                'densenet121': (121, 120, 120, 0), 'd2l_resnet18': (1, 0, 0, 0)}
    for log in logs:
        log, line = log.split('\n{', 1)  # the fused run's calls, then its differences
        result = json.loads('{' + line.splitlines()[0])
        name = result['case']
        # float32: a handful of roundings of each value (measured: equal bits)
        assert result['params'] <= 16 * EPS32 and result['out'] <= 16 * EPS32, result
        pairs, marked, calls, again = expected[name]
        assert (result['pairs'], result['marked']) == (pairs, marked), result
        bnorm = _bnorm_calls(log)
        forward = [layout for p, layout in bnorm if p == 'forward_training']
        backward = [layout for p, layout in bnorm if p == 'backward']
        assert len(backward) == steps * calls and len(forward) == steps * (calls + again), \
            (name, bnorm)
        assert all(layout != 'abcd' for layout in forward + backward), (name, bnorm)


def test_mxnet_misreads_the_relu_mask_of_a_plain_input():
    """Why a FusedBatchNorm fuses only a blocked input: fed the plain layout (a numpy
    operator's output; here the network's input) with a whole number of channel blocks,
    MXNet 1.9.1's fused backward reorders the input to its gradient's blocked layout
    but reads the ReLU mask of the forward pass as it is, and the gradients come out
    wrong. Marked as set_fused_bn_relu marks it, the layer computes them right."""
    def grads(force):
        mx.random.seed(0)
        net = nn.HybridSequential()
        net.add(nn.BatchNorm(), nn.Activation('relu'), nn.Conv2D(8, 3, padding=1))
        net.initialize(mx.init.Xavier())
        X = np.array(onp.random.RandomState(0).normal(size=(4, 16, 8, 8)).astype('float32'))
        net(X)
        if force is not None:
            set_fused_bn_relu(net)
            assert net[0].fuse_in_graph is False  # the network's input is plain
            net[0].fuse_in_graph = force
        net.hybridize(static_alloc=True, static_shape=True)
        X.attach_grad()
        with autograd.record():
            loss = (net(X) * np.arange(8).reshape(1, 8, 1, 1)).sum()
        loss.backward()
        return [X.grad.asnumpy()] + [p.grad().asnumpy() for p in net.collect_params().values()
                                     if p.grad_req != 'null']
    book = grads(None)
    for force, wrong in ((True, True), (False, False)):
        got = grads(force)
        far = [float(abs(g - w).max()) > 1e-3 * float(abs(w).max()) + 1e-6
               for g, w in zip(got, book, strict=True)]
        assert any(far) is wrong, (force, far)


def _book():
    mx.random.seed(0)
    model = densenet.DenseNet(arch=(2, 2))
    model(np.zeros((1, 1, 32, 32)))
    return model


def _ops(net, X):
    """The operators of `net`'s hybridized graph after a call on `X`."""
    net(X)
    return [n['op'] for n in json.loads(cached_graph(net).tojson())['nodes']]


def test_the_fast_path_fuses_where_it_applies_and_tracing_unfuses():
    """prepare_model fuses every BatchNorm -> ReLU pair where oneDNN uses AVX2 (and the
    hybridized graph runs the fused operator where fused.py's rules allow), the book's
    path none; concat_mode (exports, inference graphs) traces the two operators and
    restores the fusion; a numpy concatenation set afterwards unmarks the BatchNorms
    it feeds."""
    X = np.zeros((2, 1, 32, 32))
    model = prepare_model(_book(), [mx.cpu()], hybridize=True)
    assert is_fused(model.net) is fusion_applies()
    if fusion_applies():
        # the stem, two layers a block and the transition; not the head's pair, which
        # feeds the global pooling
        assert _ops(model.net, X).count(FUSED_OP) == 6
        assert _ops(model.net, X).count('Activation') == 1
        with concat_mode(model.net, None, hybridize=True):
            assert not is_fused(model.net)
            assert FUSED_OP not in _ops(model.net, X)
        assert _ops(model.net, X).count(FUSED_OP) == 6
        set_concat_mode(model, 'numpy')
        marks = [b.fuse_in_graph for b in model.net[1].net[1] if isinstance(b, FusedBatchNorm)]
        assert marks == [False]  # its input is now a numpy concatenation
        # as is the transition's, and the transition's convolution, reading the plain
        # layout, writes it: only the stem's and the first layer's stay
        assert _ops(model.net, X).count(FUSED_OP) == 2
    book = prepare_model(_book(), [mx.cpu()], hybridize=False)
    assert not is_fused(book.net)
    assert not any(type(b) in (FusedBatchNorm, FusedReLU) for b in leaves(book.net))


def test_inference_graphs_of_a_fused_model_have_the_two_operators():
    """The fp32 graph of a fused DenseNet-BC (its padded inference trace, built outside
    concat_mode) folds every BatchNorm as it does unfused: no fused operator, the same
    operators and values."""
    model = densenet.get_model('densenet_bc_100', depth=16, in_channels=3)
    model.net(np.zeros((1, 3, 32, 32)))
    set_running_stats(model.net, seed=3)
    X = onp.random.RandomState(2).uniform(size=(2, 3, 32, 32)).astype('float32')
    graphs = []
    for fuse in (False, True):
        set_fused_bn_relu(model.net, fuse, lambda block: True)
        graphs.append(fp32_model(model, (1, 3, 32, 32)))
    ops = [[n['op'] for n in json.loads(g.graph.symbol.tojson())['nodes']] for g in graphs]
    assert FUSED_OP not in ops[1] and ops[0] == ops[1]
    assert onp.array_equal(graphs[0].predict(X), graphs[1].predict(X))


def test_unfusing_restores_the_book_layers():
    """set_fused_bn_relu switches classes in place both ways: the same parameter names,
    the book's classes back; cast to float64 (no oneDNN kernel), a fused layer is no
    longer marked for one operator and computes as the two."""
    model = _book()
    names = list(model.net.collect_params())
    assert set_fused_bn_relu(model.net, True, lambda block: True) == 7
    assert list(model.net.collect_params()) == names
    assert any(b.fuse_in_graph for b in leaves(model.net) if isinstance(b, FusedBatchNorm))
    model.net.cast('float64')
    assert not any(b.fuse_in_graph for b in leaves(model.net)
                   if isinstance(b, FusedBatchNorm))
    retrace(model.net)
    model.net.hybridize()
    X = np.array(onp.random.RandomState(1).uniform(size=(2, 1, 32, 32)), dtype='float64')
    with autograd.predict_mode():
        fused = model(X).asnumpy()
    assert set_fused_bn_relu(model.net, False) == 7
    assert not any(type(b) in (FusedBatchNorm, FusedReLU) for b in leaves(model.net))
    assert onp.array_equal(model(X).asnumpy(), fused)
