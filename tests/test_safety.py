"""No silent wrong results and no lost runs: divergence, run folders, odd images, bad inputs."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as onp
import pytest
from mxnet import np
from PIL import Image

from densenet import DenseNet, densenet_bc
from densenet.data.images import ImageError, read_image
from helpers import digest

pytestmark = pytest.mark.slow

QUICK = ['--limit', '512', '--resize', '32']


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'densenet', *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize('lr', ['1e30', '1e6'])
def test_divergence_stops_the_run_and_writes_nothing(tmp_path, real_data_dir, lr):
    """1e30: NaN at step 2; 1e6: a finite loss of 1e25 before it (the 100 ln 10 bound)."""
    out = tmp_path / 'X'
    proc = cli('train', *QUICK, '--epochs', '2', '--holdout', '500', '--lr', lr,
               '--out', str(out), '--data-dir', real_data_dir)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()[-1]
    assert 'training diverged' in err and f'learning rate {float(lr):.4g}' in err
    assert 'lower --lr' in err and 'Traceback' not in proc.stderr
    assert not out.exists()  # no params, no "best" from NaN, no empty folder


def test_params_holding_nan_are_refused(tmp_path):
    model = DenseNet()
    model.net(np.zeros((1, 1, 96, 96)))
    first = next(iter(model.net.collect_params().values()))
    first.set_data(first.data() * onp.nan)
    params = str(tmp_path / 'nan.params')
    model.net.save_parameters(params)
    img = str(tmp_path / 'x.png')
    Image.fromarray(onp.zeros((28, 28), onp.uint8)).save(img)
    for argv in (['predict', '--params', params, img], ['export', '--params', params,
                                                        '--out', str(tmp_path / 'e')]):
        proc = cli(*argv)
        assert proc.returncode == 2
        assert 'holds NaN or infinite values' in proc.stderr and 'diverged' in proc.stderr
    assert not (tmp_path / 'e').exists()


@pytest.fixture(scope='module')
def finished(tmp_path_factory, real_data_dir):
    out = tmp_path_factory.mktemp('finished') / 'R'
    proc = cli('train', *QUICK, '--epochs', '1', '--out', str(out), '--data-dir', real_data_dir)
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_finished_run_is_not_overwritten(finished, real_data_dir):
    before = digest(finished)
    proc = cli('train', *QUICK, '--epochs', '1', '--out', str(finished), '--data-dir',
               real_data_dir)
    assert proc.returncode == 2
    assert 'already holds a run' in proc.stderr and '--overwrite' in proc.stderr
    assert digest(finished) == before


def test_overwrite_replaces_the_run(finished, tmp_path, real_data_dir):
    import shutil
    out = tmp_path / 'R'
    shutil.copytree(finished, out)
    (out / 'best.params').write_bytes(b'stale')
    proc = cli('train', *QUICK, '--epochs', '1', '--out', str(out), '--data-dir',
               real_data_dir, '--overwrite')
    assert proc.returncode == 0, proc.stderr
    assert 'replacing the run' in proc.stdout
    assert (out / 'best.params').read_bytes() != b'stale'
    assert digest(out).keys() == digest(finished).keys()  # no lock file left


def test_two_concurrent_runs_and_a_stale_lock(tmp_path, real_data_dir):
    out = tmp_path / 'R'
    args = ['train', *QUICK, '--epochs', '3', '--data-dir', real_data_dir, '--out', str(out)]
    first = subprocess.Popen([sys.executable, '-m', 'densenet', *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / 'checkpoint' / 'state.json').exists() and time.time() < deadline:
            time.sleep(0.05)
        second = cli(*args)
        assert second.returncode == 2
        assert f'in use by another run (pid {first.pid}' in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The killed run left its lock (and maybe a temporary): --resume takes both over.
    assert (out / '.lock').exists()
    (out / '.curves.png.abcd1234').write_bytes(b'half-written')
    resumed = cli(*args, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    assert 'resuming' in resumed.stdout
    assert sorted(f for f in os.listdir(out) if f.startswith('.')) == []


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path, real_data_dir):
    proc = cli('train', *QUICK, '--epochs', '1', '--out', str(tmp_path / 'new'),
               '--data-dir', real_data_dir, '--resume')
    assert proc.returncode == 0, proc.stderr
    assert 'no checkpoint in' in proc.stdout and 'starts from epoch 1' in proc.stdout


def _ramp16():
    return (onp.arange(28 * 28).reshape(28, 28) * (65535 / (28 * 28 - 1))).astype(onp.uint16)


def test_16_bit_images_keep_their_range(tmp_path):
    path = str(tmp_path / 'ramp16.png')
    ramp = _ramp16()
    Image.fromarray(ramp).save(path)
    gray, notes = read_image(path)
    # convert('L') made 99.5% of these pixels 255; scaled, they follow the ramp.
    assert gray.dtype == onp.uint8 and gray.min() == 0 and gray.max() == 255
    assert (gray == 255).mean() < 0.01
    assert onp.array_equal(gray, onp.rint(ramp / 257).astype(onp.uint8))
    assert notes == ['converted I;16 to grayscale']


def test_float_palette_alpha_and_exif_orientation(tmp_path):
    ramp = _ramp16() / 65535
    Image.fromarray(ramp.astype(onp.float32), 'F').save(tmp_path / 'f.tiff')
    assert onp.array_equal(read_image(str(tmp_path / 'f.tiff'))[0],
                           onp.rint(ramp * 255).astype(onp.uint8))
    rgba = onp.zeros((28, 28, 4), onp.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 128  # light grey, half transparent, over black
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    assert set(read_image(str(tmp_path / 'a.png'))[0].ravel()) == {round(200 * 128 / 255)}
    levels = (onp.arange(28 * 28).reshape(28, 28) % 4 * 80).astype(onp.uint8)
    Image.fromarray(levels).convert('P').save(tmp_path / 'p.png')
    assert onp.array_equal(read_image(str(tmp_path / 'p.png'))[0], levels)
    tall = onp.zeros((40, 20), onp.uint8)
    tall[0, :] = 255  # top row white
    img = Image.fromarray(tall)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / 'o.jpg', exif=exif, quality=100)
    shown = read_image(str(tmp_path / 'o.jpg'))[0]
    assert shown.shape == (20, 40) and shown[:, -1].mean() > 200  # the top row is now right
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    with pytest.raises(ImageError, match='bad.png: not a readable image'):
        read_image(str(tmp_path / 'bad.png'))


@pytest.mark.parametrize('make,side', [(DenseNet, 32), (lambda: densenet_bc(
    depth=22, growth_rate=4, in_channels=1), 16)])
def test_bad_labels_and_batches_are_refused(make, side):
    model = make()
    X = np.random.uniform(size=(2, 1, side, side))
    Y = model(X)
    with pytest.raises(ValueError, match=r'labels must be class indices 0\.\.9.*\[10\.0, -1\.0\]'):
        model.loss(Y, np.array([10, -1]))
    with pytest.raises(ValueError, match=r'whole numbers.*\[9\.7, 0\.2\]'):
        model.loss(Y, np.array([9.7, 0.2]))
    assert float(model.loss(Y, np.array([9, 0]))) > 0
    for dtype, scale in (('float64', ''), ('int32', ' / 255'), ('uint8', ' / 255')):
        fix = f'got a batch of {dtype}; convert it with X.astype("float32"){scale}'
        with pytest.raises(ValueError, match=re.escape(fix)):
            model(X.astype(dtype))
    with pytest.raises(ValueError, match='empty batch'):
        model(np.zeros((0, 1, side, side)))
    with pytest.raises(ValueError, match='NaN or infinite'):
        model(X * onp.nan)
