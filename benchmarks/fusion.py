"""Training steps of the fast path with each BatchNorm and its ReLU fused into one oneDNN
operator (`densenet.modes.fused`) against the two operators, alternating in one process.

Both models start from the same weights and take the same batch; the first
step's losses must agree to float32 rounding. Each round times a few SGD steps
of each (which goes first alternates), so that a machine whose speed drifts
affects both alike; the table gives the median seconds per step of each and
the median of the per-round ratio. Freshly initialised models, bench.py's
families at their batch sizes.

    python benchmarks/fusion.py                         # bench.py's three families
    python benchmarks/fusion.py --families book --rounds 12 --json fusion.json
"""
import argparse
import json
import os
import statistics
import sys
import time

from bench import FAMILIES  # this script's folder

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(family, rounds, steps):
    """One row: the family's median seconds per step, fused and not, and their ratio."""
    import mxnet as mx
    import numpy as onp
    from mxnet import autograd, gluon, np, npx

    import densenet
    from densenet.modes import prepare_model
    side, batch, channels, classes = next(f[1:] for f in FAMILIES if f[0] == family)
    X = np.array(onp.random.RandomState(0).uniform(size=(batch, channels, side, side)),
                 dtype='float32')
    y = np.array(onp.arange(batch) % classes, dtype='int32')
    runs = {}
    for fuse in (True, False):
        mx.random.seed(0)
        model = densenet.get_model(family, in_channels=channels, num_classes=classes)
        model.net(np.zeros((1, channels, side, side)))
        prepare_model(model, [mx.cpu()], hybridize=True, fuse=fuse)
        trainer = gluon.Trainer(model.net.collect_params(), 'sgd', {'learning_rate': 0.01})

        def step(model=model, trainer=trainer):
            with autograd.record():
                loss = model.loss(model(X), y)
            loss.backward()
            trainer.step(1)
            npx.waitall()
            return float(loss)
        runs['fused' if fuse else 'unfused'] = step
    first = {name: step() for name, step in runs.items()}
    if abs(first['fused'] - first['unfused']) > 1e-5 * abs(first['unfused']):
        raise SystemExit(f'{family}: the fused step computed another loss: {first}')
    for step in runs.values():  # warm-up
        step()
    order, times = list(runs.items()), []
    for r in range(rounds):
        s = {}
        for name, step in (order[::-1] if r % 2 else order):
            tic = time.perf_counter()
            for _ in range(steps):
                step()
            s[name] = (time.perf_counter() - tic) / steps
        times.append((s['fused'], s['unfused']))
    return {'model': family, 'input': f'{side}x{side}', 'batch_size': batch,
            'rounds': rounds, 'steps': steps,
            'fused_s': statistics.median(t[0] for t in times),
            'unfused_s': statistics.median(t[1] for t in times),
            'speedup': statistics.median(t[1] / t[0] for t in times)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    names = [f[0] for f in FAMILIES]
    p.add_argument('--families', nargs='+', choices=names, default=names)
    p.add_argument('--rounds', type=int, default=8, help='alternations of the two models')
    p.add_argument('--steps', type=int, default=2, help='steps per model per round')
    p.add_argument('--json', help='write the rows here')
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(HERE))
    from densenet.system import runtime
    from densenet.system.files import atomic_text
    from densenet.system.machine import summary_line
    machine = runtime.machine()
    print(f'machine: {summary_line(machine)}')
    print('| model | input | batch | fused s/step | unfused s/step | speed-up (median of '
          'rounds) |')
    print('|---|---|---|---|---|---|')
    rows = []
    for family in args.families:
        r = measure(family, args.rounds, args.steps)
        rows.append(r)
        print(f"| {r['model']} | {r['input']} | {r['batch_size']} | {r['fused_s']:.3f} "
              f"| {r['unfused_s']:.3f} | {r['speedup']:.2f}x |", flush=True)
    if args.json:
        atomic_text(args.json, json.dumps({'machine': machine, 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
