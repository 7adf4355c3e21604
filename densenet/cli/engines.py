"""``densenet engines``: time a model on every engine and precision this machine runs, and
keep the figures for ``--engine auto``."""
from __future__ import annotations

import argparse

import densenet.cli.common as common
from densenet.deploy.engines import choose, measure, record, record_path
from densenet.deploy.inference import PRECISIONS
from densenet.errors import UsageError
from densenet.system import runtime
from densenet.system.machine import unsupported
from densenet.train.options import positive_int

#: the jobs the summary names: (images, batch size) of one prediction and of an evaluation
JOBS = ((1, 1), (10000, 256))


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('engines', help='time a model on every engine here, for --engine auto')
    common.add_params_flags(p)
    p.add_argument('--precision', choices=list(PRECISIONS), action='append',
                   help='a precision to time (repeat for more; default: every one this CPU '
                        'runs)')
    p.add_argument('--batch-size', type=positive_int, default=64,
                   help='the larger batch timed, besides batch 1 (default 64)')


def run(args: argparse.Namespace) -> int:
    caps = runtime.capabilities()
    for precision in args.precision or []:
        if why := unsupported(precision, caps):
            raise UsageError(f'--precision {precision}: {why}')
    record_path()  # a cache folder it cannot write is refused before any timing
    model, meta, _ = common.load_trained(args, 'cpu')
    precisions = args.precision or [p for p in PRECISIONS if not unsupported(p, caps)]
    shape = common.input_shape(meta)
    figures = measure(model, shape, precisions, args.batch_size)
    path = record(model, shape, figures)
    for precision in figures:
        picks = [f'{choose(model, shape, precision, n, batch)[0]} for {n} image{"s" * (n > 1)}'
                 for n, batch in JOBS]
        print(f'--engine auto, {precision}: ' + ', '.join(picks))
    print(f'timings kept in {path}')
    return 0
