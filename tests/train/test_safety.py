"""No silent wrong results and no lost runs: divergence, NaN parameters, run folders."""
import os
import signal
import subprocess
import sys
import time

import numpy as onp
import pytest
from mxnet import np
from PIL import Image

from densenet import DenseNet

from helpers import TRAINED_EPOCHS, digest

pytestmark = pytest.mark.slow

QUICK = ['--limit', '512', '--resize', '32', '--val-limit', '1000']


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


@pytest.fixture
def finished(trained_run, tmp_path):
    """A copy of the shared finished run (conftest's trained_run)."""
    import shutil
    out = tmp_path / 'finished'
    shutil.copytree(trained_run[0], out)
    return out


def test_a_finished_run_is_not_overwritten(finished, real_data_dir):
    before = digest(finished)
    proc = cli('train', *QUICK, '--epochs', '1', '--out', str(finished), '--data-dir',
               real_data_dir)
    assert proc.returncode == 2
    assert 'already holds a run' in proc.stderr and '--overwrite' in proc.stderr
    assert digest(finished) == before


def test_overwrite_replaces_the_run(finished, tmp_path, real_data_dir):
    out = finished
    (out / 'best.params').write_bytes(b'stale')
    old = {name.replace(f'epoch-{TRAINED_EPOCHS:04d}', 'epoch-0001')  # its checkpoint's
           for name in digest(out)}
    proc = cli('train', *QUICK, '--epochs', '1', '--out', str(out), '--data-dir',
               real_data_dir, '--overwrite')
    assert proc.returncode == 0, proc.stderr
    assert 'replacing the run' in proc.stdout
    assert (out / 'best.params').read_bytes() != b'stale'
    assert digest(out).keys() == old  # a 1-epoch run's files: no lock file left


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
