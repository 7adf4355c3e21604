"""The command line end to end, on real Fashion-MNIST (small subsets, small images)."""
import json
import os
import re
import signal

import numpy as onp
import pytest
from PIL import Image

from densenet.cli import main

from helpers import (
    TRAINED,
    TRAINED_LIMIT,
    VAL_LIMIT,
    cli,
    digest,
    kill_after_first_checkpoint,
    learning,
    read_metrics,
)

pytestmark = pytest.mark.slow

# The shared run (conftest's trained_run, TRAINED's settings) measured 0.7425 val accuracy
# after 2 epochs on 4000 images (seed 0); chance is 0.10.
ACC_THRESHOLD = 0.5


def test_train_writes_every_output(trained_run):
    out, proc = trained_run
    assert sorted(f for f in os.listdir(out) if not f.startswith('.')) == [
        'best.params', 'best.params.json', 'checkpoint', 'curves.png', 'last.params',
        'last.params.json', 'metrics.csv', 'summary.json']
    with open(os.path.join(out, 'best.params.json')) as f:
        meta = json.load(f)  # the run describes itself: evaluate/predict/export need no flags
    assert (meta['model'], meta['input_size'], meta['channels']) == ('book', 32, 1)
    assert meta['classes'][0] == 't-shirt' and len(meta['classes']) == 10
    rows = read_metrics(out)
    assert [r['epoch'] for r in rows] == ['1', '2']
    with open(os.path.join(out, 'summary.json')) as f:
        summary = json.load(f)
    assert {'config', 'final_val_acc', 'best_val_acc', 'epochs', 'wall_s',
            'machine'} <= set(summary)
    assert summary['epochs'] == 2 and summary['config']['limit'] == TRAINED_LIMIT
    from densenet.system import machine
    assert summary['machine']['cpu'] == machine.cpuinfo()[0]  # which CPU made the figures
    assert set(summary['machine']['precisions']) == {'fp32', 'int8', 'bf16'}
    assert summary['final_val_acc'] == pytest.approx(float(rows[-1]['val_acc']), abs=1e-5)
    assert summary['final_val_acc'] > ACC_THRESHOLD
    # fast-cpu scores the final model with flip averaging too (--tta), on the same images.
    assert summary['config']['tta'] and summary['final_val_acc_tta'] > ACC_THRESHOLD
    assert 'flip-averaged (--tta): final_val_acc_tta' in proc.stdout
    assert 'epoch 2/2: train loss' in proc.stdout and 'img/s' in proc.stdout
    assert 'no GPU' in proc.stdout  # the estimate of the book's full recipe, on this CPU
    assert f'img/s on this {machine.cpuinfo()[0]} [' in proc.stdout
    assert re.search(r'this run about \d+ (min|s) of training', proc.stdout)
    with Image.open(os.path.join(out, 'curves.png')) as im:
        assert im.size[0] > 300
    assert not [f for f in os.listdir(out) if f.startswith('.')]  # no temporaries left


def test_seed_determinism_and_resume_after_kill(trained_run, tmp_path, real_data_dir):
    base, _ = trained_run
    args = [*TRAINED, '--data-dir', real_data_dir]
    out = str(tmp_path / 'killed')
    saved, code = kill_after_first_checkpoint(args, out, settle=0.5)  # into epoch 2
    assert code == -signal.SIGKILL and saved['epoch'] == 1
    assert len(read_metrics(out)) == 1
    cli(*args, '--out', out, '--resume')
    assert learning(read_metrics(out)) == learning(read_metrics(base))
    # Another seed gives another run.
    other = str(tmp_path / 'seed1')
    cli(*args, '--out', other, '--seed', '1', '--epochs', '1')
    assert learning(read_metrics(other))[0] != learning(read_metrics(base))[0]


def test_resume_with_other_settings_is_refused(trained_run, real_data_dir, capsys):
    out, _ = trained_run
    code = main([*TRAINED, '--lr', '0.5', '--out', out, '--resume',
                 '--data-dir', real_data_dir])
    assert code == 2
    assert 'started with other settings (lr)' in capsys.readouterr().err


def test_resume_of_a_checkpoint_older_than_a_setting(trained_run, tmp_path, real_data_dir,
                                                     capsys):
    """A setting missing from an older checkpoint counts as its default (no smoothing)."""
    import shutil
    out = str(tmp_path / 'old')
    shutil.copytree(trained_run[0], out)
    state = os.path.join(out, 'checkpoint', 'state.json')
    with open(state) as f:
        saved = json.load(f)
    del saved['config']['label_smoothing']
    with open(state, 'w') as f:
        json.dump(saved, f)
    args = [*TRAINED, '--out', out, '--resume', '--data-dir', real_data_dir]
    # The run used the recipe's 0.1, so a checkpoint without the key reads as 0: refused.
    assert main(args) == 2
    assert 'started with other settings (label_smoothing)' in capsys.readouterr().err
    # Said explicitly, the old default is accepted; both epochs are done, so nothing retrains.
    assert main([*args, '--label-smoothing', '0']) == 0
    assert f'resuming {out} after epoch 2' in capsys.readouterr().out
    assert len(read_metrics(out)) == 2


def test_book_literal_imperative_path_trains(tmp_path, real_data_dir):
    out = str(tmp_path / 'imperative')
    proc = cli('train', '--no-hybridize', '--resize', '32', '--limit', '512', '--epochs', '1',
               '--val-limit', '1000', '--out', out, '--data-dir', real_data_dir)
    assert 'epoch 1/1' in proc.stdout
    with open(os.path.join(out, 'summary.json')) as f:
        cfg = json.load(f)['config']
    assert cfg['hybridize'] is False and cfg['lr'] == 0.01 and cfg['recipe'] == 'book'


def test_memory_efficient_fast_path_trains_like_the_standard_one(tmp_path, real_data_dir):
    """--memory-efficient on the fast path: the same loop, the same learning. Four steps
    at lr 0.1 amplify float32 rounding, so the yardstick is how far the two standard
    paths (hybridized and book-literal imperative, the same math) already differ."""
    args = ['train', '--resize', '32', '--limit', '256', '--batch-size', '64', '--epochs', '1',
            '--lr', '0.1', '--val-limit', '1000', '--data-dir', real_data_dir]
    runs = {name: str(tmp_path / name) for name in ('fast', 'imperative', 'me')}
    cli(*args, '--out', runs['fast'])
    cli(*args, '--out', runs['imperative'], '--no-hybridize')
    proc = cli(*args, '--out', runs['me'], '--memory-efficient')
    assert 'Subgraph backend' not in proc.stderr  # MXNet's bind message is muted
    with open(os.path.join(runs['me'], 'summary.json')) as f:
        cfg = json.load(f)['config']
    assert cfg['memory_efficient'] is True and cfg['hybridize'] is True
    fast, imperative, me = (learning(read_metrics(runs[k]))[0]
                            for k in ('fast', 'imperative', 'me'))
    for key in ('train_loss', 'val_loss'):
        spread = abs(float(fast[key]) - float(imperative[key]))
        assert abs(float(me[key]) - float(fast[key])) <= 5 * spread + 1e-4, (key, fast, me)


def test_evaluate(trained_run, real_data_dir, tmp_path):
    out, _ = trained_run
    png = str(tmp_path / 'cm.png')  # not inside the shared run, which other tests read
    proc = cli('evaluate', '--params', os.path.join(out, 'last.params'), '--out', png,
               '--data-dir', real_data_dir, '--limit', str(VAL_LIMIT))
    lines = proc.stdout.splitlines()
    acc = float(lines[0].split()[2])
    with open(os.path.join(out, 'summary.json')) as f:  # the run validated on the same images
        assert acc == pytest.approx(json.load(f)['final_val_acc'], abs=1e-4)
    per_class = [float(line.split()[-1]) for line in lines[1:11]]
    # The per-class accuracies, weighted by each class's images, give the accuracy.
    from densenet.data import load_split
    from densenet.data.batches import validation_part
    labels = load_split('val', real_data_dir)[1]
    counts = onp.bincount(labels[validation_part(len(labels), VAL_LIMIT)], minlength=10)
    assert len(per_class) == 10
    assert onp.dot(per_class, counts) / counts.sum() == pytest.approx(acc, abs=1e-4)
    assert lines[1].split()[0] == 't-shirt'
    with Image.open(png) as im:
        assert im.format == 'PNG'


def test_predict(trained_run, real_data_dir, tmp_path):
    out, _ = trained_run
    from densenet.data import load_split
    images, labels = load_split('val', real_data_dir)
    paths = []
    for i in range(4):
        p = str(tmp_path / f'img{i}.png')
        Image.fromarray(images[i]).save(p)
        paths.append(p)
    big = str(tmp_path / 'big.jpg')
    Image.fromarray(images[0]).resize((56, 56)).convert('RGB').save(big)
    proc = cli('predict', '--params', os.path.join(out, 'best.params'), *paths, big)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5
    names = {'t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt',
             'sneaker', 'bag', 'ankle boot'}
    for line in lines:
        m = re.match(r'(.+): (.+) \((0\.\d+|1\.000)\)', line)
        assert m and m.group(2) in names and float(m.group(3)) > 0.1
    # A Fashion-MNIST model: a file not already 28x28 on a dark background is made like the
    # dataset's images, and the line says so; a test image passes as it is.
    assert re.search(r'\(made like Fashion-MNIST from a photo: converted RGB to grayscale, '
                     r'(background trimmed, )?fit 56x\d+ into 28x28; --no-convert skips '
                     r'this\)$', lines[-1]), lines[-1]
    assert '(' not in lines[0].split(')', 1)[1]


BAD = [
    (['train', '--epochs', '-1'], 'argument --epochs: must be at least 1, got -1'),
    (['train', '--batch-size', '0'], 'argument --batch-size: must be at least 1, got 0'),
    (['train', '--resize', '28', '--epochs', '1'], '--resize 28 is below the model\'s '
                                                    'minimum input size 29'),
    (['train', '--device', 'tpu'], "bad device 'tpu'"),
    (['train', '--label-smoothing', '1.5'], '--label-smoothing must be in [0, 1), got 1.5'),
    (['train', '--erase', '1.5'], '--erase must be a probability in [0, 1] (0: off)'),
    (['train', '--holdout', '-5'], '--holdout must be between 0 and 59999 images, got -5'),
    (['evaluate', '--params', 'nowhere.params'], '--params nowhere.params: no such file'),
    (['train', '--wd', 'nan'], '--wd must be a finite number >= 0, got nan'),
    (['train', '--lr', 'inf'], '--lr must be a positive finite number, got inf'),
    (['train', '--seed', '-1'], '--seed must be between 0 and 2**32 - 1, got -1'),
    (['train', '--data-dir', 'missing'], '--data-dir missing: no such folder'),
    (['train', '--resume', '--overwrite'], 'choose one'),
    (['train', '--recipe', 'nope'], "argument --recipe: invalid choice: 'nope'"),
    (['train', '--data', '.', '--data-dir', '.'], 'name two datasets: give one'),
    (['evaluate', '--data', '.', '--data-dir', '.'], 'name two datasets: give one'),
]


@pytest.mark.parametrize('argv,message', BAD)
def test_bad_values_exit_2_and_write_nothing(tmp_path, argv, message):
    proc = cli(*argv, *(['--out', 'out'] if argv[0] == 'train' else []),
               cwd=tmp_path, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert message in err[-1] and len([line for line in err if 'error' in line]) == 1
    assert 'usage:' not in proc.stderr  # one line, not argparse's usage block
    assert os.listdir(tmp_path) == []


def test_bad_paths_and_files_exit_2_with_one_line(trained_run, tmp_path, real_data_dir):
    """Each names the flag or file and the fix; nothing is created, no traceback."""
    import shutil
    run, _ = trained_run
    (tmp_path / 'file').write_text('x')
    (tmp_path / 'random.params').write_bytes(onp.random.RandomState(0).bytes(1000))
    (tmp_path / 'text.params').write_text('hello')
    (tmp_path / 'empty').mkdir()
    Image.fromarray(onp.zeros((28, 28), onp.uint8)).save(tmp_path / 'x.png')
    no_ckpt, bad_state = tmp_path / 'no-ckpt', tmp_path / 'bad-state'
    for copy in (no_ckpt, bad_state):
        shutil.copytree(run, copy)
    os.remove(no_ckpt / 'checkpoint' / 'epoch-0002.params')
    (bad_state / 'checkpoint' / 'state.json').write_text('{"epoch": 2, "rows": [')
    train = [*TRAINED, '--data-dir', real_data_dir]
    cases = [
        (['train', '--out', 'file'], '--out file is a file, not a folder'),
        (['train', '--out', 'file/below'], 'is a file, so no folder can be made inside it'),
        (['export', '--params', os.path.join(run, 'last.params'), '--out', 'file'],
         '--out file is a file, not a folder'),
        (['predict', '--params', 'random.params', 'x.png'],
         'random.params is not an MXNet parameter file (MXNetError: Check failed'),
        (['predict', '--params', 'text.params', 'x.png'], 'Invalid NDArray file format'),
        ([*train, '--out', str(no_ckpt), '--resume'], 'epoch-0002.params is missing'),
        ([*train, '--out', str(bad_state), '--resume'], 'state.json is damaged'),
        (['train', '--data-dir', 'empty'], '--data-dir empty: train-images-idx3-ubyte'),
        (['evaluate', '--params', 'x.png', '--data-dir', 'empty'], '--data-dir empty:'),
    ]
    before = digest(tmp_path)
    for argv, message in cases:
        proc = cli(*argv, cwd=tmp_path, check=False)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (argv, proc.stderr[-1000:])
        assert len(err) == 1 and message in err[0], (argv, err)
    assert digest(tmp_path) == before


def test_params_of_another_architecture(tmp_path):
    from mxnet import np

    from densenet import DenseNet
    other = DenseNet(arch=(2, 2))
    other(np.zeros((1, 1, 32, 32)))
    path = str(tmp_path / 'other.params')
    other.net.save_parameters(path)
    proc = cli('predict', '--params', path, path, check=False)
    assert proc.returncode == 2 and 'not a readable image' in proc.stderr
    img = str(tmp_path / 'x.png')
    Image.fromarray(onp.zeros((28, 28), onp.uint8)).save(img)
    before = sorted(os.listdir(tmp_path))
    proc = cli('predict', '--params', path, img, check=False)
    assert proc.returncode == 2
    assert 'does not fit the book model with 10 classes' in proc.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_unexpected_errors_keep_their_traceback(monkeypatch, capsys):
    """Only usage errors become one line and status 2; a bug is raised as it is."""
    import densenet.cli

    def buggy(args):
        raise ValueError('a bug inside the library, not a bad flag')
    monkeypatch.setitem(densenet.cli.COMMANDS, 'info', buggy)
    with pytest.raises(ValueError, match='a bug inside the library'):
        main(['info'])
    assert main(['evaluate', '--params', 'nowhere.params']) == 2
    assert capsys.readouterr().err.strip() == ('densenet evaluate: error: --params '
                                               'nowhere.params: no such file')
