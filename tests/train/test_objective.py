"""Pieces of the training loop checked on their own."""
import numpy as onp
from mxnet import autograd, np

from densenet import DenseNet
from densenet.train import smoothed_loss


def reference_smoothed(Y, y, eps):
    """Cross-entropy against (1 - eps) one-hot + eps / classes, in plain numpy."""
    logp = Y - Y.max(axis=1, keepdims=True)
    logp = logp - onp.log(onp.exp(logp).sum(axis=1, keepdims=True))
    target = onp.full(Y.shape, eps / Y.shape[1])
    target[onp.arange(len(y)), y] += 1 - eps
    return -(target * logp).sum(axis=1), onp.exp(logp) - target


def test_label_smoothing_loss_and_gradient():
    rs = onp.random.RandomState(0)
    Y = (rs.randn(6, 10) * 3).astype('float32')
    y = rs.randint(0, 10, 6).astype('int32')
    # eps = 0 is the book's loss exactly.
    book = DenseNet().loss(np.array(Y), np.array(y), averaged=False).asnumpy()
    assert abs(smoothed_loss(np.array(Y), np.array(y), 0.0).asnumpy() - book).max() < 1e-5
    expected, grad = reference_smoothed(Y, y, 0.1)
    Yn = np.array(Y)
    Yn.attach_grad()
    with autograd.record():
        loss = smoothed_loss(Yn, np.array(y), 0.1)
        total = loss.sum()
    total.backward()
    assert abs(loss.asnumpy() - expected).max() < 1e-5
    assert abs(Yn.grad.asnumpy() - grad).max() < 1e-5
    assert abs(loss.asnumpy() - book).max() > 1e-3  # smoothing did change the loss
