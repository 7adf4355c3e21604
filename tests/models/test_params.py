"""Params files: saved either way, described by their metadata, rebuilt without flags."""
import json

import numpy as onp
import pytest
from mxnet import np

from densenet import get_model, load_model, load_parameters
from densenet.errors import UsageError
from densenet.models.params import describe, save, shape_args

from helpers import set_running_stats


@pytest.mark.parametrize('name,kwargs', [('book', {}), ('densenet_bc_100', {'depth': 40})])
def test_params_saved_both_ways_load_and_agree(tmp_path, name, kwargs):
    model = get_model(name, in_channels=1, **kwargs)
    set_running_stats(model.net, seed=0)
    X = np.array(onp.random.RandomState(0).uniform(size=(2, 1, 32, 32)).astype('float32'))
    expected = model(X).asnumpy()
    whole, net_only = str(tmp_path / 'whole.params'), str(tmp_path / 'net.params')
    model.save_parameters(whole)          # a notebook's d2l.Classifier: keys net.0.0.weight
    model.net.save_parameters(net_only)   # the tools' files: keys 0.0.weight
    for path in (whole, net_only):
        fresh = get_model(name, in_channels=1, **kwargs)
        load_parameters(fresh, path)
        assert onp.array_equal(fresh(X).asnumpy(), expected)
        # A bare file with --model: channels and classes are read off the file.
        rebuilt, meta = load_model(path, name, kwargs or None)
        assert meta['channels'] == 1 and len(meta['classes']) == 10
        assert onp.array_equal(rebuilt(X).asnumpy(), expected)


def test_metadata_rebuilds_the_model(tmp_path):
    model = get_model('densenet_bc_100', depth=40, in_channels=3, num_classes=3)
    X = np.array(onp.random.RandomState(1).uniform(size=(2, 3, 32, 32)).astype('float32'))
    path = str(tmp_path / 'best.params')
    save(model, path, describe(model, 40, ['cat', 'dog', 'fox'], 'folder:pets'))
    with open(path + '.json') as f:
        meta = json.load(f)
    assert meta['kwargs']['depth'] == 40 and meta['classes'] == ['cat', 'dog', 'fox']
    rebuilt, meta = load_model(path)
    assert rebuilt.hparams == model.hparams and meta['input_size'] == 40
    assert onp.array_equal(rebuilt(X).asnumpy(), model(X).asnumpy())
    assert shape_args(path) == {'in_channels': 3, 'num_classes': 3}


def test_a_file_of_another_architecture_is_refused(tmp_path):
    path = str(tmp_path / 'bc.params')
    get_model('densenet_bc_100', depth=40, in_channels=1).net.save_parameters(path)
    with pytest.raises(UsageError, match='does not fit the book model with 10 classes'):
        load_parameters(get_model('book'), path)
    with pytest.raises(UsageError, match='does not fit the book model'):
        load_model(path)  # no metadata: taken for the book's model, and refused
    (tmp_path / 'text.params').write_text('not parameters')
    with pytest.raises(UsageError, match='is not an MXNet parameter file'):
        load_model(str(tmp_path / 'text.params'))


@pytest.mark.parametrize('name', ['book', 'densenet_bc_100'])
def test_forward_features_and_reset_classifier(name):
    model = get_model(name, in_channels=1)
    set_running_stats(model.net, seed=2)
    X = np.array(onp.random.RandomState(2).uniform(size=(3, 1, 32, 32)).astype('float32'))
    features = model.forward_features(X)
    assert features.shape == (3, model.num_features)
    # The model's own pooled activations, taken from its layers one by one.
    pooled = X
    for layer in list(model.net._children.values())[:-1]:
        pooled = layer(pooled)
    assert onp.array_equal(features.asnumpy(), pooled.asnumpy().reshape(3, -1))
    assert onp.array_equal(model.net[-1](features).asnumpy(), model(X).asnumpy())
    body = {k: p.data().asnumpy() for k, p in model.net.collect_params().items()}
    old_head = model.net[-1].weight.data().asnumpy()
    model.reset_classifier(4)
    assert model(X).shape == (3, 4) and model.hparams['num_classes'] == 4
    head = model.net[-1].weight.data().asnumpy()
    assert head.shape == (4, model.num_features) and not onp.allclose(head[:, :4], 0)
    for k, p in model.net.collect_params().items():  # every other parameter as it was
        if k in body and p.shape == body[k].shape and p is not model.net[-1].weight:
            assert onp.array_equal(p.data().asnumpy(), body[k]), k
    assert old_head.shape[0] == 10
    assert onp.array_equal(model.forward_features(X).asnumpy(), features.asnumpy())


def test_init_from_a_gluon_zoo_file_with_other_classes(tmp_path):
    """--init: a zoo DenseNet-121 file (1000 classes) starts a 3-class model; every layer
    but the classifier takes the zoo's values."""
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    from densenet.train import initialize_from
    path = str(tmp_path / 'zoo.params')
    with mx.util.np_array(False), mx.util.np_shape(False):
        zoo = vision.densenet121()
        zoo.initialize(mx.init.Xavier())
        zoo(mx.nd.zeros((1, 3, 224, 224)))  # its last pooling is 7x7
        set_running_stats(zoo, seed=3, array=mx.nd.array)
        zoo.save_parameters(path)
        zoo_values = [p.data().asnumpy() for p in zoo.collect_params().values()]
    model = get_model('densenet121', num_classes=3)
    said = []
    initialize_from(model, path, [mx.cpu()], log=said.append)
    ours = [p.data().asnumpy() for p in model.net.collect_params().values()]
    assert all(onp.array_equal(a, b) for a, b in zip(ours[:-2], zoo_values[:-2], strict=True))
    assert ours[-2].shape == (3, 1024) and zoo_values[-2].shape == (1000, 1024)
    assert said == [f'initialised from {path} (its 1000-class classifier replaced by a new '
                    '3-class one)']


@pytest.mark.parametrize('name,kwargs', [('book', {'transition_pool': 'max'}),
                                         ('d2l_resnet18', {})])
def test_metadata_rebuilds_the_max_pool_book_model_and_the_resnet(tmp_path, name, kwargs):
    """save + load_model: the metadata's arguments rebuild the same model, and its
    fp32 inference copy (rebuilt from its hyperparameters) computes the same logits."""
    from densenet.deploy.inference import fp32_model
    model = get_model(name, **kwargs)
    set_running_stats(model.net, seed=4)
    X = np.array(onp.random.RandomState(4).uniform(size=(2, 1, 32, 32)).astype('float32'))
    path = str(tmp_path / 'best.params')
    save(model, path, describe(model, 32, [str(i) for i in range(10)], 'fashion-mnist'))
    with open(path + '.json') as f:
        assert json.load(f)['kwargs'] == {'in_channels': 1, 'num_classes': 10, **kwargs}
    rebuilt, meta = load_model(path)
    assert type(rebuilt) is type(model) and rebuilt.hparams == model.hparams
    assert meta['model'] == name and meta['input_size'] == 32
    expected = model(X).asnumpy()
    assert onp.array_equal(rebuilt(X).asnumpy(), expected)
    fast = fp32_model(rebuilt, (1, 1, 32, 32))
    assert abs(fast(X).asnumpy() - expected).max() <= 1e-5
