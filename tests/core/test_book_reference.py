"""The package against a literal transcription of the book's MXNet code."""
import mxnet as mx
import numpy as onp
from mxnet import np
from mxnet.gluon import nn

from densenet import DenseNet


def book_conv_block(num_channels):
    blk = nn.Sequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=3, padding=1))
    return blk


class BookDenseBlock(nn.Block):
    def __init__(self, num_convs, num_channels):
        super().__init__()
        self.net = nn.Sequential()
        for _ in range(num_convs):
            self.net.add(book_conv_block(num_channels))

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            X = np.concatenate((X, Y), axis=1)
        return X


def book_transition_block(num_channels):
    blk = nn.Sequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=1),
            nn.AvgPool2D(pool_size=2, strides=2))
    return blk


def book_net(num_channels=64, growth_rate=32, arch=(4, 4, 4, 4), num_classes=10):
    net = nn.Sequential()
    b1 = nn.Sequential()
    b1.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
           nn.BatchNorm(), nn.Activation('relu'),
           nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net.add(b1)
    for i, num_convs in enumerate(arch):
        net.add(BookDenseBlock(num_convs, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:
            num_channels //= 2
            net.add(book_transition_block(num_channels))
    net.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.GlobalAvgPool2D(), nn.Dense(num_classes))
    net.initialize(mx.init.Xavier())
    return net


def test_same_parameters_same_outputs_and_gradients():
    ours = DenseNet()
    book = book_net()
    X = np.random.uniform(size=(2, 1, 96, 96))
    ours(X)
    book(X)
    ours_params = list(ours.net.collect_params().values())
    book_params = list(book.collect_params().values())
    assert [p.shape for p in ours_params] == [p.shape for p in book_params]
    for a, b in zip(ours_params, book_params, strict=True):
        b.set_data(a.data())
    # Inference (running statistics) and training mode (batch statistics).
    assert onp.array_equal(ours(X).asnumpy(), book(X).asnumpy())
    y = np.array([3, 7])
    grads = []
    for net in (ours.net, book):
        with mx.autograd.record():
            loss = ours.loss(net(X), y)
        loss.backward()
        grads.append([p.grad().asnumpy() for p in net.collect_params().values()
                      if p.grad_req != 'null'])
    for ga, gb in zip(*grads, strict=True):
        assert onp.array_equal(ga, gb)
