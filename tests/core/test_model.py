import os

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l
from mxnet import gluon, np

from densenet import DenseBlock, DenseNet, min_input_size

from helpers import set_running_stats


@pytest.fixture(scope='module')
def model():
    return DenseNet()


def test_is_a_d2l_classifier_with_book_defaults(model):
    assert isinstance(model, d2l.Classifier)
    assert model.hparams == dict(num_channels=64, growth_rate=32, arch=(4, 4, 4, 4),
                                 lr=0.1, num_classes=10)
    trainer = model.configure_optimizers()
    assert isinstance(trainer, gluon.Trainer) and trainer.learning_rate == 0.1


@pytest.mark.parametrize('batch', [1, 3, 8])
def test_output_shape_at_book_resize(model, batch):
    assert model(np.random.uniform(size=(batch, 1, 96, 96))).shape == (batch, 10)


def test_layer_summary_shapes(model, capsys):
    model.layer_summary((1, 1, 96, 96))
    lines = capsys.readouterr().out.strip().splitlines()
    shapes = [line.split('\t')[-1].strip() for line in lines]
    assert shapes == ['(1, 64, 24, 24)', '(1, 192, 24, 24)', '(1, 96, 12, 12)',
                      '(1, 224, 12, 12)', '(1, 112, 6, 6)', '(1, 240, 6, 6)',
                      '(1, 120, 3, 3)', '(1, 248, 3, 3)', '(1, 248, 3, 3)',
                      '(1, 248, 3, 3)', '(1, 248, 1, 1)', '(1, 10)']
    assert lines[1].startswith('DenseBlock') and lines[-1].startswith('Dense ')


def book_feature_width(num_channels, growth_rate, arch):
    """The book's bookkeeping, written out independently of the model code."""
    c = num_channels
    for i, n in enumerate(arch):
        c += n * growth_rate
        if i < len(arch) - 1:
            c //= 2
    return c


@pytest.mark.parametrize('num_channels,growth_rate,arch,num_classes', [
    (64, 32, (4, 4, 4, 4), 10),
    (32, 16, (2, 3), 5),
    (100, 12, (3, 1, 2), 7),
    (64, 8, (6,), 3),
])
def test_channel_bookkeeping(num_channels, growth_rate, arch, num_classes):
    m = DenseNet(num_channels=num_channels, growth_rate=growth_rate, arch=arch,
                 num_classes=num_classes)
    m(np.random.uniform(size=(2, 1, 64, 64)))
    head = m.net[-1]
    width = book_feature_width(num_channels, growth_rate, arch)
    assert head.weight.shape == (num_classes, width)
    assert m.num_features == width
    # Stem quirk kept from the book: 64 channels whatever num_channels is.
    assert m.net[0][0].weight.shape == (64, 1, 7, 7)
    blocks = [b for b in m.net if isinstance(b, DenseBlock)]
    assert [len(b.net) for b in blocks] == list(arch)


def trainable_count(model):
    return sum(int(onp.prod(p.shape)) for p in model.collect_params().values()
               if p.grad_req != 'null')


def test_default_parameter_count(model):
    model(np.zeros((1, 1, 96, 96)))
    # Derivation by hand (trainable = conv weights + biases, BN gamma + beta):
    # stem: conv 7x7, 1 -> 64 with bias: 64*49 + 64 = 3200; BN(64): 128.
    # conv_block(32) on c channels: BN(c) 2c + conv 3x3 c -> 32: 288c + 32 = 290c + 32.
    # Dense blocks see c = 64,96,128,160 | 96,...,192 | 112,...,208 | 120,...,216
    # (each block starts from the transition width 96, 112, 120 = half of 192, 224, 240).
    # transition(t) on c channels: BN 2c + 1x1 conv c*t + t.
    # head: BN(248) 496 + Dense 248*10 + 10.
    def dense(start):
        return sum(290 * (start + 32 * k) + 32 for k in range(4))
    blocks = dense(64) + dense(96) + dense(112) + dense(120)
    transitions = (2 * 192 + 192 * 96 + 96) + (2 * 224 + 224 * 112 + 112) \
        + (2 * 240 + 240 * 120 + 120)
    head = 2 * 248 + 248 * 10 + 10
    expected = 3200 + 128 + blocks + transitions + head
    assert expected == 758_226
    assert trainable_count(model) == expected


def test_min_input_size_is_derived_from_architecture():
    assert DenseNet().min_input_size() == 29
    # Each transition halves (floors) the size; the stem divides it by 4.
    assert DenseNet(arch=(4, 4, 4)).min_input_size() == 13
    assert DenseNet(arch=(1,)).min_input_size() == 1


@pytest.mark.parametrize('arch', [(4, 4, 4, 4), (2, 2, 2), (3, 3)])
def test_min_input_size_matches_mxnet(arch):
    m = DenseNet(arch=arch)
    side = m.min_input_size()
    assert m.net(np.ones((1, 1, side, side))).shape == (1, 10)
    with pytest.raises(mx.base.MXNetError):
        m.net(np.ones((1, 1, side - 1, side - 1))).wait_to_read()


def test_error_too_small(model):
    with pytest.raises(ValueError, match=r'28x28 are too small.*at least 29x29.*96x96'):
        model(np.zeros((2, 1, 28, 28)))


@pytest.mark.parametrize('shape', [(1, 96, 96), (96, 96), (1, 1, 1, 96, 96)])
def test_error_not_4d(model, shape):
    with pytest.raises(ValueError, match=r'4-D batch \(N, C, H, W\)'):
        model(np.zeros(shape))


def test_error_wrong_channels(model):
    model(np.zeros((1, 1, 96, 96)))
    with pytest.raises(ValueError, match='built for 1-channel images, got 3'):
        model(np.zeros((1, 3, 96, 96)))


def test_min_input_size_function_on_plain_net():
    m = DenseNet(arch=(2, 2))
    assert min_input_size(m.net) == m.min_input_size() == 5


def test_hybridized_equals_imperative_and_params_cross_load(tmp_path):
    imperative = DenseNet(arch=(2, 2, 2))
    X = np.random.uniform(size=(4, 1, 48, 48))
    imperative(X)
    set_running_stats(imperative.net, seed=1)
    expected = imperative(X).asnumpy()
    path = os.path.join(tmp_path, 'imperative.params')
    imperative.net.save_parameters(path)

    hybrid = DenseNet(arch=(2, 2, 2))
    hybrid.net.hybridize(static_alloc=True, static_shape=True)
    hybrid.net.load_parameters(path)
    got = hybrid(X).asnumpy()
    assert abs(got - expected).max() <= 1e-5
    assert hybrid.net._active and not imperative.net._active

    # And back: parameters saved from the hybridized model load imperatively.
    path2 = os.path.join(tmp_path, 'hybrid.params')
    hybrid.net.save_parameters(path2)
    again = DenseNet(arch=(2, 2, 2))
    again.net.load_parameters(path2)
    assert abs(again(X).asnumpy() - expected).max() <= 1e-5


def test_hybridized_training_gradients_match_imperative():
    a, b = DenseNet(arch=(2, 2)), DenseNet(arch=(2, 2))
    X = np.random.uniform(size=(4, 1, 32, 32))
    y = np.array([0, 1, 2, 3])
    a(X)
    b(X)
    for pa, pb in zip(a.net.collect_params().values(), b.net.collect_params().values(),
                      strict=True):
        pb.set_data(pa.data())
    b.net.hybridize()
    grads = []
    for m in (a, b):
        with mx.autograd.record():
            loss = m.loss(m(X), y)
        loss.backward()
        grads.append([p.grad().asnumpy() for p in m.net.collect_params().values()
                      if p.grad_req != 'null'])
    for ga, gb in zip(*grads, strict=True):
        assert abs(ga - gb).max() <= 1e-5


class TinyData(d2l.DataModule):
    """A few hundred random 32x32 images whose class is the brightest quadrant."""

    def __init__(self, n=256, batch_size=32):
        super().__init__()
        self.save_hyperparameters()
        rng = onp.random.RandomState(0)
        X = rng.uniform(0, 0.2, size=(n, 1, 32, 32)).astype('float32')
        y = rng.randint(0, 4, size=n)
        for i, c in enumerate(y):
            r, q = divmod(int(c), 2)
            X[i, 0, r * 16:(r + 1) * 16, q * 16:(q + 1) * 16] += 0.8
        self.X, self.y = np.array(X), np.array(y.astype('int32'))

    def get_dataloader(self, train):
        return self.get_tensorloader((self.X, self.y), train)


def test_d2l_trainer_fit_lowers_loss():
    data = TinyData()
    model = DenseNet(growth_rate=8, arch=(2, 2), lr=0.05, num_classes=4)
    X, y = data.X, data.y

    def train_mode_loss():
        # BatchNorm on batch statistics, as during the fit itself.
        with mx.autograd.train_mode():
            return float(model.loss(model(X), y))
    before = train_mode_loss()
    trainer = d2l.Trainer(max_epochs=1)
    trainer.fit(model, data)
    assert trainer.train_batch_idx == 8
    assert train_mode_loss() < 0.9 * before


def test_the_input_checks_add_no_parameters(tmp_path):
    """The whole Classifier saves exactly the net's parameters (under 'net.')."""
    model = DenseNet(arch=(2, 2))
    model(np.random.uniform(size=(2, 1, 32, 32)))  # runs check_input, which caches the stem
    path = str(tmp_path / 'model.params')
    model.save_parameters(path)
    saved = set(mx.npx.load(path))
    net_path = str(tmp_path / 'net.params')
    model.net.save_parameters(net_path)
    assert saved == {'net.' + k for k in mx.npx.load(net_path)}
