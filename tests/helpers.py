"""Small helpers shared by the test files."""
import contextlib
import csv
import hashlib
import io
import os
import subprocess
import sys
import traceback
import warnings

import numpy as onp

#: Quick settings the model accepts (min input 29): small images, batches of 64.
QUICK = ['--recipe', 'fast-cpu', '--resize', '32', '--batch-size', '64']
#: The settings of the shared trained run (conftest.py's `trained_run`): a test that
#: trains again to compare with it, or resumes a copy of it, trains with these.
TRAINED_LIMIT = 4000
TRAINED_EPOCHS = 2
#: Test images a run validates on (train --val-limit) and evaluate scores (--limit): 2,000
#: spread over the 10,000 (an accuracy's standard error there is about 1 point).
VAL_LIMIT = 2000
VAL = ['--val-limit', str(VAL_LIMIT)]
TRAINED = ['train', *QUICK, '--limit', str(TRAINED_LIMIT), '--epochs', str(TRAINED_EPOCHS), *VAL]


def session_cores():
    """The cores the test session started with (tests/conftest.py records them before it
    gives an xdist worker its share)."""
    return [int(c) for c in os.environ['TESTS_ALL_CORES'].split(',')]


def all_cores():
    """Give this process every core of the session: the `preexec_fn` of a child that must
    see the machine's cores, not its xdist worker's share."""
    os.sched_setaffinity(0, session_cores())


def digest(folder):
    """{relative path: SHA-256} of every file under `folder`: to show nothing was touched."""
    out = {}
    for top, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(top, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def set_running_stats(net, seed, array=None):
    """Non-trivial BatchNorm running statistics, so that inference mode exercises them.

    `array` builds the values (mxnet.numpy's array by default; mx.nd.array for
    legacy Gluon nets such as the model zoo's).
    """
    if array is None:
        from mxnet import np
        array = np.array
    rng = onp.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith('running_mean'):
            p.set_data(array(rng.normal(0, 0.1, p.shape).astype('float32')))
        elif name.endswith('running_var'):
            p.set_data(array(rng.uniform(0.5, 1.5, p.shape).astype('float32')))


def kill_after_first_checkpoint(args, out, settle=0.3, wait_s=300):
    """Run `densenet *args --out out`, SIGKILL it `settle` s after its first checkpoint
    (into the next epoch); return the checkpoint's state.json and the exit status."""
    import json
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, '-m', 'densenet', *args, '--out', out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = os.path.join(out, 'checkpoint', 'state.json')
    deadline = time.time() + wait_s
    while not os.path.exists(state) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(settle)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(state) as f:
        return json.load(f), proc.returncode


class _Captured(io.StringIO):
    """stdout/stderr of an in-process command: a text stream that is not a terminal."""


def cli(*args, cwd=None, check=True, isolated=False):
    """`densenet *args`, as a CompletedProcess; raises unless it exits 0 (with `check`).

    It runs in this process through `densenet.cli.main` (no interpreter and MXNet start
    per call), with its own stdout and stderr, working folder, environment and warning
    filters, as a new process would have them: a bug's traceback goes to its stderr and
    the status is 1. `isolated=True` starts a real process instead (for what only a new
    process shows: import-time settings, signals), and so does ``train --no-hybridize``:
    MXNet 1.9.1's imperative oneDNN layers leave process-wide state after which INT8
    calibration of another model at the same batch shape fails inside MXNet ("We can't
    generate TBlob for MKLDNN data"; tests/deploy/test_inference.py after
    tests/cli/test_cli.py)."""
    if isolated or (args[0] == 'train' and '--no-hybridize' in args):  # see the docstring
        proc = subprocess.run([sys.executable, '-m', 'densenet', *args], capture_output=True,
                              text=True, cwd=cwd, timeout=600)
    else:
        proc = _in_process([str(a) for a in args], cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f'exit {proc.returncode}: {proc.stderr[-2000:]}')
    return proc


def _in_process(args, cwd):
    from densenet.cli import main
    out, err = _Captured(), _Captured()
    here, environ = os.getcwd(), dict(os.environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            # A new interpreter's filters: each warning once per place, these never
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter('ignore', category)
            warnings.simplefilter('default', UserWarning)
            try:
                code = main(args)
            except SystemExit as e:  # argparse: usage errors (2) and --help (0)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:  # a bug: its traceback, as a process shows it
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(['densenet', *args], code, out.getvalue(),
                                       err.getvalue())


def read_metrics(out):
    with open(os.path.join(out, 'metrics.csv')) as f:
        return list(csv.DictReader(f))


def learning(rows):
    """The columns a rerun must reproduce (timings excluded)."""
    keys = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc', 'lr']
    return [{k: r[k] for k in keys} for r in rows]


NAMES = ('t-shirt', 'trouser', 'pullover')


def write_folder(root, per_class=20, rgb=False, offset=0, classes=(0, 1, 2), data_dir=None):
    """Real Fashion-MNIST training images as PNG files, one folder per class; returns the
    {path: index} of what was written."""
    from PIL import Image

    from densenet.data import load_split
    images, labels = load_split('train', data_dir)
    written = {}
    for c in classes:
        folder = os.path.join(root, f'{c}-{NAMES[c] if c < 3 else c}')
        os.makedirs(folder, exist_ok=True)
        for i in onp.flatnonzero(labels == c)[offset:offset + per_class]:
            path = os.path.join(folder, f'{i:05d}.png')
            img = Image.fromarray(images[i])
            (img.convert('RGB') if rgb else img).save(path)
            written[path] = int(i)
    return written


def built(make, shape, dtype='float32', noise=False):
    """A model made by `make()` and built on a uniform batch of `shape` (drawn after the
    caller's seed), cast to `dtype`; and that batch, perturbed by rounding-sized noise
    if `noise` (numerics.perturbed).
    """
    from mxnet import np

    from numerics import perturbed
    model = make()
    X = np.random.uniform(size=shape)
    model(X)
    if dtype == 'float64':
        model.net.cast('float64')
        X = X.astype('float64')
    return model, (perturbed(X) if noise else X)
