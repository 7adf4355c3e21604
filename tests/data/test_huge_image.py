"""Huge images (decompression bombs): one-line ImageError naming the file, its size and
the limit, before anything is decoded; DENSENET_MAX_IMAGE_PIXELS allows them."""
import os
import shutil
import warnings

import numpy as onp
import pytest
from PIL import Image

from densenet.cli import main
from densenet.data import ImageFolder
from densenet.data.images import ImageError, is_grayscale, read_image
from densenet.errors import UsageError

ENV = 'DENSENET_MAX_IMAGE_PIXELS'
PIL_DEFAULT = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS


@pytest.fixture(scope='module')
def huge(tmp_path_factory):
    """20000x20000 pixels, over twice PIL's limit (PIL raises DecompressionBombError): a
    1-bit PNG of about 50 KB."""
    path = tmp_path_factory.mktemp('huge') / 'huge.png'
    Image.new('1', (20000, 20000)).save(path)
    assert os.path.getsize(path) < 100_000
    return path


@pytest.fixture(scope='module')
def big(tmp_path_factory):
    """10000x10000 pixels, between one and two times PIL's limit (PIL only warns)."""
    path = tmp_path_factory.mktemp('big') / 'big.png'
    Image.new('1', (10000, 10000)).save(path)
    assert os.path.getsize(path) < 20_000
    return path


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert Image.MAX_IMAGE_PIXELS == PIL_DEFAULT


def too_large(path, w, h, limit):
    return (f'{path}: {w}x{h} pixels ({w * h:,}) is over the limit of {limit:,} pixels, a '
            'guard against decompression bombs; if the image is meant to be this large, set '
            f'{ENV}={w * h} (or more) to allow it')


def gray_png(path, w, h):
    Image.fromarray(onp.full((h, w), 128, onp.uint8)).save(path)
    return path


@pytest.mark.parametrize('which, w, h', [('huge', 20000, 20000), ('big', 10000, 10000)])
def test_read_image_refuses_an_image_over_the_limit(which, w, h, request):
    """Over twice the limit (PIL's error) and between one and two times (PIL's warning):
    the same ImageError, no warning, PIL's own limit left as it was."""
    path = request.getfixturevalue(which)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(ImageError) as error:
            read_image(path)
        assert is_grayscale(path)  # from the header: no warning, no error
    assert str(error.value) == too_large(path, w, h, PIL_DEFAULT)
    assert isinstance(error.value, UsageError)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == PIL_DEFAULT


@pytest.mark.parametrize('which', ['huge', 'big'])
def test_predict_says_it_in_one_line_with_status_2(which, request, capsys):
    path = request.getfixturevalue(which)
    w = 20000 if which == 'huge' else 10000
    assert main(['predict', str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f'densenet predict: error: {too_large(path, w, w, PIL_DEFAULT)}\n'
    assert captured.out == ''


def test_a_lowered_limit_is_the_same_error_in_both_bands(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, '2000')
    at_limit = gray_png(tmp_path / 'at.png', 40, 50)
    assert read_image(at_limit)[0].shape == (50, 40)  # exactly the limit is allowed
    for w, h in ((60, 50), (101, 50)):  # 1.5 and 2.5 times the limit
        path = gray_png(tmp_path / f'{w}.png', w, h)
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            with pytest.raises(ImageError) as error:
                read_image(path, channels=3)
        assert str(error.value) == too_large(path, w, h, 2000)


def test_the_variable_allows_it_over_pils_own_limit(tmp_path, monkeypatch):
    """PIL's limit (here lowered, as a stand-in for its default) would raise above twice
    it; DENSENET_MAX_IMAGE_PIXELS above that decodes the file, without a warning."""
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    path = gray_png(tmp_path / 'wide.png', 100, 50)  # 5000 pixels: over twice 1000
    with pytest.raises(ImageError, match='over the limit of 1,000 pixels'):
        read_image(path)
    for value in ('5000', '400_000_000', 'none', '0'):
        monkeypatch.setenv(ENV, value)
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            gray, notes = read_image(path)
        assert gray.shape == (50, 100) and (gray == 128).all() and notes == []
        assert Image.MAX_IMAGE_PIXELS == 1000
    monkeypatch.setenv(ENV, '4999')
    with pytest.raises(ImageError, match=f'over the limit of 4,999 pixels.*{ENV}=5000 '):
        read_image(path)


@pytest.mark.parametrize('value', ['lots', '-5', '1e9'])
def test_a_bad_value_of_the_variable_is_a_usage_error(tmp_path, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    path = gray_png(tmp_path / 'a.png', 10, 10)
    with pytest.raises(UsageError) as error:
        read_image(path)
    assert not isinstance(error.value, ImageError)  # not one file's fault: never skipped
    assert str(error.value) == (f'{ENV}={value!r} is not a pixel count: give a whole number '
                                'such as 400000000, or none for no limit')


def pets(root, extra=None):
    """Two class folders of three small grey PNGs; `extra` copied into cat/."""
    for name in ('cat', 'dog'):
        os.makedirs(root / name)
        for i in range(3):
            gray_png(root / name / f'{i}.png', 20, 20)
    if extra is not None:
        shutil.copy(extra, root / 'cat' / os.path.basename(extra))
    return root


def test_an_image_folder_stops_at_a_huge_image_or_skips_it(tmp_path, huge):
    root = pets(tmp_path / 'pets', huge)
    cache = str(tmp_path / 'cache')
    with pytest.raises(UsageError) as error:
        ImageFolder(str(root), resize=32, num_workers=0, cache_dir=cache, log=lambda m: None)
    assert str(error.value) == (too_large(root / 'cat' / 'huge.png', 20000, 20000,
                                          PIL_DEFAULT)
                                + '; remove it, or pass --skip-bad-images to train without it')
    assert not os.path.exists(cache)  # nothing cached
    said = []
    data = ImageFolder(str(root), resize=32, num_workers=0, cache_dir=cache,
                       skip_bad_images=True, log=said.append)
    assert said == [f'skipped 1 unreadable image(s), e.g. {root / "cat" / "huge.png"}']
    assert len(data.train_index) + len(data.val_index) == 6
    assert str(root / 'cat' / 'huge.png') not in [data.paths[i] for i in data.train_index]


def test_raising_the_limit_decodes_what_a_lower_one_skipped(tmp_path, monkeypatch):
    """The cache remembers which files were skipped: a new limit is a new cache."""
    root = pets(tmp_path / 'pets', gray_png(tmp_path / 'wide.png', 60, 50))
    cache = str(tmp_path / 'cache')
    kwargs = dict(resize=32, num_workers=0, cache_dir=cache, skip_bad_images=True,
                  log=lambda m: None)
    monkeypatch.setenv(ENV, '2000')
    assert len(ImageFolder(str(root), **kwargs).paths) == 7
    low = ImageFolder(str(root), **kwargs)  # from the cache
    assert len(low.train_index) + len(low.val_index) == 6
    monkeypatch.setenv(ENV, '3000')
    high = ImageFolder(str(root), **kwargs)
    assert len(high.train_index) + len(high.val_index) == 7
    assert len(os.listdir(cache)) == 4  # two caches, each an array and its list
