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
from densenet.modes import concat_mode, prepare_model
from densenet.modes.block_mode import retrace
from densenet.modes.fused import BatchNormReLU, FusedReLU, is_fused, set_fused_bn_relu
from densenet.modes.padded import whole_blocks
from densenet.system.machine import CHANNEL_BLOCK

from numerics import EPS32

FUSED_OP = '_contrib_BatchNormWithReLU'

# One child process, with oneDNN's AVX2 kernels on any CPU (fusion is on where oneDNN's
# channel block is 8): for each case, the fused and the unfused fast path take the same
# two SGD steps from the same weights; it prints their largest differences and, with
# DNNL_VERBOSE=1, oneDNN's calls of each case's fused run after a marker line.
_CHILD = r"""
import json, sys
import densenet, mxnet as mx, numpy as onp
from mxnet import autograd, gluon, np
from densenet.modes import prepare_model
from densenet.modes.fused import BatchNormReLU

def run(case, fuse):
    label, name, side, channels, batch, kwargs, padded = case
    mx.random.seed(4)
    model = densenet.get_model(name, in_channels=channels, num_classes=10, **kwargs)
    model.net(np.zeros((1, channels, side, side)))
    prepare_model(model, [mx.cpu()], hybridize=True, fuse=fuse, padded=padded)
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
                    if isinstance(b, BatchNormReLU) else None)
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

# (label, model, side, channels, batch, get_model arguments, padded): the book's model;
# a DenseNet-BC on its padded trace, and on its hybridized graph, whose concatenations
# are numpy ones; DenseNet-121; d2l's ResNet-18.
_CASES = [('book', 'book', 96, 1, 4, {}, True),
          ('bc', 'densenet_bc_100', 16, 3, 4, {'depth': 16}, True),
          ('bc-unpadded', 'densenet_bc_100', 16, 3, 4, {'depth': 16}, False),
          ('bc-64', 'densenet_bc_100', 64, 1, 4, {'depth': 16}, True),
          ('densenet121', 'densenet121', 32, 3, 2, {}, True),
          ('d2l_resnet18', 'd2l_resnet18', 32, 1, 4, {}, True)]


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
    expected_calls = {'book': 20, 'bc': 14, 'bc-unpadded': 2, 'bc-64': 14,
                      'densenet121': 120, 'd2l_resnet18': 0}
    for log in logs:
        log, line = log.split('\n{', 1)  # the fused run's calls, then its differences
        result = json.loads('{' + line.splitlines()[0])
        name = result['case']
        # float32: a handful of roundings of each value (measured: equal bits)
        assert result['params'] <= 16 * EPS32 and result['out'] <= 16 * EPS32, result
        calls = _bnorm_calls(log)
        forward = [layout for p, layout in calls if p == 'forward_training']
        backward = [layout for p, layout in calls if p == 'backward']
        assert len(forward) == len(backward) == steps * expected_calls[name], (name, calls)
        assert result['marked'] == (2 if name.startswith('bc') else expected_calls[name])
        assert all(layout != 'abcd' for layout in forward + backward), (name, calls)


def test_mxnet_misreads_the_relu_mask_of_a_plain_input():
    """Why a BatchNormReLU fuses only a blocked input: fed the plain layout (a numpy
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
    _, graph = net._cached_graph
    return [n['op'] for n in json.loads(graph.tojson())['nodes']]


def test_the_fast_path_fuses_where_verified_and_tracing_unfuses():
    """prepare_model fuses every BatchNorm -> ReLU pair where oneDNN's block is 8 (and the
    hybridized graph runs the fused operator where fused.py's rules allow), the book's
    path none; concat_mode (exports, inference graphs) traces the two operators and
    restores the fusion; a numpy concatenation set afterwards unmarks the BatchNorms
    it feeds."""
    X = np.zeros((2, 1, 32, 32))
    model = prepare_model(_book(), [mx.cpu()], hybridize=True)
    verified = whole_blocks() == CHANNEL_BLOCK
    assert is_fused(model.net) is verified
    if verified:
        # the stem, two layers a block and the transition; not the head's pair, which
        # feeds the global pooling
        assert _ops(model.net, X).count(FUSED_OP) == 6
        assert _ops(model.net, X).count('Activation') == 1
        with concat_mode(model.net, None, hybridize=True):
            assert not is_fused(model.net)
            assert FUSED_OP not in _ops(model.net, X)
        assert is_fused(model.net)
        set_concat_mode(model, 'numpy')
        marks = [b.fuse_in_graph for b in model.net[1].net[1] if isinstance(b, BatchNormReLU)]
        assert marks == [False]  # its input is now a numpy concatenation
        # as is the transition's, and the transition's convolution, reading the plain
        # layout, writes it: only the stem's and the first layer's stay
        assert _ops(model.net, X).count(FUSED_OP) == 2
    book = prepare_model(_book(), [mx.cpu()], hybridize=False)
    assert not is_fused(book.net)
    assert not any(type(b) in (BatchNormReLU, FusedReLU) for b in _leaves(book.net))


def test_unfusing_restores_the_book_layers():
    """set_fused_bn_relu switches classes in place both ways: the same parameter names,
    the book's classes back, and a float64 fused layer (no oneDNN kernel) computes as
    the two."""
    model = _book()
    names = list(model.net.collect_params())
    assert set_fused_bn_relu(model.net) == 7
    assert list(model.net.collect_params()) == names
    model.net.cast('float64')
    retrace(model.net)
    X = np.array(onp.random.RandomState(1).uniform(size=(2, 1, 32, 32)), dtype='float64')
    with autograd.predict_mode():
        fused = model(X).asnumpy()
    assert set_fused_bn_relu(model.net, False) == 7
    assert not any(type(b) in (BatchNormReLU, FusedReLU) for b in _leaves(model.net))
    assert onp.array_equal(model(X).asnumpy(), fused)


def _leaves(net):
    found = []
    net.apply(lambda b: found.append(b) if not b._children else None)
    return found
