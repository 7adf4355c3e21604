"""Parameter counts and forward FLOPs per image, read off the traced graph."""
import numpy as onp
from mxnet import init, np
from mxnet.gluon import nn

from densenet import DenseNet, get_model
from densenet.analysis.complexity import complexity, describe


def trainable(model):
    return sum(int(onp.prod(p.shape)) for p in model.net.collect_params().values()
               if p.grad_req != 'null')


def test_a_small_network_by_hand():
    """3x3 conv (1 -> 4 channels, padded) on 8x8, 2x2 max pool, Dense to 3 classes."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, kernel_size=3, padding=1), nn.BatchNorm(), nn.MaxPool2D(2, 2),
            nn.Dense(3))
    net.initialize(init.Xavier())
    c = complexity(net, side=8)
    assert c.params == (4 * 9 + 4) + (4 + 4) + (3 * 64 + 3)  # BatchNorm: scale and shift
    assert c.macs == 4 * 8 * 8 * 9 + 3 * (4 * 4 * 4)
    assert c.flops == 2 * c.macs and describe(c)['flops'] == c.flops


def test_the_book_densenet_and_the_books_resnet():
    book, resnet = get_model('book'), get_model('d2l_resnet18')
    b, r = complexity(book, 96), complexity(resnet, 96)
    assert b.params == trainable(book) == 758_226 and r.params == trainable(resnet)
    assert b.channels == r.channels == 1
    # Each 3x3 conv of d2l's ResNet's first stage: 64 x 64 x 9 MACs at each of 96x96 pixels.
    assert r.macs > 4 * 64 * 64 * 9 * 96 * 96 > b.macs
    # Deferred shapes are inferred from the graph: an unbuilt model counts the same.
    assert complexity(DenseNet(), 96) == b
    assert complexity(book, 48).macs < b.macs
    assert book(np.zeros((1, 1, 96, 96))).shape == (1, 10)
