import os

import numpy as onp
import onnx
import onnxruntime as ort
import pytest
from mxnet import np

from densenet import DenseNet, densenet121
from densenet.cli import main
from densenet.deploy.export import export, load_mxnet, register_onnx_converters

from helpers import set_running_stats


def _with_stats(model, shape):
    """Non-trivial BN running statistics, so that inference mode exercises them."""
    model.net(np.zeros(shape))
    set_running_stats(model.net, seed=2)
    return model


def _onnx_run(path, X):
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return sess.run(None, {sess.get_inputs()[0].name: X})[0], sess.get_inputs()[0].shape


@pytest.mark.parametrize('make,shape', [(DenseNet, (1, 1, 96, 96)),
                                        (densenet121, (1, 3, 224, 224))])
def test_mxnet_and_onnx_exports_agree(tmp_path, make, shape):
    model = _with_stats(make(), shape)
    X = onp.random.RandomState(0).uniform(size=(3,) + shape[1:]).astype('float32')
    expected = model(np.array(X)).asnumpy()
    sym, params = export(model, str(tmp_path), 'mxnet', input_shape=shape)
    reloaded = load_mxnet(sym, params)
    assert abs(reloaded(np.array(X)).asnumpy() - expected).max() <= 1e-4
    (path,) = export(model, str(tmp_path), 'onnx', input_shape=shape)
    graph = onnx.load(path)
    assert 'Concat' in {n.op_type for n in graph.graph.node}
    # Dynamic batch: traced at batch 1, run at 3 and at 1.
    got, input_shape = _onnx_run(path, X)
    assert input_shape[0] in (None, 'N') or isinstance(input_shape[0], str)
    assert abs(got - expected).max() <= 1e-4
    got1, _ = _onnx_run(path, X[:1])
    assert abs(got1 - expected[:1]).max() <= 1e-4
    assert not [f for f in os.listdir(tmp_path) if f.startswith('tmp')]


def test_book_graph_keeps_numpy_concatenate(tmp_path):
    """The converter is what makes export work: the graph is not rewritten."""
    import json
    model = DenseNet(arch=(2, 2))
    sym, _ = export(model, str(tmp_path), 'mxnet', input_shape=(1, 1, 32, 32))
    with open(sym) as f:
        ops = {n['op'] for n in json.load(f)['nodes']}
    assert '_npi_concatenate' in ops and 'Concat' not in ops
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    register_onnx_converters()
    assert '_npi_concatenate' in MXNetGraph.registry_[13]


def test_cli_export(tmp_path, capsys):
    model = DenseNet()
    model.net(np.zeros((1, 1, 96, 96)))
    params = str(tmp_path / 'last.params')
    model.net.save_parameters(params)
    assert main(['export', '--params', params, '--format', 'onnx',
                 '--out', str(tmp_path / 'onnx')]) == 0
    assert capsys.readouterr().out.strip().endswith('densenet.onnx')
    assert main(['export', '--params', params, '--out', str(tmp_path / 'mx')]) == 0
    assert sorted(os.listdir(tmp_path / 'mx')) == ['densenet-0000.params',
                                                  'densenet-preprocess.json',
                                                  'densenet-symbol.json']
    assert main(['export', '--params', params, '--out', str(tmp_path / 'x'),
                 '--resize', '20']) == 2
    assert not (tmp_path / 'x').exists()


def test_the_books_resnet_exports_with_its_residual_additions(tmp_path):
    """d2l_resnet18's graph adds each residual branch (numpy-mode ``_npi_add``): exported
    as ONNX Add, computing what the model computes."""
    from densenet import get_model
    model = _with_stats(get_model('d2l_resnet18'), (1, 1, 32, 32))
    X = onp.random.RandomState(1).uniform(size=(2, 1, 32, 32)).astype('float32')
    expected = model(np.array(X)).asnumpy()
    (path,) = export(model, str(tmp_path), 'onnx', input_shape=(1, 1, 32, 32))
    assert 'Add' in {n.op_type for n in onnx.load(path).graph.node}
    got, _ = _onnx_run(path, X)
    assert abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max())
