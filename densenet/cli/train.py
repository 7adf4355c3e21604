"""``densenet train``: its flags are derived from `TrainConfig`'s fields (one definition per
option), in argument groups."""
from __future__ import annotations

import argparse

import densenet.cli.common as common
from densenet.models.registry import list_models
from densenet.train.config import TrainConfig
from densenet.train.loop import fit
from densenet.train.options import add_arguments, options


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('train', help="train a DenseNet (default: the book's) on Fashion-MNIST "
                                     'or an image folder')
    add_arguments(p, TrainConfig, choices={'model': list_models()})


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration the flags describe: the recipe's values, then every flag given."""
    values = {name: getattr(args, name, None) for name, _, _ in options(TrainConfig)
              if name != 'recipe'}
    if (pairs := values.get('model_args')) is not None:
        values['model_args'] = dict(pairs)
    return TrainConfig.from_recipe(args.recipe or 'book', **values)


def run(args: argparse.Namespace) -> int:
    cfg = train_config(args)
    cfg.validate()  # all but the model's minimum size, which fit checks first
    summary = fit(cfg)
    if summary is None:  # a dist worker other than rank 0
        print('worker done')
        return 0
    extra = ''.join(f', {k[6:]} {v:.4f}' for k, v in summary.items()
                    if k.startswith('final_') and k != 'final_val_acc')
    print(f'final val acc {summary["final_val_acc"]:.4f}, best {summary["best_val_acc"]:.4f}'
          f'{extra}, {summary["wall_s"]:.0f} s; outputs in {cfg.out}')
    return 0
