"""``densenet analyze``: how much each layer reuses the features before it (the paper's
Figure 5), as a heat map, a CSV table and the paper's four observations measured."""
from __future__ import annotations

import argparse
import os

import densenet.cli.common as common
from densenet.analysis.feature_reuse import FIGURE, TABLE, write_feature_reuse
from densenet.train.run_folder import Run


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('analyze', help='feature reuse: the weight each layer gives every '
                                       'earlier one (Huang et al. 2017, Figure 5)')
    common.add_params_flags(p, resize=False)
    p.add_argument('--out', required=True,
                   help=f'output folder: {FIGURE} (one heat map per dense block) and {TABLE}')


def run(args: argparse.Namespace) -> int:
    Run(args.out).check_path()  # a folder, or one that can be made
    model, _, _ = common.load_trained(args, 'cpu')
    _, summary = write_feature_reuse(model, args.out)
    for line in [*summary.lines(), os.path.join(args.out, FIGURE), os.path.join(args.out, TABLE)]:
        print(line)
    return 0
