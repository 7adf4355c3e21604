"""The registry: every name builds, runs at its default input, and has its published size."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import np

from densenet import DenseNet, default_cfg, get_model, list_models
from densenet.errors import UsageError


def trainable(model):
    return sum(int(onp.prod(p.shape)) for p in model.net.collect_params().values()
               if p.grad_req != 'null')


@pytest.mark.parametrize('name', list_models())
def test_every_name_builds_and_runs_its_default_input(name):
    cfg = default_cfg(name)
    model = get_model(name)
    side = cfg.input_size
    out = model(np.zeros((1, cfg.channels, side, side)))
    assert out.shape == (1, cfg.num_classes)
    # The ImageNet stem and the book's divide by 32 before the head; the CIFAR stem by 4.
    smallest = {'fashion-mnist': 29, 'imagenet': 29, 'cifar': 4}[cfg.dataset]
    assert model.min_input_size() == cfg.min_input_size == (
        1 if name == 'd2l_resnet18' else smallest)
    assert model.stem_weight().shape[1] == cfg.channels
    if cfg.params is not None:  # the paper's and torchvision's figures
        assert abs(trainable(model) - cfg.params) <= cfg.params_unit / 2, trainable(model)


def test_the_book_entry_is_the_book_model():
    """Same constructor, parameter names and shapes as DenseNet(); only the stem's
    deferred input channels are fixed."""
    book, ref = get_model('book', lr=0.01), DenseNet(lr=0.01)
    ref(np.zeros((1, 1, 96, 96)))
    assert type(book) is DenseNet and book.hparams == ref.hparams
    assert [p.shape for p in book.net.collect_params().values()] == \
        [p.shape for p in ref.net.collect_params().values()]
    rgb = get_model('book', in_channels=3, num_classes=4)
    assert rgb.stem_weight().shape[1] == 3 and rgb(np.zeros((2, 3, 64, 64))).shape == (2, 4)


def test_keyword_arguments_reach_the_constructor():
    m = get_model('densenet_bc_100', depth=40, growth_rate=24, in_channels=1)
    assert m.hparams['block_config'] == (6, 6, 6) and m.hparams['growth_rate'] == 24
    assert m.stem_weight().shape[1] == 1
    assert get_model('densenet121', num_classes=5).net[-1].weight.shape[0] == 5


def test_bad_names_and_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="no model named 'resnet'; choose one of book, "):
        get_model('resnet')
    with pytest.raises(UsageError, match='densenet121 takes no argument growth_rate'):
        get_model('densenet121', growth_rate=12)


def pools(model):
    from densenet.models.variants import transitions
    return [type(t[-1]) for t in transitions(model.net)]


def test_the_book_entry_takes_max_pooling_in_its_transitions():
    """transition_pool='max' (the chapter's exercise 1): only the pooling layers differ,
    so the same seed gives the same initial weights; the default is the book's model."""
    from mxnet.gluon import nn

    from densenet.models.registry import constructor_args
    from densenet.models.variants import TransitionPoolDenseNet
    assert 'transition_pool' in constructor_args('book')
    book = get_model('book')
    assert type(book) is DenseNet and pools(book) == [nn.AvgPool2D] * 3
    mx.random.seed(3)
    avg = get_model('book', transition_pool='avg')
    mx.random.seed(3)
    mp = get_model('book', transition_pool='max')
    assert type(avg) is DenseNet and isinstance(mp, TransitionPoolDenseNet)
    assert pools(mp) == [nn.MaxPool2D] * 3 and mp.hparams['transition_pool'] == 'max'
    assert mp.registry_kwargs['transition_pool'] == 'max'
    for a, m in zip(avg.net.collect_params().values(), mp.net.collect_params().values(),
                    strict=True):
        assert a.shape == m.shape and onp.array_equal(a.data().asnumpy(), m.data().asnumpy())
    X = np.array(onp.random.RandomState(0).uniform(size=(2, 1, 64, 64)).astype('float32'))
    assert not onp.allclose(avg(X).asnumpy(), mp(X).asnumpy())
    # Rebuilt from its hyperparameters (as the fp32 inference copy is), it is the same.
    again = type(mp)(**mp.hparams)
    assert pools(again) == [nn.MaxPool2D] * 3
    with pytest.raises(UsageError, match=r"^transition_pool must be 'avg' or 'max', "
                                         r"got 'min'$"):
        get_model('book', transition_pool='min')


def test_d2l_resnet18_is_the_books_resnet():
    """The same layers as d2l.resnet18, computing what d2l.Residual computes (eagerly and
    hybridized), wrapped as a checked d2l.Classifier."""
    from d2l import mxnet as d2l

    from densenet.models.resnet import D2LResNet18, hybridizable
    ref = d2l.resnet18(10)
    ref.initialize(mx.init.Xavier())
    X = np.array(onp.random.RandomState(0).uniform(size=(2, 1, 16, 16)).astype('float32'))
    expected = ref(X).asnumpy()
    names = list(ref._collect_params_with_prefix())
    net = hybridizable(ref)
    assert list(net._collect_params_with_prefix()) == names  # the saved names are d2l's
    assert onp.array_equal(net(X).asnumpy(), expected)
    net.hybridize()
    assert abs(net(X).asnumpy() - expected).max() <= 1e-6
    model = get_model('d2l_resnet18', lr=0.05)
    assert type(model) is D2LResNet18 and model.hparams == {'num_classes': 10, 'lr': 0.05}
    assert model.net[-1].weight.shape == (10, model.num_features)
    assert model.forward_features(X).shape == (2, model.num_features)
    assert trainable(model) == 11_175_818
    with pytest.raises(UsageError, match='d2l_resnet18 takes no argument growth_rate'):
        get_model('d2l_resnet18', growth_rate=12)


def test_memory_efficient_refuses_a_network_without_dense_blocks():
    from densenet import set_memory_efficient
    with pytest.raises(UsageError, match='no dense block|has none'):
        set_memory_efficient(get_model('d2l_resnet18'))


def test_train_flags_build_the_max_pool_model_and_refuse_memory_efficient_resnets(
        tmp_path, real_data_dir):
    """`densenet train --model book --model-arg transition_pool=max` builds the max-pool
    model; --memory-efficient on a model without dense blocks is one line, before any
    file is written."""
    from densenet.cli import build_parser, main
    from densenet.cli.train import train_config
    from densenet.models.variants import TransitionPoolDenseNet
    from densenet.train.setup import build_model
    args = build_parser().parse_args(['train', '--model', 'book', '--model-arg',
                                      'transition_pool=max'])
    cfg = train_config(args)
    assert cfg.model_args == {'transition_pool': 'max'}
    assert isinstance(build_model(cfg), TransitionPoolDenseNet)
    args = build_parser().parse_args(['train', '--model', 'd2l_resnet18',
                                      '--memory-efficient'])
    with pytest.raises(UsageError, match=r'^--memory-efficient recomputes the layers of dense '
                                         r'blocks, and d2l_resnet18 has none'):
        build_model(train_config(args))
    out = tmp_path / 'run'
    assert main(['train', '--model', 'book', '--model-arg', 'transition_pool=min',
                 '--limit', '64', '--data-dir', real_data_dir, '--out', str(out)]) == 2
    assert not out.exists()
