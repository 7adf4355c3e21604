"""--engine auto: the engine the recorded timings make fastest for the job, MXNet without them;
``densenet engines`` records them."""
import json
import os
import sys

import pytest
from mxnet import np

from densenet import get_model
from densenet.deploy import engines
from densenet.models.params import load_model

from helpers import cli

MODEL = get_model('book')
SHAPE = (1, 1, 32, 32)
MODEL(np.zeros(SHAPE))  # initialized: agreement is recorded for its weights


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'cache'))


def figures(build_s, one_s, batch_s):
    return engines.Figures(build_s=build_s, one_s=one_s, batch_s=batch_s, batch=64)


# MXNet starts at once but is slow per image; ONNX Runtime takes a second to build.
MX, ORT = figures(0.1, 0.02, 0.01), figures(1.0, 0.004, 0.002)


def choose(precision, images, batch, model=MODEL, shape=SHAPE):
    return engines.choose(model, shape, precision, images, batch)


# By hand, build + images x time per image: one image at batch 1, 0.12 s against 1.004 s;
# 20, 0.5 against 1.08; 100, 2.1 against 1.4; 10 at batch 64, 0.2 against 1.02; 10,000,
# 100.1 against 21.
@pytest.mark.parametrize('images, batch, expected', [
    (1, 1, 'mxnet'), (20, 1, 'mxnet'), (100, 1, 'onnxruntime'), (10, 64, 'mxnet'),
    (10000, 64, 'onnxruntime')])
def test_auto_picks_the_least_build_plus_images_times_time_per_image(images, batch, expected):
    engines.record(MODEL, SHAPE, {'fp32': {'mxnet': MX, 'onnxruntime': ORT}})
    name, how = choose('fp32', images, batch)
    assert name == expected
    assert how == f'auto: fastest measured here for {images} image{"s" * (images > 1)}'


def test_auto_without_timings_for_the_model_the_machine_or_the_engine(monkeypatch):
    assert choose('fp32', 10000, 64)[0] == 'mxnet'  # nothing recorded yet
    engines.record(MODEL, SHAPE, {'fp32': {'onnxruntime': ORT}})
    assert choose('fp32', 10000, 64)[0] == 'onnxruntime'
    name, how = choose('int8', 10000, 64)  # another precision
    assert name == 'mxnet' and 'densenet engines' in how
    assert choose('fp32', 10000, 64, shape=(1, 1, 64, 64))[0] == 'mxnet'  # another side
    other = get_model('book', growth_rate=16)  # another architecture
    assert choose('fp32', 10000, 64, model=other)[0] == 'mxnet'
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # `import onnxruntime` fails
    assert choose('fp32', 10000, 64)[0] == 'mxnet'  # uninstalled, or broken, since
    engines.record(MODEL, SHAPE, {'fp32': {'openvino': figures(2.0, 0.004, 0.003)}})
    assert choose('fp32', 10000, 64)[0] == 'openvino'  # the next fastest that imports
    monkeypatch.undo()
    monkeypatch.setattr(engines, 'machine_key', lambda: 'another CPU')
    assert choose('fp32', 10000, 64)[0] == 'mxnet'


def agreeing(f, agreement, model=MODEL):
    return engines.Figures(**f, agreement=agreement, agreement_images=1000,
                           agreement_weights=engines.weights_digest(model))


# INT8 on MXNet: a 4-second build, then 4x MXNet's fp32 per image; by hand, build + images x
# time per image at batch 64: 1 image, 0.12 s (fp32 mxnet) against 4.005; 10,000, 21 s (fp32
# onnxruntime) against 29 (int8 mxnet) and 14 (int8 openvino).
INT8_MX, INT8_OV = figures(4.0, 0.005, 0.0025), figures(9.0, 0.003, 0.0005)


@pytest.mark.parametrize('agreement, images, batch, expected', [
    (0.995, 1, 1, ('fp32', 'mxnet')), (0.995, 10000, 64, ('int8', 'openvino')),
    (0.99, 10000, 64, ('int8', 'openvino')),  # at the bar
    (0.9899, 10000, 64, ('fp32', 'onnxruntime')), (None, 10000, 64, ('fp32', 'onnxruntime'))])
def test_auto_precision_is_the_fastest_that_agrees_with_fp32(agreement, images, batch,
                                                             expected):
    int8 = {'mxnet': INT8_MX, 'openvino': INT8_OV}
    if agreement is not None:
        int8 = {name: agreeing(f, agreement) for name, f in int8.items()}
    engines.record(MODEL, SHAPE, {'fp32': {'mxnet': MX, 'onnxruntime': ORT}, 'int8': int8})
    precision, name, how = engines.choose_precision(MODEL, SHAPE, images, batch)
    assert (precision, name) == expected
    assert how.startswith(f'auto: fastest measured here for {images} image')
    assert ('top-1 agreement with fp32' in how) == (precision == 'int8')


def test_auto_precision_per_engine_and_without_timings():
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64) == (
        'fp32', 'mxnet', 'auto: no precision timed for this model here yet; `densenet engines` '
                         'times them')
    # Each engine's own agreement: OpenVINO's INT8 agrees too little, MXNet's enough.
    engines.record(MODEL, SHAPE, {'fp32': {'mxnet': MX, 'onnxruntime': ORT},
                                  'int8': {'mxnet': agreeing(INT8_MX, 0.996),
                                           'openvino': agreeing(INT8_OV, 0.95)}})
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64)[:2] == ('fp32', 'onnxruntime')
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64, 'mxnet')[:2] == ('int8', 'mxnet')
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64, 'openvino')[0] == 'fp32'
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64, 'mxnet', ('int8',))[:2] == (
        'fp32', 'mxnet')


def test_auto_precision_trusts_only_these_weights_agreement_and_needs_fp32_timed():
    int8 = {'openvino': agreeing(INT8_OV, 0.999)}
    # Without fp32's figures there is nothing to compare with: fp32 (INT8's build is not
    # worth one image).
    engines.record(MODEL, SHAPE, {'int8': int8})
    assert engines.choose_precision(MODEL, SHAPE, 1, 1)[:2] == ('fp32', 'mxnet')
    engines.record(MODEL, SHAPE, {'fp32': {'mxnet': MX, 'onnxruntime': ORT}})
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64)[:2] == ('int8', 'openvino')
    # The same architecture with other weights: same timings, its agreement unknown.
    other = get_model('book')
    other(np.zeros(SHAPE))
    first = next(iter(other.net.collect_params().values()))
    first.set_data(first.data() + 1)  # trained otherwise
    assert engines.model_key(other, SHAPE) == engines.model_key(MODEL, SHAPE)
    assert engines.weights_digest(other) != engines.weights_digest(MODEL)
    assert engines.choose_precision(other, SHAPE, 10000, 64)[:2] == ('fp32', 'onnxruntime')
    # A damaged INT8 entry leaves fp32's timings usable.
    engines.record(MODEL, SHAPE, {'int8': {'openvino': {'build_s': 'soon'}}})
    assert engines.choose_precision(MODEL, SHAPE, 10000, 64)[:2] == ('fp32', 'onnxruntime')
    assert engines.choose(MODEL, SHAPE, 'fp32', 10000, 64)[0] == 'onnxruntime'


def test_engines_without_a_test_split_times_all_the_same(monkeypatch, tmp_path):
    import densenet.cli.engines as command
    monkeypatch.setattr(command, 'locate', lambda root: None)  # no Fashion-MNIST here
    proc = cli('engines', '--precision', 'fp32', '--batch-size', '4')
    assert proc.stdout.startswith('top-1 agreement with fp32 not measured: no test split on '
                                  'this machine: give --data-dir or --data\n'), proc.stdout
    model, meta = load_model(engines_params())
    shape = (1, meta['channels'], meta['input_size'], meta['input_size'])
    with open(engines.user_cache(engines.RECORD)) as f:
        timed = json.load(f)['timings'][engines.machine_key()][engines.model_key(model, shape)]
    assert timed['fp32']['mxnet']['one_s'] > 0 and 'agreement' not in timed['fp32']['mxnet']
    # A split that was asked for and is not there is an error, before any timing.
    proc = cli('engines', '--precision', 'fp32', '--data-dir', str(tmp_path), check=False)
    assert proc.returncode == 2 and 'train-images-idx3' in proc.stderr and proc.stdout == ''


def engines_params():
    from densenet.models.pretrained import pretrained_path
    return pretrained_path('book', 'fashion-mnist')


def test_a_new_record_keeps_the_others_and_a_broken_file_is_measured_again():
    engines.record(MODEL, SHAPE, {'fp32': {'mxnet': MX}})
    engines.record(MODEL, SHAPE, {'int8': {'onnxruntime': ORT}})
    other = get_model('densenet_bc_100', depth=16)
    engines.record(other, SHAPE, {'fp32': {'onnxruntime': ORT}})
    with open(engines.user_cache(engines.RECORD)) as f:
        models = json.load(f)['timings'][engines.machine_key()]
    assert models[engines.model_key(MODEL, SHAPE)] == {'fp32': {'mxnet': MX},
                                                       'int8': {'onnxruntime': ORT}}
    assert models[engines.model_key(other, SHAPE)] == {'fp32': {'onnxruntime': ORT}}
    path, machine = engines.user_cache(engines.RECORD), engines.machine_key()
    key = engines.model_key(MODEL, SHAPE)
    damaged = ['{"truncated', '[]', json.dumps({'format': 1, 'timings': []}),
               json.dumps({'format': 1, 'timings': {machine: []}}),
               json.dumps({'format': 1, 'timings': {machine: {key: {'fp32': {
                   'onnxruntime': {'build_s': 1.0}}}}}}),  # a figure missing
               json.dumps({'format': 99, 'timings': {machine: {key: {'fp32': {
                   'onnxruntime': ORT}}}}})]  # another layout
    for text in damaged:
        with open(path, 'w') as f:
            f.write(text)
        assert choose('fp32', 10000, 64)[0] == 'mxnet', text
        engines.record(MODEL, SHAPE, {'fp32': {'onnxruntime': ORT}})  # written anew
        assert choose('fp32', 10000, 64)[0] == 'onnxruntime', text


def test_engines_refuses_a_precision_the_cpu_lacks_and_a_cache_it_cannot_write(
        tmp_path, monkeypatch):
    monkeypatch.setenv('DNNL_MAX_CPU_ISA', 'AVX2')  # no bf16 on any CPU, as oneDNN sees it
    proc = cli('engines', '--precision', 'bf16', check=False)
    assert proc.returncode == 2 and '--precision bf16: ' in proc.stderr, proc.stderr
    (tmp_path / 'a-file').write_text('')
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'a-file' / 'cache'))
    proc = cli('engines', '--precision', 'fp32', check=False)
    assert proc.returncode == 2 and 'set DENSENET_CACHE' in proc.stderr, proc.stderr
    assert proc.stdout == ''  # refused before any timing


@pytest.mark.slow
def test_engines_times_a_model_and_evaluate_predict_and_engine_follow(trained_run,
                                                                     real_data_dir, tmp_path):
    params = os.path.join(trained_run[0], 'best.params')
    model, meta = load_model(params)
    shape = (1, meta['channels'], meta['input_size'], meta['input_size'])
    common = ['--params', params, '--data-dir', real_data_dir, '--limit', '300',
              '--out', str(tmp_path / 'confusion.png')]
    before = cli('evaluate', *common).stdout.splitlines()[0]
    assert before.endswith('300 images, fp32 on mxnet; auto: no engine timed for this model '
                           'here yet; `densenet engines` times them)'), before
    proc = cli('engines', '--params', params, '--precision', 'fp32', '--batch-size', '16',
               '--data-dir', real_data_dir, '--limit', '300')
    with open(engines.user_cache(engines.RECORD)) as f:
        timed = json.load(f)['timings'][engines.machine_key()][engines.model_key(model, shape)]
    assert sorted(timed) == ['fp32'] and sorted(timed['fp32']) == sorted(engines.ENGINES)
    for f in timed['fp32'].values():
        assert f['batch'] == 16 and f['build_s'] > 0 and 0 < f['batch_s'] and 0 < f['one_s']
        # float32 everywhere: a flip or two of the top class at most, where two are close
        assert f['agreement_images'] == 300 and f['agreement'] >= 1 - 2 / 300
    assert timed['fp32']['mxnet']['agreement'] == 1  # the same graph as the reference
    one, many = (engines.choose(model, shape, 'fp32', n, b)[0] for n, b in ((1, 1), (10000, 256)))
    assert f'--engine auto, fp32: {one} for 1 image, {many} for 10000 images' in proc.stdout
    # Make OpenVINO the fastest: evaluate, predict and engine() then run on it.
    timed['fp32']['openvino'].update(build_s=0.0, one_s=1e-9, batch_s=1e-9)
    engines.record(model, shape, timed)
    out = cli('evaluate', *common).stdout
    line = out.splitlines()[0]
    assert line.endswith('300 images, fp32 on openvino; auto: fastest measured here for 300 '
                         'images)'), line
    assert 'top-1 agreement' not in out  # one pass: auto's fp32 is not scored against MXNet's
    named = cli('evaluate', *common, '--engine', 'openvino').stdout  # named: scored against it
    assert 'fp32 on openvino - fp32 = ' in named and 'auto' not in named
    accuracy = [float(text.split()[2]) for text in (line, before)]
    assert abs(accuracy[0] - accuracy[1]) <= 1 / 300 + 1e-9  # float32 on both: one flip at most
    image = str(tmp_path / 'x.png')
    from PIL import Image

    from densenet.data import load_split
    Image.fromarray(load_split('val', real_data_dir)[0][0]).save(image)
    proc = cli('predict', '--params', params, image)
    assert proc.stdout.startswith(f'{image}: ') and '[fp32 on openvino]' in proc.stdout
    named = cli('predict', '--params', params, '--engine', 'mxnet', image)
    assert '[fp32 on mxnet]' in named.stdout
    # predict's --precision auto: INT8 where it is the fastest and agrees enough with fp32
    for agreement, expected in ((0.98, '[fp32 on openvino]'), (0.999, '[int8 on mxnet]')):
        timed['int8'] = {'mxnet': {**timed['fp32']['mxnet'], 'build_s': 0.0, 'one_s': 1e-12,
                                   'batch_s': 1e-12, 'agreement': agreement}}
        assert timed['int8']['mxnet']['agreement_weights'] == engines.weights_digest(model)
        engines.record(model, shape, timed)
        proc = cli('predict', '--params', params, '--data-dir', real_data_dir, image)
        assert expected in proc.stdout, proc.stdout
    assert '[fp32 on openvino]' in cli('predict', '--params', params, '--precision', 'fp32',
                                       image).stdout
    assert engines.engine(params, 'auto', images=1000, batch=64).name == 'openvino'
