"""The preprocessing that travels with the weights: Fashion-MNIST's photo conversion,
the numpy pipeline against the data modules', and the metadata in every export."""
import functools
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as onp
import pytest
from PIL import Image

from densenet.cli import main
from densenet.data import CLASSES, load_split
from densenet.data.batches import to_tensor
from densenet.data.inputs import fashion_mnist_form
from densenet.models.params import load_model, read_meta
from densenet.models.preprocess import Preprocess
from densenet.models.pretrained import pretrained_path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / 'examples' / 'images'


@functools.cache
def _make_images():
    spec = importlib.util.spec_from_file_location('make_images',
                                                  ROOT / 'examples' / 'make_images.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def test_split(real_data_dir):
    return load_split('val', real_data_dir)


@pytest.fixture(scope='module')
def shipped():
    model, meta = load_model(pretrained_path('book', 'fashion-mnist'))
    return model, meta, Preprocess.from_meta(meta)


def _predict(model, X):
    from mxnet import np
    return model(np.array(X)).argmax(1).asnumpy()


def test_shipped_metadata_holds_the_preprocessing(shipped):
    _, meta, pre = shipped
    assert pre == Preprocess(64, 1, tuple(CLASSES), 28, 'fashion-mnist', 'light-on-dark')
    assert Preprocess.from_meta({**meta, 'preprocess': pre.steps()}) == pre
    assert set(pre.to_dict()) == set(pre.steps()) | {'input_size', 'channels', 'classes'}


def test_a_test_image_passes_unchanged(test_split):
    images, _ = test_split
    for image in images[:50]:
        out, steps = fashion_mnist_form(image)
        assert steps == [] and out is image


def test_photo_style_images_get_their_source_label(shipped, test_split):
    """Photo-style images made from 300 test images (dark garment on a light 300x300 RGB
    background, enlarged 6-9 times, placed at random, tinted, noisy): converted, the
    shipped model gives the source image's label in at least 90% of them (it scores 94%
    on the test split; 300 images put the standard error near 1.4 points). Without the
    conversion the same photos are near chance. The images are made by the inverse of
    the conversion's steps, so this shows that the steps undo a catalogue-style
    presentation, not how the model does on real photos of other garments."""
    model, _, pre = shipped
    images, labels = test_split
    rng = onp.random.RandomState(1)
    index = rng.choice(len(images), 300, replace=False)
    photos = [_make_images().photo_style(images[i], rng) for i in index]
    grays = [onp.asarray(Image.fromarray(p).convert('L')) for p in photos]
    converted = [fashion_mnist_form(g) for g in grays]
    assert all('negated (light background)' in steps and 'background trimmed' in steps
               for _, steps in converted)
    got = _predict(model, pre.tensor([image for image, _ in converted]))
    assert (got == labels[index]).mean() >= 0.90
    source = _predict(model, pre.tensor(list(images[index])))
    assert (got == source).mean() >= 0.90
    raw = pre.tensor([onp.asarray(Image.fromarray(g).resize((28, 28))) for g in grays])
    assert (_predict(model, raw) == labels[index]).mean() < 0.5


def test_dark_background_and_busy_background(test_split):
    """An enlarged image on its own black background is fitted back to 28x28 (trimmed
    only where the garment leaves a margin); a border that is not one shade is not
    trimmed."""
    images, _ = test_split
    big = onp.asarray(Image.fromarray(images[0]).resize((112, 112), Image.Resampling.BILINEAR))
    out, steps = fashion_mnist_form(big)
    assert out.shape == (28, 28) and 'negated (light background)' not in steps
    rows, cols = onp.nonzero(out > 24)  # the garment fills the square along its longer side
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 >= 27
    busy = onp.random.RandomState(0).randint(0, 256, (50, 40)).astype(onp.uint8)
    out, steps = fashion_mnist_form(busy)
    assert out.shape == (28, 28) and 'background trimmed' not in steps
    assert steps[-1] == 'fit 40x50 into 28x28'


def test_numpy_pipeline_is_the_data_modules(test_split):
    """`Preprocess.tensor` (numpy, what predict and a deployer run) against the data
    modules' MXNet resize + ToTensor: OpenCV rounds its bilinear result to 8 bits (half a
    level) with 11-bit fixed-point weights, so the two differ by at most 1/255."""
    images, _ = test_split
    pre = Preprocess(64, 1, tuple(CLASSES))
    want = to_tensor(images[:32], (64, 64)).asnumpy()
    got = pre.tensor(list(images[:32]))
    assert got.shape == want.shape == (32, 1, 64, 64) and got.dtype == onp.float32
    assert abs(got - want).max() <= 1 / 255
    rgb = onp.random.RandomState(0).randint(0, 256, (2, 40, 30, 3)).astype(onp.uint8)
    assert abs(Preprocess(24, 3, ('a', 'b')).tensor(list(rgb))
               - to_tensor(rgb, (24, 24)).asnumpy()).max() <= 1 / 255


def _plain_numpy_input(path, meta):
    """A deployer's preprocessing, written from the export's metadata alone: the file as
    8-bit grayscale, bilinear resize (half-pixel centres, clamped edges), scale, mean, std."""
    assert meta['channels'] == 1 and meta['layout'] == 'NCHW'
    x = onp.asarray(Image.open(path).convert('L'), onp.float32)
    assert x.shape == (meta['source_size'],) * 2  # test images: already Fashion-MNIST's form
    side = meta['input_size']

    def axis(n):
        src = onp.clip((onp.arange(side) + 0.5) * n / side - 0.5, 0, n - 1)
        lo = onp.floor(src).astype(int)
        return lo, onp.minimum(lo + 1, n - 1), src - lo

    r0, r1, fr = axis(x.shape[0])
    c0, c1, fc = axis(x.shape[1])
    x = x[r0] * (1 - fr)[:, None] + x[r1] * fr[:, None]
    x = x[:, c0] * (1 - fc) + x[:, c1] * fc
    x = (x * meta['scale'] - meta['mean'][0]) / meta['std'][0]
    return x[None, None].astype(onp.float32)


@pytest.mark.slow
def test_exported_onnx_with_its_metadata_gives_predicts_labels(tmp_path, test_split, capsys):
    """`densenet export --format onnx`, then ONNX Runtime with numpy preprocessing read
    from the file's own metadata, on real test images: the labels `densenet predict`
    prints. The OpenVINO IR and the MXNet export carry the same fields."""
    import onnxruntime as ort
    import openvino as ov
    images, _ = test_split
    paths = sorted(str(p) for p in IMAGES.glob('*.png'))
    for i in range(100, 130):
        paths.append(str(tmp_path / f'{i}.png'))
        Image.fromarray(images[i]).save(paths[-1])
    assert main(['predict', *paths]) == 0
    printed = [re.match(r'(.*?): (.+?) \((?:0\.\d{3}|1\.000)\)', line).group(2)
               for line in capsys.readouterr().out.splitlines()]
    want = Preprocess.from_meta(read_meta(pretrained_path('book', 'fashion-mnist'))).to_dict()
    for fmt in ('onnx', 'openvino', 'mxnet'):
        assert main(['export', '--format', fmt, '--out', str(tmp_path / 'out')]) == 0
    session = ort.InferenceSession(str(tmp_path / 'out' / 'densenet.onnx'))
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta == want
    name = session.get_inputs()[0].name
    labels = [meta['classes'][int(session.run(None, {name: _plain_numpy_input(p, meta)})[0]
                                  .argmax())] for p in paths]
    assert labels == printed
    ir = ov.Core().read_model(str(tmp_path / 'out' / 'densenet.xml'))
    assert {k: json.loads(ir.get_rt_info(['densenet', k]).astype(str)) for k in want} == want
    with open(tmp_path / 'out' / 'densenet-preprocess.json') as f:
        assert json.load(f) == want
    assert os.path.isfile(tmp_path / 'out' / 'densenet-symbol.json')


def test_shipped_example_images_are_what_the_script_writes(tmp_path, real_data_dir):
    """examples/images/ is examples/make_images.py's output, file for file: the PNGs
    pixel for pixel, the JPEGs within JPEG's own rounding (another libjpeg build may
    round an 8x8 block's coefficients differently: under one level on average)."""
    _make_images().main(['--data-dir', real_data_dir, '--out', str(tmp_path)])
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*') if p.is_file())
    shipped = sorted(p.relative_to(IMAGES) for p in IMAGES.rglob('*') if p.is_file())
    assert made == shipped
    for rel in made:
        a = onp.asarray(Image.open(tmp_path / rel), float)
        b = onp.asarray(Image.open(IMAGES / rel), float)
        assert a.shape == b.shape, rel
        if rel.suffix == '.png':
            assert onp.array_equal(a, b), rel
        else:
            assert abs(a - b).mean() < 1, rel


def test_transparent_cutout_goes_onto_white(tmp_path, shipped, test_split):
    """A dark garment cut out on a transparent background (RGBA) is composited onto white,
    as the dataset's photos were, then negated: the shipped model gets its label."""
    model, _, pre = shipped
    images, labels = test_split
    i = int(onp.flatnonzero(labels == 7)[0])  # a sneaker
    garment = onp.asarray(Image.fromarray(images[i]).resize((140, 140)), float)
    rgba = onp.zeros((200, 200, 4), onp.uint8)
    rgba[30:170, 30:170, :3] = (255 - garment)[..., None] * 0.4  # dark, colourless
    rgba[30:170, 30:170, 3] = onp.where(garment > 20, 255, 0)
    path = tmp_path / 'cutout.png'
    Image.fromarray(rgba, 'RGBA').save(path)
    X, (notes,) = pre([path])
    assert 'negated (light background)' in notes
    assert CLASSES[int(_predict(model, X)[0])] == 'sneaker'


def test_runs_written_before_the_preprocess_field_still_load(tmp_path):
    """Metadata without ``preprocess`` (runs of the first 0.1.0 builds) gets its dataset's
    preprocessing."""
    meta = {'input_size': 32, 'channels': 1, 'classes': list(CLASSES),
            'dataset': 'fashion-mnist'}
    assert Preprocess.from_meta(meta) == Preprocess(32, 1, tuple(CLASSES), 28,
                                                    'fashion-mnist', 'light-on-dark')
    folder = {**meta, 'channels': 3, 'classes': ['a', 'b'], 'dataset': 'folder:x'}
    assert Preprocess.from_meta(folder) == Preprocess(32, 3, ('a', 'b'))
    pre = Preprocess.from_meta(meta)
    assert Preprocess.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
