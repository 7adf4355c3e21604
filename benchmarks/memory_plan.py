"""Where a training step's memory goes: per-tensor accounting of MXNet's memory plan.

For the standard graph, the memory-efficient one (dense layers recomputed in
backward, convolutions kept) and, as a what-if, the memory-efficient one with
the dense layers' convolutions recomputed too, a worker process binds the
training graph in MXNet's graph executor with MXNET_MEM_PLAN_VERBOSE_LOGGING=1
and reads every tensor's shape and the node order from its log. Reported:

- planned: what MXNet's planner allocates (``Executor.debug_str``), MB;
- ideal peak: the largest sum of live tensors over the step, each tensor alive
  from the node that writes it to its last reader (what a perfect allocator
  without in-place reuse would need);
- at that peak, the live tensors by who made them: forward nodes, recomputed
  (mirrored) copies, gradient nodes; and by operator.

The what-if graph is only planned, never run (MXNet gives a recomputed
convolution's unused output no write request: mirror.py).

    python benchmarks/memory_plan.py                       # book model, 96x96, batch 128
    python benchmarks/memory_plan.py --side 224
    python benchmarks/memory_plan.py --model densenet121 --side 224 --batch-size 32
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = {'standard': 'standard fast path (nothing recomputed)',
            'memory-efficient': 'memory-efficient fast path (concat, BN, ReLU recomputed)',
            'what-if-convolutions': 'what if: dense layers\' convolutions recomputed too'}


def worker(variant, model_name, side, batch):
    """Bind the graph; print the op names in execution order and the planned MB as JSON
    (the planner's per-tensor log goes to stderr)."""
    sys.path.insert(0, os.path.dirname(HERE))
    import densenet  # noqa: F401  (sets the thread count before mxnet loads)
    # isort: split
    import mxnet as mx
    from mxnet import np

    from densenet import get_model
    from densenet.modes import mirror, prepare_model
    from densenet.modes.padded import needs_padding
    model = get_model(model_name, in_channels=1, num_classes=10)
    model.net(np.zeros((1, 1, side, side)))
    if variant == 'what-if-convolutions':
        mirror.KEEP_OPS = ()
    prepare_model(model, [mx.cpu()], hybridize=True, memory_efficient=variant != 'standard')
    # the graph the fast path trains: padded where the network's channels need it
    padded = variant == 'standard' and bool(needs_padding(model.net))
    executors = mirror.GraphExecutors(model.net, padded)
    X = np.zeros((batch, 1, side, side))
    text = executors.executor(X).debug_str()
    names = re.findall(r'^Op:(\S+), Name=(\S+)$', text, flags=re.M)
    print(json.dumps({'planned_mb': executors.planned_mb(X), 'ops': names}))


def parse_plan_log(text):
    """[{'op', 'inputs': [(entry, KB)], 'outputs': [...]}] for the operator nodes, in order."""
    nodes, cur = [], None
    for line in text.splitlines():
        m = re.search(r'\bnode (\d+) (\S+)\s*$', line)
        if m:
            cur = None if m.group(2) == 'var' else {'op': m.group(2), 'inputs': [],
                                                    'outputs': []}
            if cur:
                nodes.append(cur)
            continue
        m = re.search(r'(input|output) (\d+): \[[^\]]*\] \((\d+) KB\)', line)
        if m and cur is not None:
            cur[m.group(1) + 's'].append((int(m.group(2)), int(m.group(3))))
    return nodes


def category(name):
    if name.endswith('_mirror'):
        return 'recomputed'
    if '_backward' in name or name.startswith(('sum_grad', '_head_grad', 'zeros')):
        return 'gradient'
    return 'forward'


def ideal_peak(nodes, names):
    """(peak KB, index of the node at the peak, {category: KB}, {op: KB}) of live tensors."""
    made, last, size = {}, {}, {}
    for t, n in enumerate(nodes):
        for e, kb in n['inputs']:
            last[e] = t
            size[e] = kb
        for e, kb in n['outputs']:
            made.setdefault(e, t)
            size[e] = kb
    alive, best = {}, (0, 0, {}, {})
    for t, n in enumerate(nodes):
        for e, kb in n['outputs']:
            alive[e] = kb
        total = sum(alive.values())
        if total > best[0]:
            by_cat, by_op = collections.Counter(), collections.Counter()
            for e, kb in alive.items():
                by_cat[category(names[made[e]])] += kb
                by_op[nodes[made[e]]['op']] += kb
            best = (total, t, by_cat, by_op)
        for e in [e for e in alive if last.get(e, t) <= t]:
            del alive[e]
    return best


def account(variant, args):
    env = dict(os.environ, MXNET_MEM_PLAN_VERBOSE_LOGGING='1')
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker', variant,
                           '--model', args.model, '--side', str(args.side),
                           '--batch-size', str(args.batch_size)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'{variant}: worker failed: {proc.stderr[-1500:]}')
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    nodes = parse_plan_log(proc.stderr)
    ops = out['ops']
    if [n['op'] for n in nodes] != [op for op, _ in ops]:
        raise SystemExit(f'{variant}: the planner log and the graph disagree on the node order')
    names = [name for _, name in ops]
    peak, at, by_cat, by_op = ideal_peak(nodes, names)
    backward_from = next(i for i, name in enumerate(names) if category(name) == 'gradient')
    return {'variant': variant, 'planned_mb': out['planned_mb'], 'ideal_peak_mb': peak / 1024,
            'peak_node': names[at], 'peak_in': 'backward' if at >= backward_from else 'forward',
            'peak_position': f'{at + 1}/{len(nodes)}',
            'by_category_mb': {k: v / 1024 for k, v in by_cat.most_common()},
            'by_op_mb': {k: v / 1024 for k, v in by_op.most_common(6)},
            'tensors': sum(len(n['outputs']) for n in nodes)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='book')
    p.add_argument('--side', type=int, default=96)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--json', help='write the records here')
    p.add_argument('--worker', choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.model, args.side, args.batch_size)
    sys.path.insert(0, os.path.dirname(HERE))
    from densenet.system import runtime
    from densenet.system.machine import summary_line
    desc = runtime.machine()
    recs = [account(v, args) for v in VARIANTS]
    std = recs[0]
    print(f'machine: {summary_line(desc)}; {args.model}, batch {args.batch_size}, '
          f'{args.side}x{args.side}, 1 channel')
    print('| graph | planned MB | vs standard | ideal peak MB | vs standard | peak at | '
          'live at the peak: forward / recomputed / gradients MB | largest producers MB |')
    print('|---|---|---|---|---|---|---|---|')
    for r in recs:
        c = r['by_category_mb']
        ops = ', '.join(f'{k} {v:.0f}' for k, v in list(r['by_op_mb'].items())[:3])
        print(f'| {VARIANTS[r["variant"]]} | {r["planned_mb"]} | '
              f'{r["planned_mb"] / std["planned_mb"]:.0%} | {r["ideal_peak_mb"]:.0f} | '
              f'{r["ideal_peak_mb"] / std["ideal_peak_mb"]:.0%} | {r["peak_in"]} '
              f'({r["peak_node"]}, node {r["peak_position"]}) | '
              f'{c.get("forward", 0):.0f} / {c.get("recomputed", 0):.0f} / '
              f'{c.get("gradient", 0):.0f} | {ops} |')
    if args.json:
        for r in recs:
            r.update(model=args.model, side=args.side, batch_size=args.batch_size, machine=desc)
        from densenet.system.files import atomic_text
        atomic_text(args.json, json.dumps(recs, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
