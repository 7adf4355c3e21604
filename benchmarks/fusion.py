"""Training steps of the fast path with each BatchNorm and its ReLU fused into one oneDNN
operator (`densenet.modes.fused`) against the two operators, alternating in one process.

Both models start from the same weights and take the same batch; their second
steps' losses (after one backward pass) must agree to float32 rounding. Each round
times a few SGD steps of each (which goes first alternates), so that a machine
whose speed drifts affects both alike; the table gives the median seconds per step
of each and the median of the per-round ratio. Freshly initialised models,
bench.py's families at their batch sizes. The fusion applies where oneDNN uses
AVX2 (`densenet.modes.fused.fusion_applies`).

    python benchmarks/fusion.py                         # bench.py's three families
    python benchmarks/fusion.py --families book --rounds 12 --json fusion.json
"""
import argparse
import statistics

from bench import FAMILIES, alternating, family_table  # this script's folder


def measure(family, rounds, steps):
    """One row: the family's median seconds per step, fused and not, and their ratio."""
    import mxnet as mx
    import numpy as onp
    from mxnet import autograd, gluon, np, npx

    import densenet
    from densenet.modes import prepare_model
    from densenet.modes.fused import is_fused
    side, batch, channels, classes = next(f[1:] for f in FAMILIES if f[0] == family)
    X = np.array(onp.random.RandomState(0).uniform(size=(batch, channels, side, side)),
                 dtype='float32')
    y = np.array(onp.arange(batch) % classes, dtype='int32')
    runs, losses = {}, {}
    for fuse in (True, False):
        mx.random.seed(0)
        model = densenet.get_model(family, in_channels=channels, num_classes=classes)
        model.net(np.zeros((1, channels, side, side)))
        prepare_model(model, [mx.cpu()], hybridize=True, fuse=fuse)
        if is_fused(model.net) is not fuse:
            raise SystemExit('this CPU keeps BatchNorm and ReLU apart (the fusion applies '
                             'where oneDNN uses AVX2: run with DNNL_MAX_CPU_ISA=AVX2)')
        trainer = gluon.Trainer(model.net.collect_params(), 'sgd', {'learning_rate': 0.01})

        def step(model=model, trainer=trainer):
            with autograd.record():
                loss = model.loss(model(X), y)
            loss.backward()
            trainer.step(1)
            npx.waitall()
            return float(loss)
        name = 'fused' if fuse else 'unfused'
        runs[name], losses[name] = step, [step(), step()]  # the warm-up
    # the second loss follows the first backward pass
    if abs(losses['fused'][1] - losses['unfused'][1]) > 1e-5 * abs(losses['unfused'][1]):
        raise SystemExit(f'{family}: the fused steps computed other losses: {losses}')
    s = alternating(runs, rounds, steps)
    return {'model': family, 'input': f'{side}x{side}', 'batch_size': batch,
            'rounds': rounds, 'steps': steps,
            'fused_s': statistics.median(s['fused']),
            'unfused_s': statistics.median(s['unfused']),
            'speedup': statistics.median(u / f for f, u in zip(s['fused'], s['unfused'],
                                                                strict=True))}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    names = [f[0] for f in FAMILIES]
    p.add_argument('--families', nargs='+', choices=names, default=names)
    p.add_argument('--rounds', type=int, default=8, help='alternations of the two models')
    p.add_argument('--steps', type=int, default=2, help='steps per model per round')
    p.add_argument('--json', help='write the rows here')
    args = p.parse_args()
    family_table(args.families, lambda family: measure(family, args.rounds, args.steps), [
        ('model', lambda r: r['model']), ('input', lambda r: r['input']),
        ('batch', lambda r: str(r['batch_size'])),
        ('fused s/step', lambda r: f"{r['fused_s']:.3f}"),
        ('unfused s/step', lambda r: f"{r['unfused_s']:.3f}"),
        ('speed-up (median of rounds)', lambda r: f"{r['speedup']:.2f}x")], args.json)


if __name__ == '__main__':
    main()
