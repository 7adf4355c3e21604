"""Small helpers shared by the test files."""
import hashlib
import os

import numpy as onp


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
