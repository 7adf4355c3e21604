"""Training batches: random erasing (--erase) changes only its rectangles, at its rate."""
import numpy as onp
import pytest

from densenet.data import FashionMNIST
from densenet.data.batches import erase_batch, erase_boxes


def box_mask(shape, top, left, bh, bw):
    mask = onp.zeros(shape[:2], bool)
    mask[top:top + bh, left:left + bw] = True
    return mask


@pytest.mark.parametrize('shape', [(64, 28, 28), (64, 20, 24, 3)])
def test_erasing_changes_only_the_chosen_rectangle(shape):
    rng = onp.random.RandomState(0)
    images = rng.randint(0, 256, size=shape).astype(onp.uint8)
    before = images.copy()
    out, (top, left, bh, bw) = erase_batch(images, onp.random.RandomState(1), p=1.0)
    assert out.dtype == onp.uint8 and out.shape == images.shape
    assert (images == before).all()  # a new array: the caller's images are as they were
    h, w = shape[1:3]
    inside_same = inside = 0
    for i in range(len(images)):
        assert bh[i] >= 1 and 0 <= top[i] and top[i] + bh[i] <= h
        assert bw[i] >= 1 and 0 <= left[i] and left[i] + bw[i] <= w
        mask = box_mask(shape[1:], top[i], left[i], bh[i], bw[i])
        assert (out[i][~mask] == images[i][~mask]).all()  # outside the box: untouched
        inside_same += int((out[i][mask] == images[i][mask]).sum())
        inside += int(mask.sum()) * (shape[3] if len(shape) == 4 else 1)
    # Inside, every value is redrawn uniformly from 0..255: it keeps its old value with
    # probability 1/256, so over thousands of values well under 2% stay.
    assert inside > 2000 and inside_same / inside < 0.02
    # Box areas follow the share drawn in [0.02, 0.4] of the image, up to the rounding
    # of each side (one pixel of each: (sqrt(a) + 1)^2 at most) and the clipping to it.
    areas = bh * bw / (h * w)
    assert areas.min() >= 0.01 and areas.max() <= 0.6 and areas.std() > 0.05


def test_erasing_fills_with_uniform_values_and_keeps_the_input():
    images = onp.zeros((400, 28, 28), onp.uint8)
    out, boxes = erase_batch(images, onp.random.RandomState(2), p=1.0)
    assert not images.any()  # the input stays black
    filled = onp.concatenate([out[i][box_mask((28, 28), *b)] for i, b in
                              enumerate(zip(*boxes, strict=True))])
    # Uniform on 0..255: mean 127.5, standard deviation 73.9; over >10,000 values the
    # mean's own spread is below 1.
    assert len(filled) > 10000
    assert abs(filled.mean() - 127.5) < 5 and abs(filled.std() - 73.9) < 3


def test_erasing_rate_and_off():
    n = 4000
    _, _, bh, _ = erase_boxes(n, 28, 28, onp.random.RandomState(3), p=0.5)
    # Binomial share: standard deviation sqrt(0.25 / 4000) = 0.008; 5 of them allowed.
    assert abs((bh > 0).mean() - 0.5) < 0.04
    images = onp.random.RandomState(4).randint(0, 256, (50, 28, 28)).astype(onp.uint8)
    out, (_, _, bh, _) = erase_batch(images, onp.random.RandomState(5), p=0.0)
    assert (out == images).all() and not bh.any()


def test_fashion_mnist_erases_training_batches_only(real_data_dir):
    """The same seed gives the same order; --erase then changes about that share of the
    training images (inside one rectangle each) and never a validation image."""
    kw = dict(batch_size=100, root=real_data_dir, limit=1000, holdout=500, seed=7)
    plain, erased = FashionMNIST(**kw), FashionMNIST(erase=0.5, **kw)
    changed = n = 0
    for (Xp, yp), (Xe, ye) in zip(plain.train_dataloader(), erased.train_dataloader(), strict=True):
        assert (yp.asnumpy() == ye.asnumpy()).all()
        diff = (Xp.asnumpy() != Xe.asnumpy()).reshape(len(Xp), -1)
        changed += int(diff.any(axis=1).sum())
        n += len(Xp)
        for d in diff.reshape(len(Xp), 28, 28):  # what changed lies in one rectangle
            if d.any():
                rows, cols = onp.where(d.any(axis=1))[0], onp.where(d.any(axis=0))[0]
                assert d[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].mean() > 0.5
    # 1000 images at p = 0.5: standard deviation 16 images; 5 of them allowed.
    assert n == 1000 and abs(changed - 500) < 80
    for (Xp, _), (Xe, _) in zip(plain.val_dataloader(), erased.val_dataloader(), strict=True):
        assert (Xp.asnumpy() == Xe.asnumpy()).all()


def test_validation_part_spreads_over_the_split():
    from densenet.data.batches import validation_part
    from densenet.errors import UsageError
    assert (validation_part(10) == onp.arange(10)).all()
    assert (validation_part(10, 50) == onp.arange(10)).all()
    assert validation_part(10, 3).tolist() == [0, 4, 9]  # linspace(0, 9, 3) rounded
    # A split stored class by class (an image folder's) keeps every class in its share.
    labels = onp.repeat(onp.arange(3), 40)
    counts = onp.bincount(labels[validation_part(len(labels), 12)], minlength=3)
    assert counts.tolist() == [4, 4, 4]
    with pytest.raises(UsageError, match='positive'):
        validation_part(10, 0)


def test_fashion_mnist_val_limit_keeps_the_chosen_test_images(real_data_dir):
    from densenet.data import FashionMNIST, load_split
    from densenet.data.batches import validation_part
    images, labels = load_split('val', real_data_dir)
    data = FashionMNIST(root=real_data_dir, limit=64, val_limit=1000)
    keep = validation_part(len(labels), 1000)
    assert len(data.val_arrays[1]) == 1000
    assert (data.val_arrays[0] == images[keep]).all() and (data.val_arrays[1] == labels[keep]).all()
