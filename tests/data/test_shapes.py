"""The batch a network takes: its input channels, and the zeros that fix deferred shapes."""
from mxnet import np

from densenet import DenseNet, get_model
from densenet.data.shapes import fix_shapes, input_channels


def test_fix_shapes_completes_every_deferred_shape_at_the_given_channels():
    model = DenseNet()
    assert input_channels(model.net) == 1  # deferred: the book's default
    before = [p.shape for p in model.net.collect_params().values()]
    assert any(0 in s or -1 in s for s in before)
    fix_shapes(model.net, 32, channels=3)
    after = [p.shape for p in model.net.collect_params().values()]
    assert not any(0 in s or -1 in s for s in after)
    assert input_channels(model.net) == 3 and after[0][1] == 3
    assert model(np.zeros((2, 3, 32, 32))).shape == (2, 10)


def test_input_channels_reads_a_built_models_stem():
    assert input_channels(get_model('book', in_channels=3).net) == 3
    assert input_channels(get_model('book').net) == 1
