"""MkDocs hook: the reference tables that come from the code, rendered at build time.

A page asks for a table with a marker on a line of its own, e.g.
``<!-- generated: cli -->``. The tables come from the objects that define them
(the argparse parser, `TrainConfig`, the recipes, the model registry, the run
folder's file list), so the docs cannot drift from the code. An unknown marker,
or a run file without a description here, fails the build.
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Any, Callable

os.environ.setdefault('COLUMNS', '100')  # argparse's usage lines, the same on every machine

MARKER = re.compile(r'^<!-- generated: ([a-z-]+) -->$', re.MULTILINE)

#: What each file of a run folder holds (densenet.train.run_folder.RUN_FILES).
RUN_FILE_DOCS = {
    'summary.json': 'the run in one record: its configuration, final and best validation '
                    'accuracy, epochs, steps, wall time, the model metadata, the machine, '
                    'the per-epoch rows, and what the extensions add (see the fields below)',
    'metrics.csv': 'one row per epoch: train loss and accuracy, validation loss and accuracy, '
                   'learning rate, images per second, seconds (and `side`, `ema_val_*` '
                   'columns when those options are on)',
    'curves.png': "the loss and accuracy curves, drawn like d2l's plot",
    'last.params': 'the weights after the last completed epoch',
    'best.params': 'the weights of the epoch with the best validation accuracy',
    'ema.params': 'the moving average of the weights (`--ema`)',
    'last.params.json': 'the metadata that rebuilds the model of `last.params`: registry name, '
                        'constructor arguments, input side, channels, class names, dataset, '
                        'normalisation, recipe, seed, epoch',
    'best.params.json': 'the same for `best.params`',
    'ema.params.json': 'the same for `ema.params`',
    'checkpoint': 'the state that `--resume` continues from: the last epoch\'s parameters, '
                  'optimizer states, random state, the budget plans and the moving average',
    'confusion.png': 'written by `densenet evaluate` beside a run\'s params: the confusion '
                     'matrix',
}


def _cell(text: Any) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(_cell(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f'`{action.metavar or action.dest}` (positional)'
    names = ', '.join(f'`{s}`' for s in action.option_strings)
    if action.nargs == 0:
        return names
    if action.choices:
        return f'{names} {{{",".join(map(str, action.choices))}}}'
    return f'{names} {action.metavar or action.dest.upper()}'


def cli() -> str:
    """Every sub-command: its usage, then each argument group as a table."""
    from densenet.cli import build_parser
    from densenet.train.config import TrainConfig
    from densenet.train.options import reference_rows

    defaults = {flag: default for flag, _, default, _ in reference_rows(TrainConfig)}
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    out = []
    for name, sp in sub.choices.items():
        out += [f'### densenet {name}', '', f'{helps.get(name, "")}.', '',
                '```text', sp.format_usage().strip(), '```', '']
        for group in sp._action_groups:
            actions = [a for a in group._group_actions
                       if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
            if not actions:
                continue
            title = group.title or 'arguments'
            out += [f'**{title}**' + (f': {group.description}' if group.description else ''), '']
            rows = []
            for a in actions:
                flag = a.option_strings[0] if a.option_strings else ''
                own = None if a.default in (None, argparse.SUPPRESS) else repr(a.default)
                # train's flags default to None: the recipe, then TrainConfig, sets them
                default = defaults.get(flag, own) if name == 'train' else own
                rows.append([_flag(a), f'`{default}`' if default is not None else '',
                             a.help or ''])
            out += [_table(['flag', 'default', 'what it does'], rows), '']
    return '\n'.join(out)


def train_options() -> str:
    """`densenet train`'s options as `TrainConfig` defines them (flag, group, default, help)."""
    from densenet.train.config import TrainConfig
    from densenet.train.options import reference_rows
    rows = [[f'`{flag}`', group, f'`{default}`', text]
            for flag, group, default, text in reference_rows(TrainConfig)]
    return _table(['flag', 'group', 'default (book recipe)', 'what it does'], rows)


def recipes() -> str:
    """What each recipe sets (densenet.train.recipes.RECIPES)."""
    from densenet.train.recipes import recipe_table
    rows = [[f'`{name}`', ', '.join(f'`{k}={v!r}`' for k, v in values.items())]
            for name, values in recipe_table()]
    return _table(['recipe', 'values it sets (flags given with it override them)'], rows)


def models() -> str:
    """The model registry (densenet.models.registry.MODELS)."""
    from densenet.models.registry import MODELS
    rows = []
    for cfg in MODELS.values():
        params = '' if cfg.params is None else f'{cfg.params:,.0f}'
        rows.append([f'`{cfg.name}`', cfg.doc, f'{cfg.input_size}x{cfg.input_size}',
                     cfg.min_input_size, cfg.channels, cfg.num_classes, cfg.dataset, params])
    return _table(['name', 'model', 'default input', 'min side', 'channels', 'classes',
                   'defaults for', 'published params'], rows)


def run_files() -> str:
    """The files of a run folder (densenet.train.run_folder.RUN_FILES), each described."""
    from densenet.train.run_folder import RUN_FILES
    missing = [f for f in RUN_FILES if f not in RUN_FILE_DOCS]
    if missing:
        raise ValueError(f'docs/hooks/generated.py: describe the run files {missing}')
    return _table(['file', 'what it holds'],
                  [[f'`{f}`' + ('/' if f == 'checkpoint' else ''), RUN_FILE_DOCS[f]]
                   for f in RUN_FILES])


GENERATORS: dict[str, Callable[[], str]] = {
    'cli': cli, 'train-options': train_options, 'recipes': recipes, 'models': models,
    'run-files': run_files,
}


def render(markdown: str) -> str:
    """`markdown` with every marker replaced by its table."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f'unknown generated table {name!r}; known: {sorted(GENERATORS)}')
        return GENERATORS[name]()
    return MARKER.sub(replace, markdown)


def on_startup(**kwargs: Any) -> None:
    """MkDocs event: import the package once, before any page, without MXNet's
    deprecation warnings (numpy aliases) in the build log."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import densenet  # noqa: F401  (it imports mxnet, after setting its thread count)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs event: render the page's generated tables."""
    return render(markdown)
