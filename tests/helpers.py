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
