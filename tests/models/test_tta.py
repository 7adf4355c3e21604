"""--tta: the logits of an image and of its mirror image, averaged."""
import mxnet as mx
import numpy as onp
from mxnet import np

from densenet import DenseNet
from densenet.models.tta import FlipAverage
from densenet.train import evaluate

from helpers import set_running_stats


def test_flip_average_is_the_mean_of_the_logits_on_the_image_and_its_mirror():
    model = DenseNet(num_channels=8, growth_rate=4, arch=(2, 2))
    rs = onp.random.RandomState(0)
    X = rs.rand(4, 1, 32, 32).astype('float32')
    model.net(np.array(X))
    set_running_stats(model.net, 1)
    plain = model(np.array(X)).asnumpy()
    mirrored = model(np.array(X[:, :, :, ::-1].copy())).asnumpy()
    got = FlipAverage(model)(np.array(X)).asnumpy()
    # Two float32 logits of magnitude ~|plain| summed and halved: rounding ~1e-7 of it.
    tol = 1e-6 * max(1.0, float(abs(plain).max()))
    assert abs(got - (plain + mirrored) / 2).max() <= tol
    # The model is not mirror-symmetric, so averaging changed the logits; and it was the
    # left-right flip (axis 3) that was averaged, not the upside-down one.
    assert abs(got - plain).max() > 100 * tol
    upside_down = model(np.array(X[:, :, ::-1].copy())).asnumpy()
    assert abs(got - (plain + upside_down) / 2).max() > 100 * tol
    # evaluate scores the averaged logits.
    y = onp.argmax((plain + mirrored) / 2, axis=1).astype('int32')
    loader = [(np.array(X), np.array(y))]
    _, acc, preds = evaluate(FlipAverage(model), loader, [mx.cpu()])
    assert acc == 1.0 and list(preds) == list(y)
