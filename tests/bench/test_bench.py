"""benchmarks/bench.py: records name their machine; precisions it lacks are reported, not failed."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, 'benchmarks', 'bench.py')


def test_quick_bench_records_the_machine_and_unsupported_precisions(tmp_path):
    out = tmp_path / 'bench.json'
    # An AVX2-only machine, as oneDNN sees it: bf16 inference is not supported there.
    env = dict(os.environ, DNNL_MAX_CPU_ISA='AVX2')
    proc = subprocess.run([sys.executable, BENCH, '--quick', '--only', 'mxnet-fast',
                           'mxnet-bf16', 'onnxruntime-fp32', '--json', str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = json.loads(out.read_text())
    by_name = {(r['name'], r['task']): r for r in recs}
    assert set(by_name) == {('mxnet-fast', 'train'), ('mxnet-fast', 'infer'),
                            ('mxnet-bf16', 'infer'), ('onnxruntime-fp32', 'infer')}
    assert by_name[('mxnet-bf16', 'infer')]['status'] == 'not supported on this CPU'
    assert by_name[('mxnet-fast', 'train')]['img_s'] > 0
    for name in ('mxnet-fast', 'onnxruntime-fp32'):  # the engines side by side
        r = by_name[(name, 'infer')]
        assert r['img_s'] > 0 and 0 < r['latency_ms_bs1'] < r['latency_ms_bs8']
        assert f'| {name} | fp32 | {r["img_s"]:.1f} |' in proc.stdout
    for r in recs:
        assert r['machine']['dnnl_max_cpu_isa'] == 'AVX2'
        assert r['machine']['precisions']['bf16'] is None
    header = proc.stdout.splitlines()[0]
    cpu = recs[0]['machine']['cpu']
    assert header.startswith(f'machine: {cpu} [avx2, DNNL_MAX_CPU_ISA=AVX2]')
    assert '| mxnet-bf16 | bf16 | not supported on this CPU |' in proc.stdout


def test_memory_plan_accounts_every_graph(tmp_path):
    """benchmarks/memory_plan.py: the planner's log lines up with the graph's nodes, and
    recomputing frees live tensors (ideal peak) in the order the README reports."""
    out = tmp_path / 'plan.json'
    script = os.path.join(os.path.dirname(BENCH), 'memory_plan.py')
    proc = subprocess.run([sys.executable, script, '--side', '64', '--batch-size', '16',
                           '--json', str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    std, me, convs = json.loads(out.read_text())
    assert (std['variant'], me['variant'], convs['variant']) == (
        'standard', 'memory-efficient', 'what-if-convolutions')
    assert std['by_category_mb'].get('recomputed', 0) == 0
    assert convs['ideal_peak_mb'] < me['ideal_peak_mb'] < std['ideal_peak_mb']
    assert me['tensors'] > std['tensors']  # the mirrored copies


def test_families_time_each_model_at_its_own_input(tmp_path):
    """--families: every family at its own side, channels and batch, grouped by model, and
    the ratio table has one row per family and task this library ran (inference only here:
    one process per family)."""
    out = tmp_path / 'families.json'
    proc = subprocess.run([sys.executable, BENCH, '--families', '--quick', '--only',
                           'mxnet-fp32', '--json', str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = json.loads(out.read_text())
    got = {r['group']: (r['name'], r['task'], r['model'], r['side'], r['batch_size'])
           for r in recs}
    assert len(recs) == 3 and all(r['img_s'] > 0 for r in recs)
    # --quick: batch 8 and sides of at most 64
    assert got == {'book': ('mxnet-fp32', 'infer', 'book', 64, 8),
                   'densenet_bc_100': ('mxnet-fp32', 'infer', 'densenet_bc_100', 32, 8),
                   'densenet121': ('mxnet-fp32', 'infer', 'densenet121', 64, 8)}
    summary = proc.stdout[proc.stdout.index('| model, input, batch |'):].splitlines()
    rows = [line.split(' | ') for line in summary[2:] if line.startswith('|')]
    assert [row[:3] for row in rows] == [
        ['| book, 64x64, 8', 'infer', 'mxnet-fp32 (fp32)'],
        ['| densenet_bc_100, 32x32, 8', 'infer', 'mxnet-fp32 (fp32)'],
        ['| densenet121, 64x64, 8', 'infer', 'mxnet-fp32 (fp32)']]


def test_dnnl_profile_sums_the_timed_steps(tmp_path):
    """benchmarks/dnnl_profile.py: oneDNN's verbose lines of the timed steps only, summed per
    primitive, implementation and pass; the shares add up to the whole."""
    out = tmp_path / 'profile.json'
    script = os.path.join(os.path.dirname(BENCH), 'dnnl_profile.py')
    proc = subprocess.run([sys.executable, script, '--side', '32', '--batch-size', '4',
                           '--steps', '2', '--json', str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert sum(r['share'] for r in rows) == pytest.approx(1, abs=1e-9)
    passes = {(r['primitive'], r['pass']) for r in rows}
    # training: forward, backward data and backward weights of the convolutions
    assert {('convolution', 'forward'), ('convolution', 'backward data'),
            ('convolution', 'backward weights')} <= passes
    # per step, each of the book's convolutions once forward: the first, 4 blocks of 4 and
    # the 3 transitions' 1x1
    assert sum(r['calls'] for r in rows if r['primitive'] == 'convolution'
               and r['pass'] == 'forward') == 1 + 4 * 4 + 3
    assert '| convolution |' in proc.stdout and 'a step with the logging on' in proc.stdout


def test_dnnl_profile_reads_only_after_the_mark():
    """Lines before the mark (graph building, warm-up) are not counted."""
    sys.path.insert(0, os.path.dirname(BENCH))
    import dnnl_profile
    line = 'dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_training,src,,,mb1,{}'
    rows = dnnl_profile.table([line.format(5.0), dnnl_profile.MARK, line.format(1.5),
                               line.format(2.5), 'noise'], steps=2)
    assert rows == [{'primitive': 'convolution', 'implementation': 'jit:avx2',
                     'pass': 'forward', 'ms': 2.0, 'share': 1.0, 'calls': 1.0}]
