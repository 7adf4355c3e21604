"""Benchmark the book's DenseNet: this library's paths against PyTorch, on CPU.

Each (configuration, repetition) runs in its own process, so that peak RSS is
that configuration's alone; repetitions are interleaved across configurations
so that drifts of a shared machine hit all of them alike. Reported: train img/s
(one SGD step on a batch), inference img/s at the batch size, latency at batch
1 and 8, peak RSS and how much of it the timed steps added, and ratios against
PyTorch's best fp32 and best overall modes. Inference rows of the book's model
time its shipped Fashion-MNIST weights (`densenet.pretrained()`, trained at 64x64:
``--side 64`` is their input), INT8 calibrated on training images; the ONNX
Runtime and OpenVINO rows run the same model exported to ONNX, with the thread
count MXNet has.

    python benchmarks/bench.py                 # full table (a few minutes on 2 cores)
    python benchmarks/bench.py --quick         # smoke run
    python benchmarks/bench.py --json out.json
    python benchmarks/bench.py --side 64 --only mxnet-fast mxnet-int8 onnxruntime-fp32 \\
        openvino-fp32 openvino-bf16     # inference engines side by side
    python benchmarks/bench.py --unpooled --only mxnet-fast mxnet-memory-efficient-fast
    python benchmarks/bench.py --unpooled --side 224 --only mxnet-fast \\
        mxnet-memory-efficient-fast
    python benchmarks/bench.py --unpooled --model densenet121 --side 224 --batch-size 32 \\
        --only mxnet-fast mxnet-memory-efficient-fast
    python benchmarks/bench.py --families      # book at 96, DenseNet-BC-100 at 32 and
                                               # DenseNet-121 at 224, each against PyTorch

``--families`` times every model family with its own input (channels, classes,
side) and batch size (`FAMILIES`) and ends with one ratio table: this library's best
against PyTorch's best fp32 and best overall, per family and task.

Training rows of the fast paths also report the memory MXNet's planner gives
their graph in its graph executor ("planned", deterministic): the
memory-efficient fast path trains through that executor; the standard fast path
trains through Gluon's CachedOp, which shares the planner but not this figure,
so its row shows the same graph in the executor, nothing recomputed.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (framework, precision, tasks)
CONFIGS = {
    'mxnet-book-imperative': ('mxnet', 'fp32', ('train',)),
    'mxnet-fast': ('mxnet', 'fp32', ('train', 'infer')),
    # the fast path with BatchNorm and ReLU as two operators (densenet.modes.fused)
    'mxnet-fast-unfused': ('mxnet', 'fp32', ('train',)),
    'mxnet-memory-efficient': ('mxnet', 'fp32', ('train',)),
    'mxnet-memory-efficient-fast': ('mxnet', 'fp32', ('train',)),
    'mxnet-fp32': ('mxnet', 'fp32', ('infer',)),  # inference_model(m, 'fp32'): the rewritten graph
    'mxnet-bf16': ('mxnet', 'bf16', ('infer',)),
    'mxnet-int8': ('mxnet', 'int8', ('infer',)),
    # The exported model on the other CPU engines (densenet.deploy.engines), inference only.
    'onnxruntime-fp32': ('onnxruntime', 'fp32', ('infer',)),
    'onnxruntime-int8': ('onnxruntime', 'int8', ('infer',)),
    'openvino-fp32': ('openvino', 'fp32', ('infer',)),
    'openvino-bf16': ('openvino', 'bf16', ('infer',)),
    'openvino-int8': ('openvino', 'int8', ('infer',)),
    'pytorch-eager': ('pytorch', 'fp32', ('train', 'infer')),
    'pytorch-channels-last': ('pytorch', 'fp32', ('train', 'infer')),
    'pytorch-channels-last-bf16': ('pytorch', 'bf16', ('train', 'infer')),
}


_START_RSS = []
ENGINES = ('onnxruntime', 'openvino')
EXTRAS = {'onnxruntime': 'onnx', 'openvino': 'openvino'}
#: The MXNet rows timed through densenet.deploy.engines.engine('mxnet', precision).
ENGINE_ROUTE = ('mxnet-fp32', 'mxnet-bf16', 'mxnet-int8')


def alternating(runs, rounds, calls):
    """Seconds per call of each of `runs` ({name: a call}), timed in turn for `calls` calls
    each round, which goes first alternating, so that a machine whose speed drifts
    affects all alike: {name: [one figure a round]}."""
    order, times = list(runs.items()), {name: [] for name in runs}
    for r in range(rounds):
        for name, call in (order[::-1] if r % 2 else order):
            tic = time.perf_counter()
            for _ in range(calls):
                call()
            times[name].append((time.perf_counter() - tic) / calls)
    return times


def family_table(families, measure, columns, json_path=None):
    """Print the machine and a markdown table with one row per family: `measure(family)`
    gives a row (a dict), `columns` its cells as (header, cell(row)); write the machine
    and the rows as JSON to `json_path` where given. For the scripts that time two
    versions of a thing side by side (`alternating`)."""
    sys.path.insert(0, os.path.dirname(HERE))
    from densenet.system import runtime
    from densenet.system.files import atomic_text
    from densenet.system.machine import summary_line
    machine = runtime.machine()
    print(f'machine: {summary_line(machine)}')
    print('| ' + ' | '.join(header for header, _ in columns) + ' |')
    print('|' + '---|' * len(columns))
    rows = []
    for family in families:
        row = measure(family)
        rows.append(row)
        print('| ' + ' | '.join(cell(row) for _, cell in columns) + ' |', flush=True)
    if json_path:
        atomic_text(json_path, json.dumps({'machine': machine, 'rows': rows}, indent=1))


def _rss_mb():
    """This process's resident memory now, in MB (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _timed(step, iters, warmup):
    if not _START_RSS:  # model and batch built, nothing run yet
        _START_RSS.append(_rss_mb())
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    return times


def _mxnet_worker(name, task, batch, side, iters, warmup, model_name='book', channels=1,
                  classes=10):
    sys.path.insert(0, os.path.dirname(HERE))
    import densenet  # noqa: F401  (sets the thread count before mxnet loads)
    # isort: split
    import mxnet as mx
    import numpy as onp
    from mxnet import autograd, gluon, np, npx

    from densenet.modes import prepare_model
    mx.random.seed(0)
    model = _model(model_name, task, channels, classes)
    shape = (batch, channels, side, side)
    model.net(np.zeros((1, channels, side, side)))
    memory_efficient = name.startswith('mxnet-memory-efficient')
    X = np.random.uniform(size=shape)
    if name == 'mxnet-memory-efficient':  # imperative, like the book path it saves on
        prepare_model(model, [mx.cpu()], hybridize=False, memory_efficient=True)
    elif name != 'mxnet-book-imperative':
        prepare_model(model, [mx.cpu()], hybridize=True, memory_efficient=memory_efficient,
                      fuse=name != 'mxnet-fast-unfused')
    y = np.array(onp.random.randint(0, classes, batch).astype('int32'))
    if task == 'train':
        trainer = gluon.Trainer(model.net.collect_params(), 'sgd', {'learning_rate': 0.01})

        def step():
            with autograd.record():
                loss = model.loss(model(X), y, averaged=False)
            loss.backward()
            trainer.step(batch)
            npx.waitall()
        return _timed(step, iters, warmup), None

    def infer(Xb):
        def step():
            out = model(Xb)
            out.wait_to_read()
        return step
    return _inference_times(infer,
                            lambda n: np.random.uniform(size=(n, channels, side, side)),
                            batch, iters, warmup)


def _model(model_name, task, channels=1, classes=10):
    """The model a worker times: for inference of the book's model, its shipped weights."""
    from densenet import get_model, pretrained
    if task == 'infer' and model_name == 'book' and (channels, classes) == (1, 10):
        return pretrained()
    return get_model(model_name, lr=0.01, in_channels=channels, num_classes=classes)


def _calibration(side, channels=1):
    """INT8 calibration images: Fashion-MNIST training images (random ones without it,
    and for colour models)."""
    import numpy as onp
    if channels != 1:
        return (onp.random.RandomState(0).rand(256, side, side, channels) * 255).astype('uint8')
    try:
        from densenet.data import FashionMNIST
        return FashionMNIST(resize=(side, side)).train_arrays[0][:256]
    except Exception as e:  # data not installed: random images still time the path
        print(f'note: calibrating on random images ({e})', file=sys.stderr)
        return (onp.random.RandomState(0).rand(256, 28, 28) * 255).astype('uint8')


def _inference_times(infer, batch_of, batch, iters, warmup):
    """Step times at `batch`, and latencies at batch 1 and 8 ({size: times})."""
    times = _timed(infer(batch_of(batch)), iters, warmup)
    latency = {n: _timed(infer(batch_of(n)), max(iters * (40 if n == 1 else 8), 10), warmup)
               for n in (1, 8)}
    return times, latency


def _engine_worker(name, batch, side, iters, warmup, model_name='book', channels=1,
                   classes=10):
    sys.path.insert(0, os.path.dirname(HERE))
    import densenet  # noqa: F401  (sets the thread count before mxnet loads)
    # isort: split
    import numpy as onp

    from densenet.deploy.engines import engine
    engine_name, precision, _ = CONFIGS[name]
    model = _model(model_name, 'infer', channels, classes)
    calib = _calibration(side, channels) if precision == 'int8' else None
    run = engine(model, engine_name, precision, calib, input_shape=(1, channels, side, side))
    rng = onp.random.RandomState(0)

    def infer(Xb):
        return lambda: run(Xb)
    return _inference_times(
        infer, lambda n: rng.rand(n, channels, side, side).astype('float32'), batch, iters,
        warmup)


def _pytorch_worker(name, task, batch, side, iters, warmup, model_name='book', channels=1,
                    classes=10):
    import torch
    sys.path.insert(0, HERE)
    from torch_densenet import build
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    model = build(model_name, channels, classes)
    X = torch.rand(batch, channels, side, side)
    y = torch.randint(0, classes, (batch,))
    channels_last = 'channels-last' in name
    bf16 = name.endswith('bf16')
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)

    def autocast():
        return torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16)
    if task == 'train':
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(X), y)
            loss.backward()
            opt.step()
        return _timed(step, iters, warmup), None
    model.eval()

    def infer(Xb):
        def step():
            with torch.inference_mode(), autocast():
                model(Xb)
        return step
    def batch_of(n):
        Xn = torch.rand(n, channels, side, side)
        return Xn.contiguous(memory_format=torch.channels_last) if channels_last else Xn
    return _inference_times(infer, batch_of, batch, iters, warmup)


# Rows with the planner's figure: their graph in memory_plan.py's terms.
PLANNED = {'mxnet-fast': 'standard', 'mxnet-memory-efficient-fast': 'memory-efficient'}


def planned_mb(name, args, env):
    """The planner's MB for configuration `name`'s graph (benchmarks/memory_plan.py)."""
    cmd = [sys.executable, os.path.join(HERE, 'memory_plan.py'), '--worker', PLANNED[name],
           '--model', args.model, '--side', str(args.side), '--batch-size', str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])['planned_mb']


def worker(args):
    framework = CONFIGS[args.worker][0]
    common = (args.batch_size, args.side, args.iters, args.warmup, args.model, args.channels,
              args.classes)
    # ENGINE_ROUTE: numpy in, numpy out, as the other engines are called
    if args.worker in ENGINE_ROUTE or framework in ENGINES:
        times, latency = _engine_worker(args.worker, *common)
    elif framework == 'mxnet':
        times, latency = _mxnet_worker(args.worker, args.task, *common)
    else:
        times, latency = _pytorch_worker(args.worker, args.task, *common)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({'img_s': [args.batch_size / t for t in times],
                      'latency_ms': ({n: [1000 * t for t in ts] for n, ts in latency.items()}
                                     if latency else None),
                      'peak_rss_mb': peak, 'start_rss_mb': _START_RSS[0]}))


def have_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def describe_machine():
    """`densenet info`'s description of this machine (CPU, ISA, precisions, threads)."""
    sys.path.insert(0, os.path.dirname(HERE))
    from densenet.system import runtime
    return runtime.machine()


def unsupported(name, desc):
    """Why this machine cannot run configuration `name`, or None."""
    from densenet.system.machine import unsupported as why_not
    framework, precision, _ = CONFIGS[name]
    if framework in ENGINES:
        import importlib.util

        from densenet.deploy.engines import unavailable
        if importlib.util.find_spec(framework) is None:
            return f"{framework} is not installed (pip install -e '.[{EXTRAS[framework]}]')"
        return unavailable(framework, precision, desc['capabilities'])
    return why_not(precision, desc['capabilities']) if framework == 'mxnet' else None


def run_all(args, desc):
    configs = [c for c in CONFIGS if c in args.only] if args.only else list(CONFIGS)
    why = ('PyTorch is not installed (pip install -e ".[bench]"): its configurations are '
           'not run.' if not have_torch() else None)
    if why is None:
        sys.path.insert(0, HERE)
        from torch_densenet import BUILDERS
        if args.model not in BUILDERS:
            why = (f'PyTorch rows are for {", ".join(BUILDERS)} only: not run for '
                   f'{args.model}.')
    if why:
        print(why, file=sys.stderr)
        configs = [c for c in configs if CONFIGS[c][0] != 'pytorch']
    for name in configs:
        why = unsupported(name, desc)
        if why:
            print(f'{name}: not supported on this CPU ({why})', file=sys.stderr)
    configs = [c for c in configs if not unsupported(c, desc)]
    jobs = [(c, t) for c in configs for t in CONFIGS[c][2]]
    results = {job: {'img_s': [], 'latency_ms': {}, 'peak_rss_mb': [], 'added_mb': [],
                      'planned_mb': None} for job in jobs}
    env = dict(os.environ)
    if args.unpooled:  # freed arrays go back to the OS, so peak RSS follows live arrays
        env.update(MXNET_CPU_MEM_POOL_TYPE='Unpooled', MALLOC_MMAP_THRESHOLD_='65536',
                   MALLOC_TRIM_THRESHOLD_='0')
    def command(name, task):
        return [sys.executable, os.path.abspath(__file__), '--worker', name, '--task', task,
                '--batch-size', str(args.batch_size), '--side', str(args.side),
                '--iters', str(args.iters), '--warmup', str(args.warmup), '--model', args.model,
                '--channels', str(args.channels), '--classes', str(args.classes)]
    for name, task in jobs:
        if task == 'train' and name in PLANNED:
            results[(name, task)]['planned_mb'] = planned_mb(name, args, env)
    for rep in range(args.repeats):
        for name, task in jobs:
            proc = subprocess.run(command(name, task), capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f'{name} {task}: failed (exit {proc.returncode}): '
                      f'{proc.stderr.strip().splitlines()[-1:]}', file=sys.stderr)
                continue
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[(name, task)]
            r['img_s'] += out['img_s']
            for n, ts in (out['latency_ms'] or {}).items():
                r['latency_ms'].setdefault(n, []).extend(ts)
            r['peak_rss_mb'].append(out['peak_rss_mb'])
            r['added_mb'].append(out['peak_rss_mb'] - out['start_rss_mb'])
            print(f'[{rep + 1}/{args.repeats}] {name:28s} {task:5s} '
                  f'{statistics.median(out["img_s"]):8.1f} img/s', file=sys.stderr)
    return results


def records(results, batch_size, desc, only=None, side=96, model='book'):
    """One record per (configuration, task); each carries the machine description."""
    recs = []
    for name in (only or CONFIGS):
        why = unsupported(name, desc)
        if why:
            framework, precision, tasks = CONFIGS[name]
            recs += [{'name': name, 'framework': framework, 'task': task,
                      'precision': precision, 'batch_size': batch_size,
                      'status': ('not installed' if 'not installed' in why
                                 else 'not supported on this CPU'),
                      'reason': why, 'machine': desc, 'side': side, 'model': model}
                     for task in tasks]
    for (name, task), r in results.items():
        if not r['img_s']:
            continue
        framework, precision, _ = CONFIGS[name]
        recs.append({'name': name, 'framework': framework, 'task': task,
                     'precision': precision, 'batch_size': batch_size, 'machine': desc,
                     'img_s': statistics.median(r['img_s']), 'img_s_min': min(r['img_s']),
                     'img_s_max': max(r['img_s']), 'peak_rss_mb': max(r['peak_rss_mb']),
                     'peak_added_mb': max(r['added_mb']), 'planned_mb': r['planned_mb'],
                     'side': side, 'model': model,
                     **{f'latency_ms_bs{n}': statistics.median(ts)
                        for n, ts in r['latency_ms'].items()}})
    return recs


def table(recs, desc):
    from densenet.system.machine import summary_line
    lines = [f'machine: {summary_line(desc)}']
    for task in ('train', 'infer'):
        skipped = [r for r in recs if r['task'] == task and 'status' in r]
        rows = [r for r in recs if r['task'] == task and 'status' not in r]
        torch_rows = [r for r in rows if r['framework'] == 'pytorch']
        best32 = max((r['img_s'] for r in torch_rows if r['precision'] == 'fp32'), default=None)
        best = max((r['img_s'] for r in torch_rows), default=None)
        if not rows and not skipped:  # no configuration of this task was asked for
            continue
        lines.append(f'\n{task} (batch {rows[0]["batch_size"] if rows else "-"})')
        lines.append('| configuration | precision | img/s (median) | min-max | '
                     + ('latency bs1 ms | bs8 ms | ' if task == 'infer' else 'planned MB | ')
                     + 'peak RSS MB | added by the steps MB | vs PyTorch best fp32 | '
                     'vs PyTorch best |')
        lines.append('|---' * (10 if task == 'infer' else 9) + '|')
        for r in rows:
            ratio32 = f'{r["img_s"] / best32:.2f}x' if best32 else '-'
            ratio = f'{r["img_s"] / best:.2f}x' if best else '-'
            lat = (f'{r["latency_ms_bs1"]:.2f} | {r["latency_ms_bs8"]:.2f} | '
                   if task == 'infer' else
                   f'{r["planned_mb"]} | ' if r.get('planned_mb') is not None else '- | ')
            lines.append(f'| {r["name"]} | {r["precision"]} | {r["img_s"]:.1f} | '
                         f'{r["img_s_min"]:.1f}-{r["img_s_max"]:.1f} | {lat}'
                         f'{r["peak_rss_mb"]:.0f} | {r["peak_added_mb"]:.0f} | '
                         f'{ratio32} | {ratio} |')
        for r in skipped:
            lines.append(f'| {r["name"]} | {r["precision"]} | {r["status"]} |'
                         + ' |' * (7 if task == 'infer' else 6))
    lines += memory_efficient_summary(recs)
    return '\n'.join(lines)


def memory_efficient_summary(recs):
    """Each memory-efficient mode against the standard path it replaces."""
    train = {r['name']: r for r in recs if r['task'] == 'train'}
    lines = []
    for me_name, std_name, what in (
            ('mxnet-memory-efficient', 'mxnet-book-imperative', 'imperative'),
            ('mxnet-memory-efficient-fast', 'mxnet-fast', 'fast path')):
        me, std = train.get(me_name), train.get(std_name)
        if not (me and std):
            continue
        planned = ''
        if me.get('planned_mb') and std.get('planned_mb'):
            planned = (f'; planned {me["planned_mb"]} vs {std["planned_mb"]} MB '
                       f'({me["planned_mb"] / std["planned_mb"]:.0%})')
        lines += ['', f'memory-efficient vs standard, {what}: peak memory added by training '
                      f'{me["peak_added_mb"]:.0f} vs {std["peak_added_mb"]:.0f} MB '
                      f'({me["peak_added_mb"] / std["peak_added_mb"]:.0%}){planned}, '
                      f'speed {me["img_s"] / std["img_s"]:.0%} '
                      f'(time cost {std["img_s"] / me["img_s"] - 1:+.0%})']
    return lines


#: --families: (registry name, side, batch size, input channels, classes): each family at
#: the input it is built for.
FAMILIES = (('book', 96, 128, 1, 10), ('densenet_bc_100', 32, 64, 3, 10),
            ('densenet121', 224, 32, 3, 1000))
#: The configurations --families times (--only picks among them).
FAMILY_CONFIGS = ('mxnet-fast', 'mxnet-fp32', 'mxnet-bf16', 'mxnet-int8', 'onnxruntime-fp32',
                  'openvino-fp32', 'openvino-bf16', 'pytorch-eager', 'pytorch-channels-last',
                  'pytorch-channels-last-bf16')


def families(args, desc):
    """Every family's records, each row's ``group`` its model; --quick shrinks the batch
    to 8 and the side to at most 64."""
    recs = []
    only = args.only or list(FAMILY_CONFIGS)
    for model, side, batch, channels, classes in FAMILIES:
        if args.quick:
            side, batch = min(side, 64), 8
        sub = argparse.Namespace(**{**vars(args), 'model': model, 'side': side, 'only': only,
                                    'batch_size': batch, 'channels': channels,
                                    'classes': classes})
        print(f'{model}: {side}x{side}, {channels} channel(s), {classes} classes, '
              f'batch {batch}', file=sys.stderr)
        recs += [{**r, 'group': model}
                 for r in records(run_all(sub, desc), batch, desc, only, side, model)]
    return recs


def family_summary(recs):
    """Per family and task: this library's best configuration (any precision) against
    PyTorch's best fp32 and best overall, and at inference the best other engine's speed and
    latency at batch 1."""
    lines = ['', '| model, input, batch | task | this library, best | img/s | vs PyTorch best '
                 'fp32 | vs PyTorch best | vs best other engine | latency bs1 ms: this '
                 'library / best other |', '|---' * 8 + '|']
    for model, *_ in FAMILIES:
        for task in ('train', 'infer'):
            rows = [r for r in recs if r.get('group') == model and r['task'] == task
                    and 'img_s' in r]
            ours = [r for r in rows if r['framework'] == 'mxnet']
            if not ours:
                continue
            best = max(ours, key=lambda r: r['img_s'])
            peers = {'pytorch fp32': [r for r in rows if r['framework'] == 'pytorch'
                                      and r['precision'] == 'fp32'],
                     'pytorch': [r for r in rows if r['framework'] == 'pytorch'],
                     'other': [r for r in rows if r['framework'] != 'mxnet']}
            ratios = [f'{best["img_s"] / max(r["img_s"] for r in peer):.2f}x' if peer else '-'
                      for peer in peers.values()]
            latency = '-'
            if task == 'infer' and peers['other']:
                latency = (f'{min(r["latency_ms_bs1"] for r in ours):.2f} / '
                           f'{min(r["latency_ms_bs1"] for r in peers["other"]):.2f}')
            lines.append(f'| {model}, {best["side"]}x{best["side"]}, {best["batch_size"]} | '
                         f'{task} | {best["name"]} ({best["precision"]}) | '
                         f'{best["img_s"]:.1f} | {" | ".join(ratios)} | {latency} |')
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='smoke run: tiny batch, few steps')
    p.add_argument('--json', help='write the records here')
    p.add_argument('--only', nargs='+', choices=sorted(CONFIGS))
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--side', type=int, default=96)
    p.add_argument('--model', default='book',
                   help='a registry name (densenet.list_models()); PyTorch rows: the models '
                        'benchmarks/torch_densenet.py builds (book, densenet_bc_100, '
                        'densenet121)')
    p.add_argument('--channels', type=int, default=1, help='input channels of --model')
    p.add_argument('--classes', type=int, default=10, help='classes of --model')
    p.add_argument('--families', action='store_true',
                   help='every family at its own input and batch (FAMILIES), then the ratio '
                        'table against PyTorch; --only picks among FAMILY_CONFIGS')
    p.add_argument('--unpooled', action='store_true',
                   help='turn MXNet\'s memory pool off and let glibc return freed memory, so '
                        'peak RSS measures live arrays (for memory comparisons; slower)')
    p.add_argument('--worker', choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    p.add_argument('--task', choices=['train', 'infer'], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.repeats, args.iters, args.warmup, args.batch_size, args.side = 1, 2, 1, 8, 64
    desc = describe_machine()
    from densenet.system.machine import summary_line
    if args.families:
        recs = families(args, desc)
        for model, *_ in FAMILIES:
            print(f'\n## {model}\n' + table([r for r in recs if r['group'] == model], desc))
        print('\n'.join(family_summary(recs)))
    else:
        print(f'machine: {summary_line(desc)}; {args.model}, batch {args.batch_size}, '
              f'{args.side}x{args.side}, {args.channels} channel(s)', file=sys.stderr)
        recs = records(run_all(args, desc), args.batch_size, desc, args.only, args.side,
                       args.model)
        print(table(recs, desc))
    if args.json:
        from densenet.system.files import atomic_text
        atomic_text(args.json, json.dumps(recs, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
