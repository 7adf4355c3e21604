"""Batch-1 latency of MXNet's fp32 graph (`fp32_model`): the graph it runs for one image
(`plain_concat_inputs`) against its usual graph, alternating in one process.

Each round times both graphs on the same image, in turn (which goes first
alternates), so that a machine whose speed drifts affects both alike; the table
gives the median of each and of the per-round ratio. Freshly initialised models,
as bench.py's families.

    python benchmarks/latency.py                      # bench.py's three families
    python benchmarks/latency.py --families book --rounds 50 --json latency.json
"""
import argparse
import statistics

from bench import FAMILIES as BENCH_FAMILIES  # this script's folder
from bench import alternating, family_table

#: registry name: (side, input channels, classes), bench.py's families.
FAMILIES = {name: (side, channels, classes)
            for name, side, _, channels, classes in BENCH_FAMILIES}


def measure(family, rounds, calls):
    """One row: the family's median latencies (ms) of both graphs and their ratio."""
    import mxnet as mx
    import numpy as onp

    import densenet
    from densenet.deploy.inference import InferenceModel, fp32_model
    side, channels, classes = FAMILIES[family]
    model = densenet.get_model(family, in_channels=channels, num_classes=classes)
    shape = (1, channels, side, side)
    fast = fp32_model(model, shape)  # runs its batch-1 graph for one image
    usual = InferenceModel(fast.graph, mx.cpu())
    X = onp.random.RandomState(0).uniform(size=shape).astype('float32')
    if not (fast.predict(X) == usual.predict(X)).all():
        raise SystemExit(f'{family}: the batch-1 graph computed other values')
    runs = {'fast': lambda: fast.predict(X), 'usual': lambda: usual.predict(X)}
    alternating(runs, 1, 3)  # warm-up
    s = alternating(runs, rounds, calls)
    return {'model': family, 'input': f'{side}x{side}', 'rounds': rounds, 'calls': calls,
            'batch1_ms': statistics.median(s['fast']) * 1e3,
            'usual_ms': statistics.median(s['usual']) * 1e3,
            'speedup': statistics.median(u / f for f, u in zip(s['fast'], s['usual'],
                                                                strict=True))}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--families', nargs='+', choices=list(FAMILIES), default=list(FAMILIES))
    p.add_argument('--rounds', type=int, default=20, help='alternations of the two graphs')
    p.add_argument('--calls', type=int, default=5, help='calls per graph per round')
    p.add_argument('--json', help='write the rows here')
    args = p.parse_args()
    family_table(args.families, lambda family: measure(family, args.rounds, args.calls), [
        ('model', lambda r: r['model']), ('input', lambda r: r['input']),
        ('batch-1 graph ms', lambda r: f"{r['batch1_ms']:.2f}"),
        ('usual graph ms', lambda r: f"{r['usual_ms']:.2f}"),
        ('speed-up (median of rounds)', lambda r: f"{r['speedup']:.2f}x")], args.json)


if __name__ == '__main__':
    main()
