"""Every registered model through the same tools: train --model/--data/--init, then
evaluate, predict, export and features from the params file alone; shipped weights."""
import json
import os
import shutil

import mxnet as mx
import numpy as onp
import pytest

from densenet.cli import main

from helpers import cli, digest, write_folder

pytestmark = pytest.mark.slow

QUICK = ['--recipe', 'fast-cpu', '--resize', '32']


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'cache'))


def params_arrays(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


@pytest.mark.parametrize('model', [['--model', 'densenet_bc_100', '--model-arg', 'depth=16'],
                                   ['--model', 'book']])
def test_train_then_evaluate_predict_export_from_the_params_alone(tmp_path, real_data_dir,
                                                                  model, request):
    out = str(tmp_path / 'run')
    if model[1] == 'book':  # the shared run (conftest's trained_run) trained the book's;
        # a copy, since evaluate writes its confusion matrix beside the params
        shutil.copytree(request.getfixturevalue('trained_run')[0], out)
    else:
        cli('train', *QUICK, *model, '--limit', '1000', '--epochs', '1', '--batch-size', '64',
            '--val-limit', '500', '--out', out, '--data-dir', real_data_dir)
    params = os.path.join(out, 'best.params')
    with open(params + '.json') as f:
        meta = json.load(f)
    assert meta['model'] == model[1] and meta['input_size'] == 32
    with open(os.path.join(out, 'summary.json')) as f:
        summary = json.load(f)
    limit = ['--limit', str(summary['config']['val_limit'])]  # the images the run validated on
    ev = cli('evaluate', '--params', params, '--data-dir', real_data_dir, *limit).stdout
    # best.params is the best epoch's model (the last of a 1-epoch run), on the same images
    assert f'test accuracy {summary["best_val_acc"]:.4f}' in ev
    image = str(tmp_path / 'x.png')
    from PIL import Image

    from densenet.data import load_split
    Image.fromarray(load_split('val', real_data_dir)[0][0]).save(image)
    pred = cli('predict', '--params', params, image).stdout
    assert pred.startswith(f'{image}: ') and pred.split(': ')[1].split(' (')[0] in meta['classes']
    if model[1] != 'book':  # INT8 for a BC model too (the book's is test_inference's)
        int8 = cli('evaluate', '--params', params, '--data-dir', real_data_dir, *limit,
                   '--precision', 'int8')
        assert 'top-1 agreement with fp32' in int8.stdout
        assert 'Warning' not in int8.stderr  # none of MXNet's quantizer's reaches the user
    for fmt in ('mxnet', 'onnx'):
        cli('export', '--params', params, '--format', fmt, '--out', str(tmp_path / fmt))
    # The ONNX file computes what the model computes (onnxruntime, one test image).
    import onnxruntime

    from densenet import load_model
    from densenet.data.batches import to_tensor
    X = to_tensor(load_split('val', real_data_dir)[0][:4], (32, 32))
    net, _ = load_model(params)
    expected = net(X).asnumpy()
    sess = onnxruntime.InferenceSession(str(tmp_path / 'onnx' / 'densenet.onnx'))
    got = sess.run(None, {sess.get_inputs()[0].name: X.asnumpy()})[0]
    # float32 logits of a few units; summation order differs between the runtimes.
    assert abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max())


def test_params_saved_from_a_notebook_work_in_every_command(tmp_path, real_data_dir):
    """model.save_parameters (keys net.0.0.weight) and a bare file with --model."""
    from densenet import get_model
    model = get_model('densenet_bc_100', depth=40, in_channels=1)
    whole = str(tmp_path / 'notebook.params')
    model.save_parameters(whole)
    proc = cli('export', '--params', whole, '--out', str(tmp_path / 'e'), check=False)
    assert proc.returncode == 2 and 'does not fit the book model' in proc.stderr  # no metadata
    cli('export', '--params', whole, '--model', 'densenet_bc_100', '--model-arg', 'depth=40',
        '--resize', '32', '--out', str(tmp_path / 'e'))
    assert os.path.isfile(tmp_path / 'e' / 'densenet-symbol.json')
    book = get_model('book')
    book.save_parameters(str(tmp_path / 'book.params'))
    ev = cli('evaluate', '--params', str(tmp_path / 'book.params'), '--resize', '32',
             '--data-dir', real_data_dir, '--limit', '500').stdout
    assert 'test accuracy' in ev


@pytest.mark.parametrize('rgb', [False, True])
def test_image_folder_through_the_cli(tmp_path, fashion_folder, rgb):
    folder = fashion_folder(rgb)
    out = str(tmp_path / 'run')
    before = digest(folder)
    cli('train', *QUICK, '--data', folder, '--epochs', '6', '--batch-size', '32', '--out', out)
    assert digest(folder) == before
    with open(os.path.join(out, 'summary.json')) as f:
        summary = json.load(f)
    # Measured (3 classes, 480 training and 120 validation images, 6 epochs): 0.9167,
    # 0.9250, 0.9417 (grayscale, seeds 0-2), 0.9333 (RGB); chance is 0.33.
    assert summary['final_val_acc'] >= 0.80
    meta = summary['model']
    assert meta['classes'] == ['0-t-shirt', '1-trouser', '2-pullover']
    assert meta['channels'] == (3 if rgb else 1)
    params = os.path.join(out, 'best.params')
    ev = cli('evaluate', '--params', params, '--data', folder).stdout
    assert f'test accuracy {summary["best_val_acc"]:.4f} (loss' in ev  # the run's own val split
    assert '1-trouser' in ev and '120 images' in ev
    image = os.path.join(folder, '1-trouser', sorted(os.listdir(
        os.path.join(folder, '1-trouser')))[0])
    pred = cli('predict', '--params', params, image).stdout
    assert pred.split(': ')[1].split(' (')[0] in meta['classes']
    npz = str(tmp_path / 'features.npz')
    cli('features', '--params', params, '--data', folder, '--split', 'all', '--out', npz)
    with onp.load(npz) as f:
        assert f['features'].shape == (600, 248) and sorted(set(f['split'])) == ['train', 'val']
        assert list(f['classes']) == meta['classes'] and len(f['paths']) == 600
        assert all(os.path.basename(os.path.dirname(p)) == meta['classes'][label]
                   for p, label in zip(f['paths'], f['labels'], strict=True))
    # Fashion-MNIST is not this model's data: a clear error, not a shape mismatch.
    proc = cli('evaluate', '--params', params, check=False)
    assert proc.returncode == 2 and '3 classes, not Fashion-MNIST' in proc.stderr


def test_bad_folders_on_the_command_line(tmp_path, real_data_dir):
    one = str(tmp_path / 'one')
    write_folder(one, per_class=2, classes=(0,), data_dir=real_data_dir)
    broken = str(tmp_path / 'broken')
    write_folder(broken, per_class=2, classes=(0, 1), data_dir=real_data_dir)
    with open(os.path.join(broken, '0-t-shirt', 'x.jpg'), 'wb') as f:
        f.write(b'\xff\xd8 truncated')
    before = digest(tmp_path)
    for folder, message in [(str(tmp_path / 'none'), 'no such folder'),
                            (one, 'a classifier needs at least two'),
                            (broken, 'x.jpg: not a readable image')]:
        proc = cli('train', *QUICK, '--data', folder, '--out', str(tmp_path / 'out'),
                   check=False)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and message in err[0], proc.stderr
    assert digest(tmp_path) == before and not os.path.exists(tmp_path / 'out')
    proc = cli('train', *QUICK, '--data', broken, '--skip-bad-images', '--epochs', '1',
               '--out', str(tmp_path / 'out'))
    assert 'skipped 1 unreadable image(s)' in proc.stdout


def test_fine_tuning_beats_scratch_and_freezing_trains_only_the_head(tmp_path, real_data_dir):
    """Features learned on all ten classes (other images) give a 5-class model a head start
    that training from scratch does not catch up with in 2 epochs."""
    src, dst = str(tmp_path / 'src'), str(tmp_path / 'dst')
    write_folder(src, per_class=200, offset=100, classes=tuple(range(10)), data_dir=real_data_dir)
    write_folder(dst, per_class=100, classes=(5, 6, 7, 8, 9), data_dir=real_data_dir)
    common = [*QUICK, '--batch-size', '32', '--val-split', '0.5']
    cli('train', *common, '--data', src, '--epochs', '6', '--out', str(tmp_path / 'src-run'))
    source = str(tmp_path / 'src-run' / 'last.params')

    def acc(name, *extra):
        out = str(tmp_path / name)
        cli('train', *common, '--data', dst, '--epochs', '2', '--out', out, *extra)
        with open(os.path.join(out, 'summary.json')) as f:
            return json.load(f)['final_val_acc'], os.path.join(out, 'last.params')
    scratch, _ = acc('scratch')
    tuned, _ = acc('tuned', '--init', source)
    # Measured after 2 epochs (16 steps, 250 validation images, seed 0): from the ten
    # classes' weights 0.836, from scratch 0.644 (both scored with up-to-date BatchNorm
    # statistics). One accuracy on 250 images has a standard error of about 0.025, a
    # difference of two about 0.036: a margin of 0.1 is ~3 of those.
    assert tuned >= scratch + 0.1, (tuned, scratch)
    frozen, path = acc('frozen', '--init', source, '--freeze-features')
    before, after = params_arrays(source), params_arrays(path)
    head = max(k for k in after if k.endswith('.weight') and after[k].ndim == 2).split('.')[0]
    changed = sorted(k for k in after if k.split('.')[0] == head)
    assert changed == [f'{head}.bias', f'{head}.weight']
    for k in after:  # BatchNorm statistics included
        if k.split('.')[0] != head:
            assert onp.array_equal(after[k], before[k]), k
    assert after[f'{head}.weight'].shape[0] == 5 and before[f'{head}.weight'].shape[0] == 10
    assert frozen > 0.2  # above chance for 5 classes


def test_shipped_weights_reproduce_their_accuracy(real_data_dir, capsys, tmp_path,
                                                 monkeypatch):
    from densenet.models import pretrained
    from densenet.models.pretrained import pretrained_info
    info = pretrained_info('book', 'fashion-mnist')
    assert info['recipe'] == 'fast-cpu' and info['model'] == 'book'
    model = pretrained('book', 'fashion-mnist')
    assert model.hparams['num_classes'] == 10
    monkeypatch.chdir(tmp_path)
    from densenet.models.pretrained import WEIGHTS_DIR
    shipped = sorted(os.listdir(WEIGHTS_DIR))
    assert main(['evaluate', '--data-dir', real_data_dir]) == 0
    assert os.path.isfile(tmp_path / 'confusion.png')  # here, not inside the package
    assert sorted(os.listdir(WEIGHTS_DIR)) == shipped
    line = capsys.readouterr().out.splitlines()[0]
    acc = float(line.split()[2])
    # Recorded on the AMD EPYC (AVX-512) that trained it. Other CPUs run other oneDNN
    # kernels: logits differ in the last bits and near-ties among 10,000 images may
    # flip; 0.0005 (5 images) allows that and catches a wrong model or preprocessing.
    assert abs(acc - info['test_accuracy']) <= 0.0005, (acc, info['test_accuracy'])


def test_damaged_shipped_weights_are_refused(tmp_path, monkeypatch):
    import importlib
    pt = importlib.import_module('densenet.models.pretrained')  # the module, not the function
    copy = tmp_path / 'weights'
    shutil.copytree(pt.WEIGHTS_DIR, copy)
    with open(copy / 'book-fashion-mnist.params', 'r+b') as f:
        f.seek(1000)
        f.write(b'\x00\x01\x02')
    monkeypatch.setattr(pt, 'WEIGHTS_DIR', str(copy))
    from densenet.errors import UsageError
    with pytest.raises(UsageError, match='differs from the recorded .* the file is damaged'):
        pt.pretrained()


def test_the_books_resnet_through_every_command(tmp_path, fashion_folder):
    """d2l_resnet18, the DenseNet's baseline: one short training on an image folder, then
    evaluate, predict and export (MXNet, ONNX) from the params file alone."""
    folder = fashion_folder()
    out = str(tmp_path / 'run')
    cli('train', '--model', 'd2l_resnet18', '--data', folder, '--limit', '128',
        '--resize', '16', '--batch-size', '32', '--epochs', '1', '--out', out)
    params = os.path.join(out, 'best.params')
    with open(os.path.join(out, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['model']['model'] == 'd2l_resnet18'
    ev = cli('evaluate', '--params', params, '--data', folder).stdout
    assert f'test accuracy {summary["best_val_acc"]:.4f} (loss' in ev  # the run's val split
    image = os.path.join(folder, '1-trouser', sorted(os.listdir(
        os.path.join(folder, '1-trouser')))[0])
    pred = cli('predict', '--params', params, image).stdout
    assert pred.split(': ')[1].split(' (')[0] in summary['model']['classes']
    for fmt in ('mxnet', 'onnx'):
        cli('export', '--params', params, '--format', fmt, '--out', str(tmp_path / fmt))
    assert os.path.isfile(tmp_path / 'mxnet' / 'densenet-symbol.json')
    import onnxruntime

    from densenet import load_model
    from densenet.data.batches import to_tensor
    from densenet.data.images import read_image
    X = to_tensor(read_image(image, 1)[0][None], (16, 16))
    expected = load_model(params)[0](X).asnumpy()
    sess = onnxruntime.InferenceSession(str(tmp_path / 'onnx' / 'densenet.onnx'))
    got = sess.run(None, {sess.get_inputs()[0].name: X.asnumpy()})[0]
    assert abs(got - expected).max() <= 1e-4 * max(1.0, abs(expected).max())
