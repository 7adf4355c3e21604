"""``densenet features``: the embeddings and labels of a dataset, as one .npz file."""
from __future__ import annotations

import argparse

import densenet.cli.common as common
from densenet.data import check_sources
from densenet.deploy.features import extract_features, save_features
from densenet.errors import UsageError
from densenet.train.options import positive_int


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('features', help='embeddings (the pooled features that enter the '
                                        'classifier) and labels of a dataset, as .npz')
    common.add_params_flags(p)
    p.add_argument('--data', help='an image folder (default: Fashion-MNIST)')
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files')
    p.add_argument('--split', choices=['train', 'val', 'all'], default='val',
                   help='which images (Fashion-MNIST val = its test split)')
    p.add_argument('--batch-size', type=positive_int, default=256)
    p.add_argument('--device', default='auto')
    p.add_argument('--out', required=True, help='the .npz file to write')


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith('.npz'):
        raise UsageError(f'--out {args.out}: give a file name ending in .npz')
    check_sources(args.data, args.data_dir)
    model, meta, ctxs = common.load_trained(args, args.device)
    data = common.eval_data(meta, args.batch_size, args.data, args.data_dir)
    splits = ['train', 'val'] if args.split == 'all' else [args.split]
    arrays = extract_features(model, data, splits, ctxs, meta['classes'])
    save_features(args.out, arrays)
    print(f'{args.out}: features {arrays["features"].shape}, labels '
          f'{arrays["labels"].shape}, splits {", ".join(splits)}')
    return 0
