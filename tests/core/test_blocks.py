import numpy as onp
import pytest
from mxnet import autograd, np
from mxnet.gluon import nn

from densenet import DenseBlock, conv_block, set_concat_mode, transition_block


def test_conv_block_layer_order():
    blk = conv_block(7)
    kinds = [type(layer) for layer in blk]
    assert kinds == [nn.BatchNorm, nn.Activation, nn.Conv2D]
    conv = blk[2]
    assert conv._kwargs['kernel'] == (3, 3) and conv._kwargs['pad'] == (1, 1)
    assert conv._channels == 7


def test_dense_block_channel_growth():
    blk = DenseBlock(2, 10)
    blk.initialize()
    X = np.random.uniform(size=(4, 3, 8, 8))
    Y = blk(X)
    assert Y.shape == (4, 23, 8, 8)
    # The input itself is passed through unchanged as the first channels.
    assert float(np.abs(Y[:, :3] - X).max()) == 0.0


def test_transition_halves():
    blk = DenseBlock(2, 10)
    blk.initialize()
    trans = transition_block(10)
    trans.initialize()
    assert trans(blk(np.random.uniform(size=(4, 3, 8, 8)))).shape == (4, 10, 4, 4)
    assert [type(layer) for layer in trans] == [
        nn.BatchNorm, nn.Activation, nn.Conv2D, nn.AvgPool2D]


@pytest.mark.parametrize('side,expected', [(9, 4), (7, 3), (5, 2), (3, 1)])
def test_transition_floors_odd_sizes(side, expected):
    trans = transition_block(6)
    trans.initialize()
    assert trans(np.ones((2, 4, side, side))).shape == (2, 6, expected, expected)


def test_legacy_concat_equals_numpy_concat():
    blk = DenseBlock(3, 5)
    blk.initialize()
    X = np.random.uniform(size=(2, 4, 6, 6))
    X.attach_grad()
    outs, grads = [], []
    for mode in ('numpy', 'legacy'):
        set_concat_mode(blk, mode)
        with autograd.record():
            Y = blk(X)
            (Y ** 2).sum().backward()
        outs.append(Y.asnumpy())
        grads.append((X.grad.asnumpy(), blk.net[0][2].weight.grad().asnumpy()))
    assert abs(outs[0] - outs[1]).max() <= 1e-6
    for a, b in zip(*grads, strict=True):
        assert abs(a - b).max() <= 1e-5


def test_bad_concat_mode():
    with pytest.raises(ValueError, match='concat mode'):
        set_concat_mode(DenseBlock(1, 2), 'fast')


def test_transition_pool_max_takes_each_window_maximum():
    """pool='max': the same 2x2/2 pooling, by maximum; compared with a hand computation
    (the pool after an identity 1x1 convolution, so that it sees the ReLU's output)."""
    trans = transition_block(2, pool='max')
    trans.initialize()
    assert [type(layer) for layer in trans] == [
        nn.BatchNorm, nn.Activation, nn.Conv2D, nn.MaxPool2D]
    pool = trans[3]
    assert pool._kwargs['kernel'] == (2, 2) and pool._kwargs['stride'] == (2, 2)
    X = onp.arange(2 * 2 * 5 * 5, dtype='float32').reshape(2, 2, 5, 5) % 7 - 3
    Y = pool(np.array(X)).asnumpy()
    expected = onp.empty((2, 2, 2, 2), dtype='float32')
    for i in range(2):
        for j in range(2):
            expected[:, :, i, j] = X[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(2, 3))
    assert onp.array_equal(Y, expected)
    # The whole transition: BN (fresh: identity in inference mode), ReLU, 1x1 conv, max.
    trans[2].weight.set_data(np.array(onp.eye(2, dtype='float32').reshape(2, 2, 1, 1)))
    trans[2].bias.set_data(np.zeros(2))
    got = trans(np.array(X)).asnumpy()
    relu = onp.maximum(X / onp.sqrt(1 + 1e-5), 0)
    windows = onp.stack([relu[:, :, a:4:2, b:4:2] for a in (0, 1) for b in (0, 1)])
    assert abs(got - windows.max(axis=0)).max() <= 1e-6
    avg = transition_block(2)
    assert isinstance(avg[3], nn.AvgPool2D)


def test_transition_pool_other_values_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^pool must be 'avg' or 'max', got 'min'$"):
        transition_block(4, pool='min')
