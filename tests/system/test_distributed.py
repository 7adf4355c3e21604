"""Data-parallel training through MXNet's dist_sync KVStore, on 127.0.0.1 only."""
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from densenet import DenseNet
from densenet.data import FashionMNIST
from densenet.modes import prepare_model
from densenet.system.launch import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.dist]

# 256 images over 2 workers: 4 steps of 32 per worker, global batch 64.
# --precise-bn off: rank 0 would re-estimate its BatchNorm statistics before validating
# (this short run's are stale), and the test compares every worker's running statistics
# with a reference loop's. A dist run with re-estimation is the parameter-server page's
# snippet (tests/docs/test_snippets.py).
TRAIN = ['--kvstore', 'dist_sync', '--limit', '256', '--epochs', '1', '--resize', '32',
         '--batch-size', '32', '--lr', '0.1', '--momentum', '0.9', '--seed', '3',
         '--precise-bn', 'off']
# `densenet` with the test-only --rank-params extension (every worker's final parameters).
RANK_PARAMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           'train', 'rank_params.py')


def run_bounded(cmd, timeout):
    """Run `cmd` in its own session; on timeout stop it (and its cluster) for good."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the launcher stops its cluster on SIGTERM
        try:
            out, _ = proc.communicate(timeout=20)
        finally:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        pytest.fail(f'{cmd[:4]} did not finish in {timeout} s:\n{out[-3000:]}')
    return proc.returncode, out


def trainable(net):
    """Trainable parameters in layer order (names carry a per-process counter)."""
    return [p.data().asnumpy() for p in net.collect_params().values()
            if p.grad_req != 'null']


def everything(net, ctx=None):
    """All parameters, BatchNorm running statistics included, in layer order."""
    return [p.data(ctx).asnumpy() for p in net.collect_params().values()]


def load(path):
    m = DenseNet()
    m.net(np.zeros((1, 1, 32, 32)))
    m.net.load_parameters(path)
    return m


def single_process_reference(data_dir):
    """One process, each global batch split over cpu(0) and cpu(1) as the workers split it."""
    mx.random.seed(3)
    onp.random.seed(3)
    model = DenseNet(lr=0.1)
    model.net(np.zeros((1, 1, 32, 32)))
    ctxs = [mx.cpu(0), mx.cpu(1)]
    prepare_model(model, ctxs, hybridize=True)
    trainer = gluon.Trainer(model.net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 0.0},
                            kvstore='device')
    shards = [FashionMNIST(batch_size=32, resize=(32, 32), root=data_dir, limit=256,
                           seed=3, shard=(r, 2)).train_dataloader() for r in range(2)]
    for loader in shards:
        loader.set_epoch(0)
    for (X0, y0), (X1, y1) in zip(*shards, strict=True):
        Xs = [X0.as_in_context(ctxs[0]), X1.as_in_context(ctxs[1])]
        ys = [y0.as_in_context(ctxs[0]), y1.as_in_context(ctxs[1])]
        with autograd.record():
            losses = [model.loss(model(X), y, averaged=False) for X, y in zip(Xs, ys, strict=True)]
        for loss in losses:
            loss.backward()
        trainer.step(64)
    return model


def test_two_workers_match_single_process(tmp_path, real_data_dir):
    ranks = tmp_path / 'ranks'
    cmd = [sys.executable, '-m', 'densenet', 'launch', '-n', '2', '-s', '1', '--',
           sys.executable, RANK_PARAMS, 'train', *TRAIN, '--data-dir', real_data_dir,
           '--out', str(tmp_path / 'out'), '--rank-params', str(ranks)]
    code, out = run_bounded(cmd, timeout=300)
    assert code == 0, out[-3000:]
    assert '[worker rank 0]' in out and '[worker rank 1]' in out
    # Only rank 0 wrote the run's files.
    assert sorted(os.listdir(tmp_path / 'out')) == ['best.params', 'best.params.json',
                                                     'curves.png', 'last.params',
                                                     'last.params.json', 'metrics.csv',
                                                     'summary.json']
    nets = [load(str(ranks / f'rank-{r}.params')).net for r in (0, 1)]
    w0, w1 = (trainable(net) for net in nets)
    assert len(w0) == len(w1) and max(abs(a - b).max() for a, b in zip(w0, w1, strict=True)) == 0.0
    ref_model = single_process_reference(real_data_dir)
    reference = trainable(ref_model.net)
    worst = max(abs(a - b).max() for a, b in zip(w0, reference, strict=True))
    print(f'max |dist - single process| = {worst:.3g}')
    assert worst <= 1e-5
    # Running statistics stay per worker: worker r's (and rank 0's saved file's)
    # equal those the reference kept on cpu(r), which saw the same shard.
    for r, net in enumerate(nets):
        mine, ref = everything(net), everything(ref_model.net, mx.cpu(r))
        assert len(mine) == len(ref) > len(w0)
        worst = max(abs(a - b).max() for a, b in zip(mine, ref, strict=True))
        print(f'worker {r}: max |all parameters - reference on cpu({r})| = {worst:.3g}')
        assert worst <= 1e-5
    saved = everything(load(str(tmp_path / 'out' / 'last.params')).net)
    assert max(abs(a - b).max() for a, b in zip(saved, everything(nets[0]), strict=True)) == 0.0
    # The run did move the weights (a comparison of untouched weights proves nothing).
    mx.random.seed(3)
    untouched = DenseNet()
    untouched.net(np.zeros((1, 1, 32, 32)))
    start = trainable(untouched.net)
    assert max(abs(a - b).max() for a, b in zip(w0, start, strict=True)) > 1e-3


def test_launcher_runs_the_cluster_under_the_naive_engine(monkeypatch, capsys):
    """The threaded engine hung a 2-worker run: the launcher picks the NaiveEngine."""
    monkeypatch.delenv('MXNET_ENGINE_TYPE', raising=False)
    assert Cluster(['true'], 2, 1).env['MXNET_ENGINE_TYPE'] == 'NaiveEngine'
    monkeypatch.setenv('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice')
    cluster = Cluster(['true'], 2, 1, stream=sys.stdout)
    assert cluster.env['MXNET_ENGINE_TYPE'] == 'ThreadedEnginePerDevice'  # the user's choice
    assert 'hung under the threaded engine' in capsys.readouterr().out


DYING_WORKER = '''
import os, sys, time
import mxnet as mx
kv = mx.kv.create('dist_sync')
if os.environ['DENSENET_WORKER_INDEX'] == '1':
    time.sleep(1)
    os._exit(3)
kv.init(0, mx.nd.zeros((4,)))
while True:  # the surviving worker blocks in its kvstore calls, as training would
    kv.push(0, mx.nd.ones((4,)))
    out = mx.nd.zeros((4,))
    kv.pull(0, out=out)
    out.wait_to_read()
'''


def test_dying_worker_stops_the_cluster():
    import io
    stream = io.StringIO()
    cluster = Cluster([sys.executable, '-c', DYING_WORKER], num_workers=2, num_servers=1,
                      stream=stream)
    tic = time.time()
    try:
        cluster.start()
        code = cluster.wait()
    finally:
        cluster.stop(grace=1)
    assert code == 3
    assert time.time() - tic < 60
    assert 'worker 1 exited with status 3; stopping the cluster' in stream.getvalue()
    assert len(cluster.procs) == 4
    for _, proc in cluster.procs:
        assert proc.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # no process of its group is left


def _marked(mark):
    """PIDs of the processes whose environment holds DENSENET_TEST_MARK=`mark`."""
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/environ', 'rb') as f:
                    if f'DENSENET_TEST_MARK={mark}'.encode() in f.read().split(b'\0'):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_the_cluster_dies_with_a_killed_launcher():
    """SIGKILL reaches no handler: every role must still go with the launcher."""
    import uuid
    mark = uuid.uuid4().hex
    sleeper = [sys.executable, '-c', 'import time; time.sleep(600)']
    launcher = subprocess.Popen([sys.executable, '-m', 'densenet', 'launch', '-n', '2', '--',
                                 *sleeper], env=dict(os.environ, DENSENET_TEST_MARK=mark),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while len(_marked(mark)) < 5 and time.time() < deadline:  # launcher + 4 roles
            time.sleep(0.2)
        roles = [pid for pid in _marked(mark) if pid != launcher.pid]
        assert len(roles) == 4
    finally:
        launcher.kill()
        launcher.wait()
    tic = time.time()
    while _marked(mark) and time.time() - tic < 10:
        time.sleep(0.05)
    left = _marked(mark)
    for pid in left:  # leave nothing behind, whatever the outcome
        os.kill(pid, signal.SIGKILL)
    print(f'every role gone {time.time() - tic:.2f} s after the launcher was killed')
    assert left == []


def test_a_worker_without_a_dist_kvstore_is_refused(tmp_path, real_data_dir):
    """Each worker would train alone on all the data and write the same folder."""
    out = tmp_path / 'out'
    cmd = [sys.executable, '-m', 'densenet', 'launch', '-n', '2', '--', sys.executable, '-m',
           'densenet', 'train', '--limit', '256', '--epochs', '1', '--resize', '32',
           '--data-dir', real_data_dir, '--out', str(out)]
    code, text = run_bounded(cmd, timeout=120)
    assert code == 2, text[-2000:]
    assert 'trains without a dist kvstore' in text and 'add --kvstore dist_sync' in text
    assert not out.exists()
