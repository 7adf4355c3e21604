"""ImageFolder: the user's own images, from a folder the tests write out of Fashion-MNIST."""
import os

import numpy as onp
import pytest
from PIL import Image

from densenet.data import FashionMNIST, ImageFolder
from densenet.data.image_folder import stratified_split
from densenet.errors import UsageError

from helpers import digest, write_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache' / 'image-folder'


def test_gray_folder_equals_fashion_mnist_pipeline(tmp_path, cache, real_data_dir):
    """Decoded, resized and batched, a folder of Fashion-MNIST PNGs gives the very tensors
    FashionMNIST gives for those images (the book's Resize + ToTensor)."""
    written = write_folder(tmp_path / 'f', per_class=10, data_dir=real_data_dir)
    data = ImageFolder(str(tmp_path / 'f'), batch_size=64, resize=32, val_split=0.2)
    assert data.classes == ['0-t-shirt', '1-trouser', '2-pullover'] and data.channels == 1
    assert len(data.train_arrays[1]) == 24 and len(data.val_arrays[1]) == 6
    assert sorted(onp.bincount(data.val_arrays[1])) == [2, 2, 2]  # stratified
    fm = FashionMNIST(batch_size=64, resize=(32, 32), root=real_data_dir)
    X, y = next(iter(data.val_dataloader()))
    index = [written[data.paths[i]] for i in data.val_index]
    expected = fm.get_dataloader(False).__class__(
        fm.train_arrays[0][index], fm.train_arrays[1][index], 64, (32, 32))
    Xe, ye = next(iter(expected))
    assert onp.array_equal(X.asnumpy(), Xe.asnumpy())
    assert onp.array_equal(y.asnumpy(), ye.asnumpy())  # class folders in label order


def test_rgb_folder_and_the_cache(tmp_path, cache, real_data_dir):
    write_folder(tmp_path / 'f', per_class=6, rgb=True, data_dir=real_data_dir)
    data = ImageFolder(str(tmp_path / 'f'), batch_size=8, resize=40, augment=True)
    assert data.channels == 3
    X, _ = next(iter(data.train_dataloader()))
    assert X.shape == (8, 3, 40, 40)
    gray = ImageFolder(str(tmp_path / 'f'), batch_size=8, resize=40, channels=1)
    assert next(iter(gray.val_dataloader()))[0].shape[1] == 1
    files = sorted(os.listdir(cache))
    assert len([f for f in files if f.endswith('.npy')]) == 2  # one per (side, channels)
    # A second run decodes nothing: the cached arrays are used.
    import densenet.data.image_folder as imf
    before = digest(cache)
    again = ImageFolder(str(tmp_path / 'f'), batch_size=8, resize=40)
    assert digest(cache) == before
    assert onp.array_equal(again.val_arrays[0][onp.arange(2)], data.val_arrays[0][onp.arange(2)])
    # An edited file is a new folder: decoded again.
    path = data.paths[0]
    Image.fromarray(onp.full((28, 28, 3), 255, onp.uint8)).save(path)
    os.utime(path, ns=(1, 1))
    edited = ImageFolder(str(tmp_path / 'f'), batch_size=8, resize=40)
    assert edited.val_arrays[0].array[0].min() == 255
    assert imf.default_cache_dir() == str(cache)


def test_train_and_val_folders(tmp_path, cache, real_data_dir):
    write_folder(tmp_path / 'f' / 'train', per_class=5, data_dir=real_data_dir)
    write_folder(tmp_path / 'f' / 'val', per_class=3, offset=100, data_dir=real_data_dir)
    data = ImageFolder(str(tmp_path / 'f'), batch_size=4, resize=32)
    assert len(data.train_arrays[1]) == 15 and len(data.val_arrays[1]) == 9
    assert all('/val/' in data.paths[i] for i in data.val_index)


def test_stratified_split_is_seeded_and_keeps_every_class():
    labels = onp.repeat([0, 1, 2], [10, 3, 1])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(onp.concatenate([train, val])) == list(range(14))
    assert list(onp.bincount(labels[val], minlength=3)) == [2, 1, 0]  # a lone image trains
    assert onp.array_equal(stratified_split(labels, 0.2, 0)[1], val)
    assert not onp.array_equal(stratified_split(labels, 0.2, 1)[1], val)


def test_bad_folders_get_their_message_and_nothing_is_written(tmp_path, cache,
                                                              real_data_dir):
    good = tmp_path / 'good'
    write_folder(good, per_class=3, data_dir=real_data_dir)
    one = tmp_path / 'one'
    write_folder(one, per_class=3, classes=(0,), data_dir=real_data_dir)
    empty_class = tmp_path / 'empty-class'
    write_folder(empty_class, per_class=3, classes=(0, 1), data_dir=real_data_dir)
    os.makedirs(empty_class / 'z-none')
    (empty_class / 'z-none' / 'notes.txt').write_text('no images here')
    broken = tmp_path / 'broken'
    write_folder(broken, per_class=3, classes=(0, 1), data_dir=real_data_dir)
    (broken / '1-trouser' / 'bad.png').write_bytes(b'not a png')
    mismatch = tmp_path / 'mismatch'
    write_folder(mismatch / 'train', per_class=2, classes=(0, 1), data_dir=real_data_dir)
    write_folder(mismatch / 'val', per_class=2, classes=(0, 2), data_dir=real_data_dir)
    val_only = tmp_path / 'val-only'
    write_folder(val_only / 'val', per_class=2, classes=(0, 1), data_dir=real_data_dir)
    (tmp_path / 'a-file').write_text('x')
    cases = [
        (tmp_path / 'missing', 'no such folder'),
        (tmp_path / 'a-file', 'is a file, not a folder'),
        (tmp_path / 'empty', '0 class folder(s) (none); a classifier needs at least two'),
        (one, '1 class folder(s) (0-t-shirt)'),
        (empty_class, 'class folder z-none/ has no images'),
        (broken, 'bad.png: not a readable image'),
        (mismatch, 'train/ and val/ hold different classes (only in train/: 1-trouser; '
                   'only in val/: 2-pullover)'),
        (val_only, 'has val/ but no train/'),
    ]
    os.makedirs(tmp_path / 'empty')
    before = digest(tmp_path)
    for folder, message in cases:
        with pytest.raises(UsageError, match=None) as err:
            ImageFolder(str(folder), resize=32)
        assert message in str(err.value), (folder, str(err.value))
    assert digest(tmp_path) == before and not cache.exists()  # no cache was written
    # --skip-bad-images: the file is left out, and counted.
    said = []
    data = ImageFolder(str(broken), resize=32, skip_bad_images=True, log=said.append)
    assert len(data.train_arrays[1]) + len(data.val_arrays[1]) == 6
    assert said == [f'skipped 1 unreadable image(s), e.g. {broken / "1-trouser" / "bad.png"}']
    # The cached record of the bad file still stops a run without the flag.
    with pytest.raises(UsageError, match='bad.png: not a readable image'):
        ImageFolder(str(broken), resize=32)
