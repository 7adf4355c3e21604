"""A full disk: one line naming the file, exit status 1, the last complete files kept.

The full disk is simulated without root: either a write callback raises the error a
full file system gives (ENOSPC, EDQUOT, MXNet's "FileStream.Write incomplete"), or
the atomic writer's temporary file is made a symbolic link to /dev/full, the kernel's
always-full device, so that Python's and MXNet's own writes fail as they do on a full
disk.
"""
import errno
import gc
import json
import os
import pickle
import tempfile

import mxnet as mx
import numpy as onp
import pytest
from PIL import Image

from densenet.cli import main
from densenet.errors import DiskFull, Diverged, Fault, UsageError
from densenet.system import files
from densenet.system.files import atomic_bytes, atomic_text, atomic_write

from helpers import digest

# What MXNet 1.9.1 raises when save_parameters hits a full disk (dmlc-core's FileStream).
MXNET_FULL = ('Traceback (most recent call last):\n'
              '  File "../3rdparty/dmlc-core/src/io/local_filesys.cc", line 38\n'
              'MXNetError: Check failed: std: :fwrite(ptr, 1, size, fp_) == size: '
              'FileStream.Write incomplete')

needs_dev_full = pytest.mark.skipif(not os.path.exists('/dev/full'),
                                    reason='no /dev/full on this system')


def temporaries(folder):
    """Files of `folder` (recursively) that look like an atomic writer's temporaries."""
    return [os.path.join(top, n) for top, _, names in os.walk(folder)
            for n in names if n.startswith('.') and n != '.lock']


def fill_disk(monkeypatch, under, when=lambda: True):
    """From the moment `when()` is true, every atomic write below folder `under` writes
    into /dev/full (its temporary file is a link to it): the disk is full there."""
    real = tempfile.mkstemp
    under = os.path.abspath(under)
    calls = []

    def mkstemp(*args, **kwargs):
        folder = os.path.abspath(kwargs.get('dir') or tempfile.gettempdir())
        full = (folder + os.sep).startswith(under + os.sep) and when()
        fd, tmp = real(*args, **kwargs)
        if full:
            os.close(fd)
            os.remove(tmp)
            os.symlink('/dev/full', tmp)
            fd = os.open(tmp, os.O_WRONLY)
            calls.append(tmp)
        return fd, tmp
    fake = type('tempfile', (), {'mkstemp': staticmethod(mkstemp)})
    monkeypatch.setattr(files, 'tempfile', fake)
    real_chmod = os.chmod

    def chmod(path, *args, **kwargs):  # never /dev/full's own mode, should a write succeed
        if os.fspath(path) in calls:
            raise AssertionError(f'a write into the full disk succeeded: {path}')
        return real_chmod(path, *args, **kwargs)
    monkeypatch.setattr(os, 'chmod', chmod)
    return calls


def check_disk_full(error, path):
    message = str(error)
    assert isinstance(error, DiskFull) and error.path == str(path)
    assert message.startswith(f'could not write {path}: the disk is full (')
    assert ' free on ' in message and '\n' not in message
    assert message.endswith('; free some space there, or choose another --out')


def test_disk_full_is_a_fault_with_exit_status_1_not_a_usage_error():
    assert issubclass(DiskFull, Fault) and issubclass(Diverged, Fault)
    assert issubclass(Fault, RuntimeError) and not issubclass(DiskFull, UsageError)
    error = DiskFull('/data/run/last.params', 1536, '/data')
    assert str(error) == ('could not write /data/run/last.params: the disk is full '
                          '(1.5 KB free on /data); free some space there, or choose '
                          'another --out')
    again = pickle.loads(pickle.dumps(error))  # e.g. out of a worker process
    assert str(again) == str(error) and again.free == 1536
    quota = DiskFull('/home/me/x.npz', 0, '/home', quota=True)
    assert str(quota) == ('could not write /home/me/x.npz: the disk quota on /home is '
                          'exceeded; free some space there, or choose another --out')


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EDQUOT])
def test_a_write_that_finds_the_disk_full_keeps_the_earlier_file(tmp_path, code):
    path = tmp_path / 'metrics.csv'
    atomic_text(path, 'epoch 1\n')

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write('half of epoch 2')
        raise OSError(code, os.strerror(code))
    with pytest.raises(DiskFull) as caught:
        atomic_write(path, write)
    if code == errno.ENOSPC:
        check_disk_full(caught.value, path)
    else:
        assert 'the disk quota on ' in str(caught.value)
        assert str(caught.value).startswith(f'could not write {path}: ')
    assert isinstance(caught.value.__cause__, OSError)
    assert path.read_text() == 'epoch 1\n'
    assert os.listdir(tmp_path) == ['metrics.csv']


def test_mxnet_write_incomplete_from_a_save_callback(tmp_path):
    path = tmp_path / 'last.params'
    atomic_bytes(path, b'the weights of epoch 1')

    def save_parameters(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'part of it')
        raise mx.base.MXNetError(MXNET_FULL)
    with pytest.raises(DiskFull) as caught:
        atomic_write(path, save_parameters)
    check_disk_full(caught.value, path)
    assert path.read_bytes() == b'the weights of epoch 1'
    assert os.listdir(tmp_path) == ['last.params']


@needs_dev_full
def test_real_full_device_python_and_mxnet_writes(tmp_path, monkeypatch):
    """The errors the kernel and MXNet really raise on a full device."""
    path = tmp_path / 'last.params'
    atomic_bytes(path, b'old')
    fill_disk(monkeypatch, tmp_path)
    with pytest.raises(DiskFull) as caught:  # MXNet's own FileStream
        atomic_write(path, lambda tmp: mx.nd.save(tmp, {'w': mx.nd.zeros((100000,))}))
    check_disk_full(caught.value, path)
    assert 'Write incomplete' in str(caught.value.__cause__)
    with pytest.raises(DiskFull) as caught:  # Python's buffered file, failing on close
        atomic_text(path, 'x' * 100)
    check_disk_full(caught.value, path)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert path.read_bytes() == b'old' and os.listdir(tmp_path) == ['last.params']


def test_a_write_that_leaves_no_free_block_is_not_trusted(tmp_path, monkeypatch):
    """MXNet ignores the error of its last flush: on a disk that fills up in a file's last
    buffered bytes it leaves the file short and raises nothing (a 10 KB array onto 8 KB
    of free space: 8192 bytes, no error). A write after which the file system has no
    free block is refused as a full disk."""
    path = tmp_path / 'last.params'
    atomic_bytes(path, b'the weights of epoch 1')
    real = os.statvfs
    full = os.statvfs_result((4096, 4096, 1000, 0, 0, 100, 50, 50, 0, 255))
    monkeypatch.setattr(os, 'statvfs', lambda p: full if str(p).startswith(str(tmp_path))
                        else real(p))
    with pytest.raises(DiskFull) as caught:
        atomic_write(path, lambda tmp: mx.nd.save(tmp, {'w': mx.nd.zeros((10,))}))
    assert str(caught.value) == (f'could not write {path}: the disk is full (0 bytes free '
                                 f'on {files._mount_point(str(tmp_path))}); free some space '
                                 'there, or choose another --out')
    assert path.read_bytes() == b'the weights of epoch 1'
    assert os.listdir(tmp_path) == ['last.params']


def test_other_errors_are_left_as_they_are(tmp_path):
    path = tmp_path / 'x.params'
    for error in (OSError(errno.EACCES, 'Permission denied'), mx.base.MXNetError('other'),
                  Diverged('training diverged'), KeyError('bug')):
        def write(tmp, error=error):
            raise error
        with pytest.raises(type(error)) as caught:
            atomic_write(path, write)
        assert caught.value is error and not isinstance(caught.value, DiskFull)
    assert os.listdir(tmp_path) == []


@needs_dev_full
@pytest.mark.slow
def test_train_into_a_full_disk_keeps_the_first_epoch(tmp_path, monkeypatch, capsys,
                                                      real_data_dir):
    """The disk fills up once the first epoch's checkpoint is written: the second
    epoch's first file (last.params, MXNet's writer) fails; one line, exit 1, and the
    first epoch's params and checkpoint stay complete and loadable."""
    from densenet.models.params import load_model
    out = tmp_path / 'run'
    state = out / 'checkpoint' / 'state.json'
    kept = {}

    def full():
        if not state.exists():
            return False
        if not kept:  # what the first epoch left, before any write of the second
            kept.update(digest(out))
        return True
    failed = fill_disk(monkeypatch, out, full)
    code = main(['train', '--limit', '128', '--holdout', '64', '--epochs', '2',
                 '--resize', '32', '--batch-size', '32', '--data-dir', real_data_dir,
                 '--out', str(out)])
    err = capsys.readouterr().err  # the progress bars, then the error
    assert code == 1
    assert 'Traceback' not in err and err.count('error') == 1
    last = err.splitlines()[-1]
    assert last.startswith(f'densenet train: error: could not write {out / "last.params"}: '
                           'the disk is full (')
    assert last.endswith('; free some space there, or choose another --out')
    assert len(failed) == 1 and os.path.basename(failed[0]).startswith('.last.params.')
    assert temporaries(out) == []
    kept.pop('.lock', None)
    assert digest(out) == kept  # nothing of epoch 1 touched, nothing half-written added
    with open(state) as f:
        assert json.load(f)['epoch'] == 1
    assert {'epoch-0001.params', 'epoch-0001.states'} <= set(os.listdir(out / 'checkpoint'))
    model, meta = load_model(str(out / 'last.params'))
    assert meta['epoch'] == 1
    assert set(mx.nd.load(str(out / 'checkpoint' / 'epoch-0001.params'))) == \
        set(mx.nd.load(str(out / 'last.params')))


@needs_dev_full
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
def test_features_into_a_full_disk(tmp_path, monkeypatch, capsys):
    """`densenet features` (numpy's savez on Python's file): one line, exit 1, the
    earlier .npz intact."""
    from densenet.models.params import describe, save
    from densenet.models.registry import get_model
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'cache'))
    rng = onp.random.RandomState(0)
    for name in ('cat', 'dog'):
        os.makedirs(tmp_path / 'pets' / name)
        for i in range(4):
            Image.fromarray(rng.randint(0, 256, (32, 32), dtype=onp.uint8)).save(
                tmp_path / 'pets' / name / f'{i}.png')
    model = get_model('densenet_bc_100', depth=10, in_channels=1, num_classes=2)
    params = str(tmp_path / 'model' / 'best.params')
    save(model, params, describe(model, 32, ['cat', 'dog'], 'folder:pets'))
    out = tmp_path / 'out' / 'features.npz'
    atomic_bytes(out, b'the features of yesterday')
    fill_disk(monkeypatch, tmp_path / 'out')
    code = main(['features', '--params', params, '--data', str(tmp_path / 'pets'),
                 '--device', 'cpu', '--out', str(out)])
    gc.collect()  # what the failed savez left behind says nothing on stderr
    err = capsys.readouterr().err
    assert code == 1
    assert err.count('\n') == 1 and 'Traceback' not in err
    assert err.startswith(f'densenet features: error: could not write {out}: the disk is '
                          'full (')
    assert out.read_bytes() == b'the features of yesterday'
    assert os.listdir(tmp_path / 'out') == ['features.npz']


@pytest.mark.parametrize('fmt', ['mxnet', 'onnx'])
def test_export_into_a_full_disk(tmp_path, monkeypatch, capsys, fmt):
    """`densenet export` (the shipped weights) when the disk fills up while MXNet writes:
    one line naming the file and the full disk, status 1, and no folder left behind."""
    import errno

    import mxnet as mx

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    if fmt == 'mxnet':
        monkeypatch.setattr(mx.gluon.HybridBlock, 'export', full)
    else:
        monkeypatch.setattr(mx.onnx, 'export_model', full)
    out = tmp_path / 'exported'
    assert main(['export', '--format', fmt, '--out', str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    name = 'densenet-0000.params' if fmt == 'mxnet' else 'densenet.onnx'
    assert len(err) == 1 and err[0].startswith('densenet export: error: could not write ')
    assert name in err[0] and 'the disk is full' in err[0]
    assert not out.exists()
