"""The registry: every name builds, runs at its default input, and has its published size."""
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
    assert model.min_input_size() == cfg.min_input_size
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
