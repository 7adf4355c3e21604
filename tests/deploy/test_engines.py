"""MXNet, ONNX Runtime and OpenVINO as engines: the same predictions at every precision.

The parity cases score the shipped book model on the first N Fashion-MNIST test
images against the package's own fp32 predictions (MXNet's fast path). The full
test split's requirement is >= 99% top-1 agreement and accuracy within 0.3
points; on N images both are estimates, so the bounds are derived from the counts:

- agreement: with a true disagreement rate of 1%, N = 2,000 images have 20
  disagreements on average, standard deviation sqrt(2000 * 0.01 * 0.99) = 4.4.
  Allowing 30 (98.5%) passes an engine at the limit with ~99% probability and
  still fails one at twice the limit (40 expected) ~95% of the time.
- accuracy: the two accuracies can differ only on the D images where the
  predictions disagree; if each of those is as likely to be fixed as broken, the
  difference in correct counts has standard deviation sqrt(D). The bound is
  0.3 points of N plus two of those standard deviations.
"""
import math
import os
import sys

import numpy as onp
import pytest

import densenet
from densenet.cli import main
from densenet.data import FashionMNIST
from densenet.data.batches import to_tensor
from densenet.deploy import engine
from densenet.deploy.engines import OPENVINO_HINTS, threads
from densenet.deploy.inference import calibration_images
from densenet.errors import UsageError
from densenet.system import runtime
from densenet.system.machine import unsupported

N = 2000
SIDE = 64  # the shipped model's input side
CASES = [(e, p) for e in ('mxnet', 'onnxruntime', 'openvino') for p in ('fp32', 'bf16', 'int8')
         if (e, p) not in (('mxnet', 'fp32'), ('onnxruntime', 'bf16'))]


@pytest.fixture(scope='module')
def shipped():
    return densenet.pretrained('book', 'fashion-mnist')


@pytest.fixture(scope='module')
def data(real_data_dir):
    return FashionMNIST(batch_size=250, resize=(SIDE, SIDE), root=real_data_dir)


@pytest.fixture(scope='module')
def subset(data):
    images, labels = data.val_arrays
    X = to_tensor(images[:N], (SIDE, SIDE)).asnumpy()
    return X, onp.asarray(labels[:N])


def _logits(run, X, batch=250):
    return onp.concatenate([run(X[i:i + batch]) for i in range(0, len(X), batch)])


@pytest.fixture(scope='module')
def reference(shipped, subset):
    """The package's own fp32 logits (MXNet's fast path)."""
    return _logits(engine(shipped, 'mxnet', 'fp32', input_shape=(1, 1, SIDE, SIDE)), subset[0])


def _needs(precision):
    why = unsupported(precision, runtime.capabilities())
    if why:
        pytest.skip(why)


@pytest.mark.slow
@pytest.mark.parametrize('name,precision', CASES)
def test_parity_with_fp32(shipped, data, subset, reference, name, precision):
    if precision == 'bf16':
        _needs('bf16')
    X, labels = subset
    calib = calibration_images(data) if precision == 'int8' else None
    run = engine(shipped, name, precision, calib, input_shape=(1, 1, SIDE, SIDE))
    got = _logits(run, X)
    assert got.shape == reference.shape and got.dtype == onp.float32
    preds, ref_preds = got.argmax(1), reference.argmax(1)
    disagree = int((preds != ref_preds).sum())
    assert disagree <= 30, f'{name} {precision}: {disagree} of {N} disagree with fp32'
    gap = abs(int((preds == labels).sum()) - int((ref_preds == labels).sum()))
    assert gap <= 0.003 * N + 2 * math.sqrt(disagree), (
        f'{name} {precision}: {gap} of {N} images apart from fp32 accuracy')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['onnxruntime', 'openvino'])
def test_fp32_engines_compute_the_same_logits(shipped, subset, reference, name):
    """fp32 is the same arithmetic in another order: float32 rounding only."""
    X = subset[0][:250]
    got = engine(shipped, name, 'fp32', input_shape=(1, 1, SIDE, SIDE))(X)
    assert abs(got - reference[:250]).max() <= 1e-3 * max(1.0, abs(reference).max())
    assert (got.argmax(1) == reference[:250].argmax(1)).all()


def test_bf16_refused_on_onnxruntime(shipped):
    with pytest.raises(UsageError, match='ONNX Runtime has no bfloat16 inference on CPUs'):
        engine(shipped, 'onnxruntime', 'bf16')


def test_precision_hint_and_threads_are_explicit():
    assert OPENVINO_HINTS == {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}
    assert threads() == int(os.environ.get('OMP_NUM_THREADS') or runtime.available_cores())


@pytest.mark.parametrize('module,name,extra', [('onnxruntime', 'onnxruntime', 'onnx'),
                                               ('openvino', 'openvino', 'openvino')])
def test_missing_extra_names_it(monkeypatch, shipped, module, name, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    with pytest.raises(UsageError, match=rf"needs .*: pip install 'densenet\[{extra}\]'"):
        engine(shipped, name, 'fp32')


def test_cli_missing_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    assert main(['evaluate', '--engine', 'onnxruntime']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("densenet evaluate: error: --engine onnxruntime needs ONNX Runtime: "
                          "pip install 'densenet[onnx]'"), err
    monkeypatch.setitem(sys.modules, 'openvino', None)
    assert main(['export', '--format', 'openvino', '--out', 'unused']) == 2
    assert "needs OpenVINO: pip install 'densenet[openvino]'" in capsys.readouterr().err


def test_cli_bf16_on_onnxruntime_is_a_usage_error(capsys):
    assert main(['predict', '--engine', 'onnxruntime', '--precision', 'bf16', 'x.png']) == 2
    assert 'ONNX Runtime has no bfloat16 inference on CPUs' in capsys.readouterr().err


@pytest.mark.slow
def test_cli_evaluate_onnxruntime_prints_what_mxnet_prints(capsys, tmp_path, real_data_dir):
    out = {}
    for name in ('mxnet', 'onnxruntime'):  # 300 images: the full split takes a minute a pass
        assert main(['evaluate', '--engine', name, '--data-dir', real_data_dir, '--limit', '300',
                     '--out', str(tmp_path / 'confusion.png')]) == 0
        out[name] = capsys.readouterr().out.splitlines()
    ort = out['onnxruntime']
    assert ort[0].endswith('300 images, fp32 on onnxruntime)')
    assert ort[1].startswith('fp32 accuracy ') and ort[1].endswith(
        'fp32 on onnxruntime - fp32 = +0.00 points; top-1 agreement with fp32 1.0000')
    # The same lines otherwise: accuracy, loss, per-class accuracies, the plot.
    assert [ort[0].replace(' on onnxruntime', ' on mxnet')] + ort[2:] == out['mxnet']


@pytest.mark.slow
def test_cli_predict_onnxruntime_prints_what_mxnet_prints(capsys, tmp_path, data):
    from PIL import Image
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f'{i}.png'))
        Image.fromarray(data.val_arrays[0][i]).save(paths[-1])
    out = {}
    for name in ('mxnet', 'onnxruntime'):
        assert main(['predict', '--engine', name, *paths]) == 0
        out[name] = capsys.readouterr().out
    assert out['onnxruntime'].replace('[fp32 on onnxruntime]', '[fp32 on mxnet]') == out['mxnet']
    assert out['mxnet'].count('\n') == 4 == out['mxnet'].count('[fp32 on mxnet]')


@pytest.mark.slow
def test_cli_export_openvino_matches_mxnet(tmp_path, capsys, shipped, subset, reference):
    import openvino as ov
    assert main(['export', '--format', 'openvino', '--out', str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / 'densenet.xml'), str(tmp_path / 'densenet.bin')]
    assert sorted(os.listdir(tmp_path)) == ['densenet.bin', 'densenet.xml']
    compiled = ov.Core().compile_model(str(tmp_path / 'densenet.xml'), 'CPU',
                                       {'INFERENCE_PRECISION_HINT': 'f32'})
    X = subset[0][:64]
    got = compiled(X)[0]
    # float32 weights (not halved) and f32 arithmetic: only summation order differs, so
    # the logits agree to float32 rounding over ~2e5 products per logit (well under 1e-3
    # of the logits' scale; float16 weights would be ~1e-2 off).
    assert abs(got - reference[:64]).max() <= 1e-3 * max(1.0, abs(reference).max())
