import os

import densenet  # noqa: F401  (first, so that it sets MXNet's thread count)
import mxnet as mx
import pytest
from mxnet import np, npx

npx.set_np()

DEBIAN_DATA = '/usr/share/datasets/fashion-mnist'


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)


@pytest.fixture(scope='session')
def real_data_dir():
    """Debian's dataset-fashion-mnist files; CI installs the package."""
    if not os.path.isdir(DEBIAN_DATA):
        pytest.fail(f'{DEBIAN_DATA} is missing: apt-get install dataset-fashion-mnist')
    return DEBIAN_DATA
