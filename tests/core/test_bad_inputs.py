"""Bad labels and batches are refused with the fix, not turned into wrong results."""
import re

import numpy as onp
import pytest
from mxnet import np

from densenet import DenseNet, densenet_bc

pytestmark = pytest.mark.slow


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
    # The checks that read values run on the first batch of each shape (none later: no
    # wait for the device per batch).
    with pytest.raises(ValueError, match='NaN or infinite'):
        make()(X * onp.nan)
    assert model(X * onp.nan).shape == (2, 10)  # a shape already checked
