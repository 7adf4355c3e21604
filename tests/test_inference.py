"""INT8/BF16 inference and the fast fp32 path against the book-literal model."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, np, npx

from densenet import DenseNet, runtime
from densenet.data import FashionMNIST
from densenet.inference import calibration_images, inference_model
from densenet.training import TrainConfig, evaluate, fit, prepare_model


def _copy(src, dst):
    for a, b in zip(src.net.collect_params().values(), dst.net.collect_params().values()):
        b.set_data(a.data())


def _forward_and_grads(fast, dtype, X, y):
    mx.random.seed(1)
    m = DenseNet()
    m(X.astype('float32'))
    if dtype == 'float64':
        m.net.cast('float64')
    if fast:
        prepare_model(m, [mx.cpu()], hybridize=True)  # legacy concat + static_alloc
    X = X.astype(dtype)
    out = m(X).asnumpy()
    with autograd.record():
        loss = m.loss(m(X), y)
    loss.backward()
    return out, [p.grad().asnumpy() for p in m.net.collect_params().values()
                 if p.grad_req != 'null']


def _worst(a, b):
    return max(float(abs(x - z).max()) for x, z in zip(a, b))


def test_fast_path_equals_book_literal_forward_and_gradients(real_data_dir):
    data = FashionMNIST(batch_size=8, resize=(64, 64), root=real_data_dir)
    X, y = next(iter(data.val_dataloader()))
    book32, fast32 = (_forward_and_grads(f, 'float32', X, y) for f in (False, True))
    assert abs(book32[0] - fast32[0]).max() <= 1e-5
    # The two concatenations are the same math: identical in float64.
    book64, fast64 = (_forward_and_grads(f, 'float64', X, y) for f in (False, True))
    assert abs(book64[0] - fast64[0]).max() <= 1e-12
    assert _worst(book64[1], fast64[1]) <= 1e-12
    # In float32 the stem's weight gradient (summed over the whole batch through
    # BatchNorm) carries rounding error of ~1e-2 on either path, so the paths
    # cannot agree to 1e-5 there. The fast path is held to the book path's own
    # float32 accuracy against float64.
    book_err, fast_err = _worst(book32[1], book64[1]), _worst(fast32[1], book64[1])
    assert fast_err <= 2 * book_err


@pytest.fixture(scope='module')
def trained(tmp_path_factory, real_data_dir):
    cfg = TrainConfig(epochs=2, limit=6000, resize=32, batch_size=64, lr=0.1, momentum=0.9,
                      wd=5e-4, schedule='cosine', data_dir=real_data_dir,
                      out=str(tmp_path_factory.mktemp('inference')))
    fit(cfg, log=lambda *a: None)
    model = DenseNet()
    model.net(np.zeros((1, 1, 32, 32)))
    model.net.load_parameters(cfg.out + '/last.params')
    data = FashionMNIST(batch_size=250, resize=(32, 32), root=real_data_dir)
    return model, data


def _accuracy(model, data):
    return evaluate(model, data.val_dataloader(), [mx.cpu()])


@pytest.mark.parametrize('precision', ['int8', 'bf16'])
def test_low_precision_accuracy(trained, precision):
    model, data = trained
    if precision == 'bf16' and not runtime.describe()['bf16']:
        pytest.fail('this CPU has no bfloat16 support; the test needs avx512_bf16 or AMX')
    probs = onp.concatenate([npx.softmax(model(X)).asnumpy()
                             for X, _ in data.val_dataloader()])
    fp32_pred = probs.argmax(axis=1)
    fp32_acc = (fp32_pred == data.val_arrays[1]).mean()
    low = inference_model(model, precision, calibration_images(data),
                          input_shape=(1, 1, 32, 32))
    _, acc, pred = _accuracy(low, data)
    agreement = (pred == fp32_pred).mean()
    top2 = onp.sort(probs, axis=1)[:, -2:]
    confident = top2[:, 1] - top2[:, 0] > 0.5  # fp32's winner leads by 0.5 or more
    kept = (pred == fp32_pred)[confident].mean()
    print(f'{precision}: fp32 {fp32_acc:.4f} -> {acc:.4f}, top-1 agreement {agreement:.4f}, '
          f'on the {confident.mean():.0%} confident images {kept:.4f}')
    assert fp32_acc > 0.75
    assert abs(acc - fp32_acc) <= 0.003
    # This 2-epoch model has many near-ties, where any rounding may flip the
    # winner (int8 agreement measured 98.1% on an AMX Xeon; with the earlier
    # min/max thresholds 96.2% on an AMD EPYC, 94.7% on the Xeon; bf16 99.6%);
    # the README reports the fully trained models' figures.
    # Predictions fp32 is sure of must survive.
    assert kept >= 0.99
    assert agreement >= (0.93 if precision == 'int8' else 0.99)


def test_int8_needs_calibration():
    with pytest.raises(ValueError, match='calibration images'):
        inference_model(DenseNet(), 'int8')


def test_threads_set_before_mxnet_and_warned_when_too_late(tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in __import__('os').environ.items()
           if k not in runtime.THREAD_VARS}
    first = subprocess.run([sys.executable, '-c', 'import densenet, os; '
                            'print(os.environ["OMP_NUM_THREADS"])'],
                           env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == str(runtime.available_cores())
    late = subprocess.run([sys.executable, '-W', 'always', '-c',
                           'import mxnet, densenet; densenet.runtime.check_threads()'],
                          env=env, capture_output=True, text=True, check=True)
    if runtime.available_cores() > 1:
        assert 'mxnet was imported before densenet' in late.stderr
    user = subprocess.run([sys.executable, '-c', 'import densenet, os; '
                           'print(os.environ["OMP_NUM_THREADS"], '
                           'densenet.runtime.describe()["threads"])'],
                          env=dict(env, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, check=True)
    assert user.stdout.split() == ['1', 'set', 'by', 'user']


def test_percentile_collector_thresholds():
    from densenet.inference import PercentileCollector
    c = PercentileCollector(percentile=99.0, per_batch=10**6)
    c.add('relu_output', onp.arange(1001, dtype='float32'))    # 0..1000
    c.add('signed_output', onp.linspace(-100, 100, 2001, dtype='float32'))
    th = c.min_max_dict
    assert th['relu_output'][0] == 0.0  # never negative: stays unsigned
    assert abs(th['relu_output'][1] - 990.0) < 1e-3
    assert abs(th['signed_output'][0] + 98.0) < 1e-3 and abs(th['signed_output'][1] - 98.0) < 1e-3
    with pytest.raises(ValueError, match='percentile'):
        PercentileCollector(percentile=30)
