"""Fixtures every test folder shares: the real data, one small image folder made of it,
and one short trained run.

Each is made once per session (with pytest-xdist, once for all its workers), under the
session's temporary folder; tests read them and copy what they would change.
"""
import fcntl
import json
import os
import shutil
import subprocess


def _give_each_worker_its_cores():
    """Under pytest-xdist (`make test` runs one worker per core), worker i keeps the
    cores i, i + n, ... of the n workers, so that their OpenMP pools never share a core;
    `import densenet` then sizes MXNet's pool to them, and every process a test starts
    inherits them. Without xdist, or with more workers than cores, nothing changes."""
    if not hasattr(os, 'sched_setaffinity'):
        return
    cores = sorted(os.sched_getaffinity(0))
    # The session's cores (helpers.all_cores gives a child process all of them back) and
    # the thread count its user chose, if any: recorded by the first process (the xdist
    # controller) before its `import densenet` sets OMP_NUM_THREADS, which workers inherit.
    os.environ.setdefault('TESTS_ALL_CORES', ','.join(map(str, cores)))
    os.environ.setdefault('TESTS_USER_THREADS', os.environ.get('OMP_NUM_THREADS', ''))
    worker = os.environ.get('PYTEST_XDIST_WORKER', '')  # 'gw0', 'gw1', ...
    count = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    if worker.startswith('gw') and 1 < count <= len(cores):
        os.sched_setaffinity(0, cores[int(worker[2:]) % count::count])
        if not os.environ['TESTS_USER_THREADS']:
            os.environ.pop('OMP_NUM_THREADS', None)  # densenet sizes the pool to the share


_give_each_worker_its_cores()

import densenet  # noqa: F401  (first, so that it sets MXNet's thread count)

# isort: split
import mxnet as mx
import pytest
from mxnet import npx

from helpers import TRAINED, cli, digest, write_folder

npx.set_np()

DEBIAN_DATA = '/usr/share/datasets/fashion-mnist'


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)


@pytest.fixture(scope='session', autouse=True)
def _own_cache(tmp_path_factory):
    """The package's cache folder (decoded image folders, the engines' timings) is the
    session's own: timings on the developer's machine must not choose the tests' engines."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('DENSENET_CACHE', str(tmp_path_factory.mktemp('cache')))
        yield


@pytest.fixture(scope='session')
def real_data_dir():
    """Debian's dataset-fashion-mnist files; CI installs the package."""
    if not os.path.isdir(DEBIAN_DATA):
        pytest.fail(f'{DEBIAN_DATA} is missing: apt-get install dataset-fashion-mnist')
    return DEBIAN_DATA


@pytest.fixture(autouse=True)
def _alone_when_marked(request, tmp_path_factory):
    """Under pytest-xdist, a test marked `alone` runs with no other test beside it (the
    other workers finish the test they are in and wait): it plans from the speed it
    measures at its start, which a neighbour starting its work would change. The
    turnstile stops new tests from slipping in while such a test waits its turn."""
    if not os.environ.get('PYTEST_XDIST_WORKER'):
        yield
        return
    base = tmp_path_factory.getbasetemp().parent  # shared by the workers
    alone = request.node.get_closest_marker('alone') is not None
    with open(base / 'turnstile.lock', 'a') as turnstile, open(base / 'alone.lock', 'a') as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


def shared_folder(tmp_path_factory, name, make):
    """The folder `name`, made by make(path) once per session: with pytest-xdist, once for
    all its workers (the first makes it, under a lock; the others wait and read it)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent  # the workers' basetemps are siblings under this one
    path = str(base / name)
    with open(str(base / f'{name}.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(path, '.made')):
            shutil.rmtree(path, ignore_errors=True)  # what a failed attempt left
            os.makedirs(path)
            made = make(path)
            with open(os.path.join(path, '.made'), 'w') as f:
                json.dump(made, f)
    with open(os.path.join(path, '.made')) as f:
        return path, json.load(f)


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, real_data_dir):
    """(run folder, the CompletedProcess) of `densenet train` with helpers.TRAINED's
    settings: the model of every test that needs a trained one (evaluate, predict, export,
    inference, run-folder refusals). Tests must not write into the folder; the session
    checks at its end that none did."""
    def train(path):
        out = os.path.join(path, 'run')
        proc = cli(*TRAINED, '--out', out, '--data-dir', real_data_dir)
        return {'args': proc.args, 'stdout': proc.stdout, 'stderr': proc.stderr}
    path, made = shared_folder(tmp_path_factory, 'trained', train)
    out = os.path.join(path, 'run')
    before = digest(out)
    yield out, subprocess.CompletedProcess(made['args'], 0, made['stdout'], made['stderr'])
    assert digest(out) == before, 'a test changed the shared trained run: copy it instead'


@pytest.fixture(scope='session')
def fashion_folder(tmp_path_factory, real_data_dir):
    """fashion_folder(rgb=False): the path of an image folder of real Fashion-MNIST
    training images, 3 classes (0-t-shirt, 1-trouser, 2-pullover) of 200 PNGs each
    (helpers.write_folder's layout), written once per session. Tests only read it."""
    folders = {}

    def folder(rgb=False):
        if rgb not in folders:
            def write(path):
                write_folder(os.path.join(path, 'photos'), per_class=200, rgb=rgb,
                             data_dir=real_data_dir)
                return {}
            path, _ = shared_folder(tmp_path_factory, 'rgb' if rgb else 'gray', write)
            path = os.path.join(path, 'photos')
            folders[rgb] = path, digest(path)
        return folders[rgb][0]
    yield folder
    for path, before in folders.values():
        assert digest(path) == before, 'a test changed the shared image folder: copy it instead'
