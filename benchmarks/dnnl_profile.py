"""Where a fast-path training step, or a call of the fp32 inference graph, spends
oneDNN's time: one table of primitives.

Runs a few SGD steps of a model on the fast path (or, with ``--infer``, calls of
`fp32_model`'s graph) in a child process with ``DNNL_VERBOSE=1``, and sums
oneDNN's own timing lines over the timed steps by primitive, implementation and
pass (forward, backward data, backward weights). The shares are of oneDNN's
time; the logging itself slows the steps, so the step time printed with it is
not a speed figure (bench.py gives those).

    python benchmarks/dnnl_profile.py --model densenet_bc_100 --side 32 --channels 3 \\
        --batch-size 64
    python benchmarks/dnnl_profile.py --json profile.json     # the book's model, 96x96
    python benchmarks/dnnl_profile.py --model densenet_bc_100 --side 32 --channels 3 \\
        --batch-size 1 --infer usual --steps 10
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = 'dnnl_profile: timed steps start'
#: oneDNN's verbose names for a primitive's pass.
PASSES = {'forward_training': 'forward', 'forward_inference': 'forward',
          'backward_data': 'backward data', 'backward_weights': 'backward weights',
          'backward': 'backward', 'undef': ''}


def child(args):
    """The steps themselves (run with DNNL_VERBOSE=1)."""
    sys.path.insert(0, os.path.dirname(HERE))
    import densenet  # sets the thread count before mxnet loads
    # isort: split
    import mxnet as mx
    from mxnet import autograd, gluon, np, npx

    from densenet.modes import prepare_model
    mx.random.seed(0)
    model = densenet.get_model(args.model, in_channels=args.channels, num_classes=10)
    model.net(np.zeros((1, args.channels, args.side, args.side)))
    if args.infer:
        return infer_child(args, model)
    prepare_model(model, [mx.cpu()], hybridize=True, padded=not args.unpadded,
                  fuse=not args.unfused)
    from densenet.modes.fused import is_fused
    print(f'dnnl_profile: BatchNorm and ReLU '
          f'{"fused" if is_fused(model.net) else "as two operators"}', flush=True)
    X = np.random.uniform(size=(args.batch_size, args.channels, args.side, args.side))
    y = np.zeros((args.batch_size,), dtype='int32')
    trainer = gluon.Trainer(model.net.collect_params(), 'sgd', {'learning_rate': 0.01})

    def step():
        with autograd.record():
            loss = model.loss(model(X), y, averaged=False)
        loss.backward()
        trainer.step(args.batch_size)
        npx.waitall()
    for _ in range(2):  # build the graph, create and cache the primitives
        step()
    print(MARK, flush=True)
    tic = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(f'dnnl_profile: {(time.perf_counter() - tic) / args.steps:.2f} s a step with the '
          'logging on', flush=True)


def infer_child(args, model):
    """Calls of the fp32 graph (run with DNNL_VERBOSE=1): its batch-1 copy where
    ``--infer batch1`` and the batch is one image, else its usual graph."""
    import mxnet as mx
    import numpy as onp

    from densenet.deploy.inference import InferenceModel, fp32_model
    shape = (args.batch_size, args.channels, args.side, args.side)
    fast = fp32_model(model, (1, *shape[1:]))
    run = fast if args.infer == 'batch1' else InferenceModel(fast.graph, mx.cpu())
    X = onp.random.RandomState(0).uniform(size=shape).astype('float32')
    for _ in range(2):  # create and cache the primitives
        run.predict(X)
    print(MARK, flush=True)
    tic = time.perf_counter()
    for _ in range(args.steps):
        run.predict(X)
    print(f'dnnl_profile: {(time.perf_counter() - tic) / args.steps * 1e3:.2f} ms a call with '
          'the logging on', flush=True)


def table(lines, steps):
    """Rows {primitive, implementation, pass, ms, share, calls} from verbose `lines`, the
    timed steps' only (after MARK), largest first; ms and calls per step."""
    sums = collections.defaultdict(lambda: [0.0, 0])
    timed = False
    for line in lines:
        timed = timed or line.startswith(MARK)
        if timed and line.startswith('dnnl_verbose,exec,'):
            # dnnl_verbose,exec,cpu,primitive,implementation,pass,formats,...,time in ms
            fields = line.rstrip().split(',')
            key = (fields[3], fields[4], PASSES.get(fields[5], fields[5]))
            sums[key][0] += float(fields[-1])
            sums[key][1] += 1
    total = sum(ms for ms, _ in sums.values()) or 1.0
    return [{'primitive': p, 'implementation': i, 'pass': d, 'ms': ms / steps,
             'share': ms / total, 'calls': calls / steps}
            for (p, i, d), (ms, calls) in sorted(sums.items(), key=lambda kv: -kv[1][0])]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', default='book')
    p.add_argument('--side', type=int, default=96)
    p.add_argument('--channels', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--top', type=int, default=15, help='rows printed')
    p.add_argument('--unpadded', action='store_true',
                   help='the hybridized graph at the model\'s channel counts, not the padded '
                        'trace (densenet.modes.padded)')
    p.add_argument('--unfused', action='store_true',
                   help='BatchNorm and ReLU as two operators, not fused into one '
                        '(densenet.modes.fused)')
    p.add_argument('--infer', choices=['batch1', 'usual'],
                   help="calls of fp32_model's graph instead of training steps: the graph it "
                        'runs for this batch (batch1), or its usual graph at any batch '
                        '(--unpadded and --unfused do not apply)')
    p.add_argument('--json', help='write every row here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    env = dict(os.environ, DNNL_VERBOSE='1')
    proc = subprocess.run([sys.executable, __file__, '--child', *sys.argv[1:]], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else
                 f'the steps failed (status {proc.returncode})')
    lines = proc.stdout.splitlines()
    rows = table(lines, args.steps)
    for line in lines:
        if line.startswith('dnnl_profile: BatchNorm') or line.endswith('with the logging on'):
            print(line)
    step, digits = ('call', 2) if args.infer else ('step', 0)
    calls = 'calls' if args.infer else 'calls a step'
    print(f'| oneDNN primitive | implementation | pass | ms a {step} | share | {calls} |')
    print('|---|---|---|---|---|---|')
    for r in rows[:args.top]:
        print(f'| {r["primitive"]} | `{r["implementation"]}` | {r["pass"] or "-"} | '
              f'{r["ms"]:,.{digits}f} | {r["share"]:.1%} | {r["calls"]:g} |')
    if args.json:
        sys.path.insert(0, os.path.dirname(HERE))
        from densenet.system.files import atomic_text
        atomic_text(args.json, json.dumps(rows, indent=1))


if __name__ == '__main__':
    main()
