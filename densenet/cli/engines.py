"""``densenet engines``: time a model on every engine and precision this machine runs, measure
how often each agrees with fp32 on held-out images, and keep the figures for ``--engine auto``
and ``predict --precision auto``."""
from __future__ import annotations

import argparse

import densenet.cli.common as common
from densenet.data import DataModule, check_sources
from densenet.data.fashion_mnist import locate
from densenet.deploy.engines import choose, choose_precision, measure, record, record_path
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
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files: the test split '
                                      'that top-1 agreement with fp32 is measured on')
    p.add_argument('--data', help="an image folder: measure the agreement on its val split (the "
                                  "run's own when it trained on this folder)")
    p.add_argument('--limit', type=positive_int,
                   help='measure the agreement on N images spread evenly over the split '
                        '(default: all)')


def run(args: argparse.Namespace) -> int:
    caps = runtime.capabilities()
    for precision in args.precision or []:
        if why := unsupported(precision, caps):
            raise UsageError(f'--precision {precision}: {why}')
    check_sources(args.data, args.data_dir)
    record_path()  # a cache folder it cannot write is refused before any timing
    model, meta, _ = common.load_trained(args, 'cpu')
    precisions = args.precision or [p for p in PRECISIONS if not unsupported(p, caps)]
    shape = common.input_shape(meta)
    folder = args.data or common.own_folder(meta)
    data: DataModule | None
    try:  # nothing downloaded unless asked for with --data-dir
        if not (folder or args.data_dir or locate(None)):
            raise FileNotFoundError('no test split on this machine: give --data-dir or --data')
        data = common.eval_data(meta, args.batch_size, folder, args.data_dir, args.limit)
        calib = common.calibration(meta, args.data_dir) if 'int8' in precisions else None
    except (UsageError, FileNotFoundError) as e:
        if args.data or args.data_dir:
            raise
        # timed all the same; predict --precision auto then keeps fp32
        print(f'top-1 agreement with fp32 not measured: {e}')
        data = calib = None
    check = None if data is None else (
        lambda: (X.asnumpy() for X, _ in data.val_dataloader()))
    figures = measure(model, shape, precisions, args.batch_size, check=check, calib=calib)
    path = record(model, shape, figures)
    def picks(precision: str | None) -> str:
        """What auto picks for each job: the engine at `precision`, or with None predict's
        precision and engine."""
        return ', '.join((choose(model, shape, precision, n, b)[0] if precision else
                          ' on '.join(choose_precision(model, shape, n, b)[:2]))
                         + f' for {n} image{"s" * (n > 1)}' for n, b in JOBS)
    for precision in figures:
        print(f'--engine auto, {precision}: {picks(precision)}')
    print(f'--precision auto (predict): {picks(None)}')
    print(f'timings kept in {path}')
    return 0
