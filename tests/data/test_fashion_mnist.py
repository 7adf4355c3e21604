import gzip
import http.server
import os
import shutil
import threading

import numpy as onp
import pytest
from mxnet import np
from mxnet.gluon.data.vision import transforms

from densenet.data import FashionMNIST, to_tensor
from densenet.data import fashion_mnist as dm
from densenet.data.batches import unaugmented_train_loader

LABELS = 'train-labels-idx1-ubyte'


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data anywhere but where a test puts it; no real network."""
    monkeypatch.delenv('DENSENET_DATA', raising=False)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxnet_home'))
    monkeypatch.setattr(dm, 'DEBIAN_DIR', str(tmp_path / 'no-debian'))
    monkeypatch.setenv('DENSENET_DATA_URL', 'http://127.0.0.1:9/')  # discard port: refused
    dm._CACHE.clear()
    return tmp_path


def copy_real(real_data_dir, dst):
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(real_data_dir):
        shutil.copy(os.path.join(real_data_dir, name), dst)
    return str(dst)


def test_real_data_from_debian_path(real_data_dir):
    d = FashionMNIST(batch_size=256, root=real_data_dir)
    images, labels = d.train_arrays
    assert images.shape == (60000, 28, 28) and images.dtype == onp.uint8
    assert labels.shape == (60000,) and labels.dtype == onp.int32
    assert onp.bincount(labels).tolist() == [6000] * 10
    assert onp.bincount(d.val_arrays[1]).tolist() == [1000] * 10
    X, y = next(iter(d.val_dataloader()))
    assert X.shape == (256, 1, 28, 28) and X.dtype == onp.float32
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0 and float(X.max()) > 0.9
    assert len(d.train_dataloader()) == 60000 // 256 + 1
    assert d.text_labels([0, 9]) == ['t-shirt', 'ankle boot']


def test_holdout_validates_on_training_images(real_data_dir):
    full = FashionMNIST(root=real_data_dir).train_arrays
    d = FashionMNIST(batch_size=100, root=real_data_dir, holdout=5000, limit=1000)
    # The last 5000 training images validate; the limit applies to the rest.
    assert (d.val_arrays[0] == full[0][-5000:]).all()
    assert (d.val_arrays[1] == full[1][-5000:]).all()
    assert (d.train_arrays[0] == full[0][:1000]).all()
    assert len(d.val) == 5000 and len(d.val_dataloader()) == 50
    assert len(d.train_arrays[1]) == 1000
    with pytest.raises(ValueError, match='holdout must be between 1 and 59999'):
        FashionMNIST(root=real_data_dir, holdout=60000)


def test_batches_equal_the_books_per_sample_pipeline(real_data_dir):
    d = FashionMNIST(batch_size=16, resize=(40, 40), root=real_data_dir)
    X, y = next(iter(d.val_dataloader()))
    trans = transforms.Compose([transforms.Resize((40, 40)), transforms.ToTensor()])
    for i in (0, 7, 15):
        expected = trans(np.array(d.val_arrays[0][i][..., None]))
        assert expected.shape == (1, 40, 40)
        assert float(np.abs(X[i] - expected).max()) == 0.0
        assert float(np.abs(d.val[i][0] - expected).max()) == 0.0
        assert int(y[i]) == d.val[i][1]


def test_the_unaugmented_training_batches_are_at_the_modules_side(real_data_dir):
    """`side`, the DataModule's one name for the image side, is the book's `resize`."""
    d = FashionMNIST(batch_size=16, resize=(40, 40), root=real_data_dir, limit=32,
                     augment=True, erase=0.5)
    assert (d.side, d.channels, len(d.classes)) == (40, 1, 10)
    X, y = next(iter(unaugmented_train_loader(d)))
    assert X.shape == (16, 1, 40, 40)
    assert float(np.abs(X - to_tensor(d.train_arrays[0][:16], (40, 40))).max()) == 0.0
    assert (y.asnumpy() == d.train_arrays[1][:16]).all()


def test_shuffle_depends_on_seed_and_epoch_only(real_data_dir):
    d = FashionMNIST(batch_size=8, root=real_data_dir, limit=64, seed=3)
    a, b = d.train_dataloader(), d.train_dataloader()
    first = [y.asnumpy().tolist() for _, y in a]
    second = [y.asnumpy().tolist() for _, y in a]  # next epoch: another order
    assert first != second
    b.set_epoch(1)
    assert [y.asnumpy().tolist() for _, y in b] == second


def test_search_order(isolated, real_data_dir, monkeypatch):
    root = copy_real(real_data_dir, isolated / 'root')
    env = copy_real(real_data_dir, isolated / 'env')
    monkeypatch.setenv('DENSENET_DATA', env)
    assert dm.locate(root)[LABELS].startswith(root)
    assert dm.locate(None)[LABELS].startswith(env)
    monkeypatch.delenv('DENSENET_DATA')
    cache = copy_real(real_data_dir, isolated / 'mxnet_home' / 'datasets' / 'fashion-mnist')
    assert dm.locate(None)[LABELS].startswith(cache)
    shutil.rmtree(cache)
    monkeypatch.setattr(dm, 'DEBIAN_DIR', real_data_dir)
    assert dm.locate(None)[LABELS].startswith(real_data_dir)


def test_raw_files_work_too(isolated, real_data_dir):
    root = isolated / 'raw'
    root.mkdir()
    for name in dm.FILES:
        with gzip.open(os.path.join(real_data_dir, name + '.gz')) as f:
            (root / name).write_bytes(f.read())
    assert dm.load_split('val', str(root))[0].shape == (10000, 28, 28)


def _labels_raw(real_data_dir):
    with gzip.open(os.path.join(real_data_dir, LABELS + '.gz')) as f:
        return bytearray(f.read())


def _corrupt_case(isolated, real_data_dir, name, payload, gz=True):
    root = copy_real(real_data_dir, isolated / 'bad')
    os.remove(os.path.join(root, name + '.gz'))
    path = os.path.join(root, name + ('.gz' if gz else ''))
    if gz:
        with gzip.open(path, 'wb') as f:
            f.write(bytes(payload))
    else:
        with open(path, 'wb') as f:
            f.write(bytes(payload))
    return root, path


def test_truncated_gz(isolated, real_data_dir):
    root = copy_real(real_data_dir, isolated / 'bad')
    path = os.path.join(root, 't10k-images-idx3-ubyte.gz')
    with open(path, 'rb') as f:
        head = f.read(100_000)
    with open(path, 'wb') as f:
        f.write(head)
    with pytest.raises(ValueError, match=r't10k-images-idx3-ubyte.gz: cannot be '
                                         r'decompressed, the file is truncated.*delete'):
        dm.load_split('val', root)


def test_wrong_magic(isolated, real_data_dir):
    raw = _labels_raw(real_data_dir)
    raw[3] = 3
    root, path = _corrupt_case(isolated, real_data_dir, LABELS, raw)
    with pytest.raises(ValueError, match=f'{path}: wrong magic number 2051.*point root='):
        dm.load_split('train', root)


def test_wrong_count(isolated, real_data_dir):
    raw = _labels_raw(real_data_dir)[:8 + 59999]
    raw[4:8] = (59999).to_bytes(4, 'big')
    root, _ = _corrupt_case(isolated, real_data_dir, LABELS, raw, gz=False)
    with pytest.raises(ValueError, match='holds 59999 items, expected 60000'):
        dm.load_split('train', root)


def test_truncated_raw(isolated, real_data_dir):
    raw = _labels_raw(real_data_dir)[:-10]
    root, _ = _corrupt_case(isolated, real_data_dir, LABELS, raw, gz=False)
    with pytest.raises(ValueError, match='59998 bytes, expected 60008'):
        dm.load_split('train', root)


def test_wrong_hash(isolated, real_data_dir):
    raw = _labels_raw(real_data_dir)
    raw[100] = (raw[100] + 1) % 10  # still a valid label, but not the official file
    root, _ = _corrupt_case(isolated, real_data_dir, LABELS, raw)
    with pytest.raises(ValueError, match='differs from the official file'):
        dm.load_split('train', root)


def test_debian_hint_says_reinstall(isolated, real_data_dir, monkeypatch):
    raw = _labels_raw(real_data_dir)
    raw[100] = (raw[100] + 1) % 10
    root, _ = _corrupt_case(isolated, real_data_dir, LABELS, raw)
    monkeypatch.setattr(dm, 'DEBIAN_DIR', root)
    with pytest.raises(ValueError, match='apt-get install --reinstall dataset-fashion-mnist'):
        dm.load_split('train', None)


def test_no_data_no_network(isolated):
    with pytest.raises(FileNotFoundError) as e:
        FashionMNIST(root=str(isolated / 'empty'))
    msg = str(e.value)
    assert 'apt-get install dataset-fashion-mnist' in msg
    assert 'download' in msg and '$DENSENET_DATA' in msg and 'root=' in msg
    assert not any(f.endswith('.gz') for _, _, fs in os.walk(isolated) for f in fs)


class _Server:
    """A static file server on 127.0.0.1 whose files a test may break."""

    def __init__(self, folder, truncate=None):
        truncate_name = truncate

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=folder, **kw)

            def log_message(self, *args):
                pass

            def do_GET(self):
                if truncate_name and self.path.endswith(truncate_name):
                    body = open(os.path.join(folder, truncate_name), 'rb').read()
                    self.send_response(200)
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:len(body) // 3])  # then the connection drops
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_download_verifies_and_renames(isolated, real_data_dir, monkeypatch):
    served = copy_real(real_data_dir, isolated / 'served')
    with _Server(served) as server:
        monkeypatch.setenv('DENSENET_DATA_URL', server.url)
        target = isolated / 'target'
        d = FashionMNIST(root=str(target), limit=10)
    assert sorted(os.listdir(target)) == sorted(n + '.gz' for n in dm.FILES)
    assert d.train_arrays[0].shape == (10, 28, 28)


def test_corrupted_download_leaves_nothing(isolated, real_data_dir, monkeypatch):
    served = copy_real(real_data_dir, isolated / 'served')
    raw = _labels_raw(real_data_dir)
    raw[100] = (raw[100] + 1) % 10
    with gzip.open(os.path.join(served, LABELS + '.gz'), 'wb') as f:
        f.write(bytes(raw))
    target = isolated / 'target'
    with _Server(served) as server:
        monkeypatch.setenv('DENSENET_DATA_URL', server.url)
        with pytest.raises(ValueError, match=f'{server.url}{LABELS}.gz: content differs'):
            dm.find_or_download(str(target))
    assert not (target / (LABELS + '.gz')).exists()
    assert not [f for f in os.listdir(target) if f.startswith('.')]  # no temporary left


def test_interrupted_download_leaves_nothing(isolated, real_data_dir, monkeypatch):
    served = copy_real(real_data_dir, isolated / 'served')
    target = isolated / 'target'
    with _Server(served, truncate='t10k-images-idx3-ubyte.gz') as server:
        monkeypatch.setenv('DENSENET_DATA_URL', server.url)
        with pytest.raises(ValueError, match='broke off'):
            dm.find_or_download(str(target))
    assert not (target / 't10k-images-idx3-ubyte.gz').exists()
    assert not [f for f in os.listdir(target) if f.startswith('.')]
