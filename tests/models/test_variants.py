import mxnet as mx
import numpy as onp
import pytest
from mxnet import np
from mxnet.gluon.model_zoo import vision

from densenet import (
    DenseBlock,
    densenet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet_bc,
    load_gluon_zoo_parameters,
)
from densenet.models.variants import bottleneck_layer, densenet_imagenet

from helpers import set_running_stats


def trainable(model, shape):
    model.net(np.zeros(shape))
    return sum(int(onp.prod(p.shape)) for p in model.net.collect_params().values()
               if p.grad_req != 'null')


# Published trainable parameter counts with 1000 classes: torchvision's model
# documentation lists these for its DenseNet-121/161/169/201, whose layers equal
# the paper's and the Gluon zoo's (the zoo model itself is counted below too).
@pytest.mark.parametrize('make,expected', [
    (densenet121, 7_978_856), (densenet161, 28_681_000),
    (densenet169, 14_149_480), (densenet201, 20_013_928)])
def test_imagenet_parameter_counts(make, expected):
    assert trainable(make(), (1, 3, 32, 32)) == expected


def test_cifar_parameter_counts():
    # The paper's Table 2 (rounded to 0.1M): DenseNet (L=40, k=12) 1.0M,
    # DenseNet-BC (L=100, k=12) 0.8M.
    plain = trainable(densenet(depth=40, growth_rate=12), (1, 3, 32, 32))
    bc = trainable(densenet_bc(depth=100, growth_rate=12), (1, 3, 32, 32))
    assert round(plain / 1e6, 1) == 1.0 and round(bc / 1e6, 1) == 0.8
    # Zalando's Fashion-MNIST benchmark lists DenseNet-BC with 768K parameters:
    # the same model on 1-channel images.
    gray = trainable(densenet_bc(in_channels=1), (1, 1, 28, 28))
    assert gray // 1000 == 768 and bc - gray == 24 * 2 * 9


def test_bottleneck_layer_order_and_shapes():
    blk = DenseBlock(3, 12, layer=bottleneck_layer)
    blk.initialize()
    assert blk(np.zeros((2, 24, 8, 8))).shape == (2, 60, 8, 8)
    layer = blk.net[0]
    convs = [c for c in layer if isinstance(c, mx.gluon.nn.Conv2D)]
    assert [c._kwargs['kernel'] for c in convs] == [(1, 1), (3, 3)]
    assert convs[0]._channels == 48 and all(c.bias is None for c in convs)


def test_compression_and_fashion_mnist_shape():
    m = densenet_bc(depth=40, growth_rate=12, in_channels=1, num_classes=10)
    assert m(np.zeros((4, 1, 28, 28))).shape == (4, 10)
    # 24 + 6*12 = 96 -> 48 -> 48 + 72 = 120 -> 60 -> 60 + 72 = 132
    assert m.num_features == 132 and m.net[-1].weight.shape == (10, 132)
    with pytest.raises(ValueError, match='6n \\+ 4'):
        densenet_bc(depth=41)
    with pytest.raises(ValueError, match='choose one of'):
        densenet_imagenet(100)


def test_dropout_is_inside_each_layer():
    m = densenet_bc(depth=40, dropout=0.2)
    assert isinstance(m.net[1].net[0][-1], mx.gluon.nn.Dropout)


def _zoo(depth, path, X):
    """The zoo model (random init, no download), its output on X, saved to path."""
    with mx.util.np_array(False), mx.util.np_shape(False):
        zoo = getattr(vision, f'densenet{depth}')()
        zoo.initialize(mx.init.Xavier())
        # Non-trivial BN statistics, so that inference mode exercises them.
        zoo(mx.nd.array(X[:1]))  # completes the deferred shapes
        set_running_stats(zoo, seed=0, array=mx.nd.array)
        out = zoo(mx.nd.array(X)).asnumpy()
        zoo.save_parameters(path)
    return out


def test_load_gluon_zoo_parameters(tmp_path):
    X = onp.random.RandomState(1).uniform(size=(2, 3, 224, 224)).astype('float32')
    path = str(tmp_path / 'zoo121.params')
    expected = _zoo(121, path, X)
    model = densenet121()
    load_gluon_zoo_parameters(model, path)
    got = model(np.array(X)).asnumpy()
    assert abs(got - expected).max() <= 1e-5
    # A mismatch is refused with a clear message.
    with pytest.raises(ValueError, match='holds 606 parameters, this model has 846'):
        load_gluon_zoo_parameters(densenet169(), path)
    with pytest.raises(ValueError, match='another DenseNet depth, input channel count or '
                                         'class count'):
        load_gluon_zoo_parameters(densenet121(num_classes=10), path)
