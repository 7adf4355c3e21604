"""MkDocs hook: the reference tables that come from the code, rendered at build time.

A page asks for a table with a marker on a line of its own, e.g.
``<!-- generated: cli -->``. The tables come from the objects that define them
(the argparse parser, `TrainConfig`, the recipes, the model registry, the run
folder's file list), so the docs cannot drift from the code. An unknown marker,
or a run file without a description here, fails the build.

Measured figures come from records: ``<!-- generated: record:NAME -->`` renders
``docs/records/NAME.json`` as a table with a line under it naming the machine, the
date, the versions and the command (see `load_record` for the format). README.md
holds the same tables between ``<!-- generated: record:NAME -->`` and
``<!-- end generated -->``; ``python docs/hooks/generated.py --readme`` rewrites them
from the records (``--check`` only says whether README is up to date).
"""
from __future__ import annotations

import argparse
import contextvars
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault('COLUMNS', '100')  # argparse's usage lines, the same on every machine

MARKER = re.compile(r'^<!-- generated: ([a-z0-9_:+-]+) -->$', re.MULTILINE)

#: What each file of a run folder holds (densenet.train.extensions.run_folder_files()).
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
    """The files of a run folder (the loop's and every registered extension's), each described."""
    from densenet.train.extensions import run_folder_files
    files = run_folder_files()
    missing = [f for f in files if f not in RUN_FILE_DOCS]
    if missing:
        raise ValueError(f'docs/hooks/generated.py: describe the run files {missing}')
    return _table(['file', 'what it holds'],
                  [[f'`{f}`' + ('/' if f == 'checkpoint' else ''), RUN_FILE_DOCS[f]]
                   for f in files])


# --- Records: measured figures ---------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1]
RECORDS = DOCS / 'records'
README = DOCS.parent / 'README.md'

#: What every record must say about where its figures come from.
REQUIRED = ('machine', 'date', 'versions', 'command')

#: README's generated sections: the marker, the rendered table, the end line.
README_BLOCK = re.compile(r'^<!-- generated: (record:[a-z0-9_:+-]+) -->\n.*?'
                          r'^<!-- end generated -->$', re.MULTILINE | re.DOTALL)

#: The path from the page being rendered to the docs folder (links in the tables).
_ROOT: contextvars.ContextVar[str] = contextvars.ContextVar('root', default='')

#: benchmarks/bench.py's configurations, as the tables name them.
BENCH_LABELS = {
    'mxnet-book-imperative': 'this library, book-literal imperative',
    'mxnet-fast': 'this library, fast path (fp32)',
    'mxnet-fast-unfused': 'this library, fast path, BatchNorm and ReLU apart',
    'mxnet-memory-efficient': 'this library, memory-efficient (imperative)',
    'mxnet-memory-efficient-fast': 'this library, memory-efficient fast path',
    'mxnet-fp32': 'this library (MXNet), fp32',
    'mxnet-bf16': 'this library, BF16 (AMP + oneDNN fusion)',
    'mxnet-int8': 'this library, INT8 (oneDNN)',
    'onnxruntime-fp32': 'ONNX Runtime, fp32',
    'onnxruntime-int8': 'ONNX Runtime, INT8 (QDQ)',
    'openvino-fp32': 'OpenVINO, f32',
    'openvino-bf16': 'OpenVINO, BF16',
    'openvino-int8': 'OpenVINO, INT8 (the QDQ model)',
    'pytorch-eager': 'PyTorch eager',
    'pytorch-channels-last': 'PyTorch channels_last',
    'pytorch-channels-last-bf16': 'PyTorch channels_last + bf16 autocast',
}

#: The bench layout's columns (`show`); 'A/NAME' is A divided by configuration NAME's.
BENCH_COLUMNS = {
    'input': 'model, input, batch',
    'train': 'train img/s (min-max)',
    'infer': 'inference img/s (min-max)',
    'latency_ms_bs1': 'latency at batch 1, ms',
    'latency_ms_bs8': 'latency at batch 8, ms',
    'train_added_mb': 'added MB, training',
    'infer_added_mb': 'added MB, inference',
    'train_planned_mb': 'planned MB',
}

#: Version keys as the tables name them.
VERSION_NAMES = {'mxnet': 'MXNet', 'python': 'Python', 'torch': 'PyTorch',
                 'onnxruntime': 'ONNX Runtime', 'openvino': 'OpenVINO'}

#: MXNet operators as the memory tables name what they produce.
OP_NAMES = {'Activation': 'ReLU outputs', 'Concat': 'concatenations',
            'Convolution': 'convolutions', 'Pooling': 'pooling'}


def record_names() -> list[str]:
    """The records in docs/records/, by name (the file name without ``.json``)."""
    return sorted(p.stem for p in RECORDS.glob('*.json'))


def load_record(name: str) -> dict[str, Any]:
    """The record ``docs/records/NAME.json``, checked.

    A record is one measured result set: one JSON object with

    - ``title``: what was measured, in a few words;
    - ``machine``: the machine, as ``densenet info`` describes it (``cpu``, ``flags``,
      ``cores``, ...). Where no such description was kept with the figures, the CPU
      name and flags that the results pages stated, and ``source`` says so;
    - ``date``: ``YYYY-MM-DD``, when it was measured, and ``date_source``: ``"run"``
      (the run's own time) or ``"commit"`` (unknown; the date of the commit that first
      recorded the figures, which ``commit`` names);
    - ``versions``: ``{"mxnet": "1.9.1", "python": ..., "torch": ...}``, what is known;
    - ``command``: the command that reproduces it (a string, or a list of them);
    - the figures: ``rows`` (a list of objects), drawn by ``layout``:

      - ``"table"`` (the default): ``columns`` lists ``[key, label]`` or
        ``[key, label, format]`` (or an object with ``key``, ``label``, ``format`` and
        ``of``: the value divided by that of the row matching ``of``); formats are
        listed in `_format`;
      - ``"runs"``: training runs, each with ``run``, ``command``, ``epochs``,
        ``steps``, ``accuracy`` (%), ``best``, ``tta`` (flip-averaged, %), ``wall_s`` or
        ``wall``, ``metrics`` (a per-epoch CSV in docs/); ``split`` names what the
        accuracy is measured on (default ``"test"``);
      - ``"bench"``: the rows `benchmarks/bench.py --json` writes; ``show`` lists the
        columns (`BENCH_COLUMNS`, and ``"A/NAME"``: column A over configuration NAME's);
      - ``"fields"``: no rows; ``fields`` lists ``[key, label, format]`` of the record's
        own keys, drawn as a two-column table.

    Optional: ``notes`` (how the run went; not drawn), ``metrics`` (a per-epoch CSV
    named under the table), ``weights`` (the shipped weights file the figures are
    of: the model card gathers the records that name it), ``superseded_by`` (on a
    record or a row: a newer measurement replaces it; such rows are not drawn, but
    ratios may use them),
    ``group`` on a row, a name or a list (``record:NAME:GROUP`` draws only the rows of
    that group).

    Args:
        name: the record's name.

    Returns:
        The record.

    Raises:
        ValueError: no such record, or it lacks a required field.
    """
    path = RECORDS / f'{name}.json'
    if not path.is_file():
        raise ValueError(f'unknown record {name!r}; known: {record_names()}')
    record = json.loads(path.read_text())
    missing = [k for k in REQUIRED if not record.get(k)]
    if missing:
        raise ValueError(f'docs/records/{name}.json: no {", ".join(missing)}')
    if not re.fullmatch(r'\d{4}-\d{2}-\d{2}', record['date']):
        raise ValueError(f'docs/records/{name}.json: date {record["date"]!r} is not YYYY-MM-DD')
    return record


def machine_name(machine: dict[str, Any]) -> str:
    """The name the pages give a machine: its CPU and the widest instructions oneDNN
    uses there, e.g. 'Intel Xeon, AVX-512 + AMX', 'AMD EPYC, AVX-512',
    'AMD EPYC (Zen 3), AVX2'."""
    cpu = re.sub(r'\((?:R|TM)\)|\bProcessor\b|\bCPU\b', '', machine['cpu'])
    cpu = re.sub(r'\s+', ' ', cpu).strip()
    flags = set(machine.get('flags', ()))
    isa = ('AVX-512 + AMX' if 'amx_tile' in flags else 'AVX-512' if 'avx512f' in flags
           else 'AVX2' if 'avx2' in flags else 'SSE')
    return f'{cpu}, {isa}'


def _when(record: dict[str, Any]) -> str:
    return record['date'] + (' (commit date)' if record.get('date_source') == 'commit' else '')


def _versions(versions: dict[str, str]) -> str:
    return ', '.join(f'{VERSION_NAMES.get(k, k)} {v}' for k, v in versions.items())


def _format(value: Any, fmt: str | None, root: str, record: dict[str, Any]) -> str:
    """A cell. Formats: None (as written), 'code', 'pct' (a percentage, 2 decimals),
    'points' (a signed difference in points), 'ratio' (1.23x), 'share' (a fraction as
    a whole percentage), 'int', 'f0', 'f1', 'f2', 'f3', 'min' (seconds as minutes),
    'link' (a file in docs/), 'label' (the record's ``labels``), 'ops' (MB by MXNet
    operator: the three largest)."""
    if value is None or value == '':
        return '-'
    if isinstance(value, str) and fmt not in ('code', 'link', 'label'):
        return value  # a figure written out with its own words
    if fmt == 'code':
        return f'`{value}`'
    if fmt == 'pct':
        return f'{value:.2f}%'
    if fmt == 'points':
        return f'{value:+.2f} points'
    if fmt == 'ratio':
        return f'{value:.2f}x'
    if fmt == 'share':
        return f'{value:.0%}'
    if fmt in ('int', 'f0'):
        return f'{value:,.0f}'
    if fmt in ('f1', 'f2', 'f3'):
        return f'{value:,.{fmt[1]}f}'
    if fmt == 'min':
        return f'{value / 60:.1f} min ({value:,.0f} s)'
    if fmt == 'link':
        return f'[{os.path.basename(value)}]({root}{value})'
    if fmt == 'label':
        return record['labels'][value]
    if fmt == 'ops':
        top = sorted(value.items(), key=lambda kv: -kv[1])[:3]
        return ', '.join(f'{OP_NAMES.get(op, op)} {mb:,.0f}' for op, mb in top)
    if fmt is not None:
        raise ValueError(f'unknown format {fmt!r}')
    return f'{value:,}' if isinstance(value, int) else str(value)


def _in_group(row: dict[str, Any], group: str | None) -> bool:
    """Whether `row` is in `group` (a row's ``group`` is a name or a list of names); every
    row is where no group is asked for."""
    groups = row.get('group')
    return group is None or group in (groups if isinstance(groups, list) else [groups])


def _visible(rows: list[dict[str, Any]], group: str | None) -> list[dict[str, Any]]:
    """The rows to draw: not superseded, and in `group` where one is asked for."""
    return [r for r in rows if not r.get('superseded_by') and _in_group(r, group)]


Layout = Callable[[dict[str, Any], dict[str, Any], str | None, str],
                  tuple[list[str], list[list[str]]]]


def _table_layout(record: dict[str, Any], first: dict[str, Any], group: str | None,
                  root: str) -> tuple[list[str], list[list[str]]]:
    columns = [c if isinstance(c, dict) else dict(zip(('key', 'label', 'format'), c, strict=False))
               for c in first['columns']]
    rows = []
    for row in _visible(record['rows'], group):
        cells = []
        for c in columns:
            value = row.get(c['key'])
            if c.get('of') and value is not None:
                base = next(r for r in record['rows']
                            if all(r.get(k) == v for k, v in c['of'].items()))
                value = value / base[c['key']]
            cells.append(_format(value, c.get('format'), root, record))
        rows.append(cells)
    return [c['label'] for c in columns], rows


def _runs_layout(record: dict[str, Any], first: dict[str, Any], group: str | None,
                 root: str) -> tuple[list[str], list[list[str]]]:
    def steps(row: dict[str, Any]) -> Any:
        s, e = row.get('steps'), row.get('epochs')
        s = f'{s:,}' if isinstance(s, int) else s
        return f'{s} ({e})' if s and e else s or (e and f'{e} epochs')

    def pct(value: Any) -> Any:
        return f'{value:.2f}%' if isinstance(value, (int, float)) else value

    columns: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ('run', lambda r: r.get('run')),
        ('command', lambda r: r.get('command') and f'`{r["command"]}`'),
        ('steps (epochs)', steps),
        (f'final {first.get("split", "test")} accuracy', lambda r: pct(r.get('accuracy'))),
        ('best epoch', lambda r: r.get('best')),
        ('flip-averaged', lambda r: pct(r.get('tta'))),
        ('wall time', lambda r: _format(r['wall_s'], 'min', root, record)
         if 'wall_s' in r else r.get('wall')),
        ('per epoch', lambda r: r.get('metrics') and _format(r['metrics'], 'link', root, record)),
    ]
    return ([label for label, _ in columns],
            [[str(get(row) or '-') for _, get in columns]
             for row in _visible(record['rows'], group)])


#: The bench layout's ratio columns, named: the measure, then the configuration divided by.
RATIO_NAMES = {'train': 'train', 'infer': 'inference', 'train_added_mb': 'added memory',
               'train_planned_mb': 'planned memory'}
RATIO_BASES = {'mxnet-fast': 'the standard fast path', 'mxnet-book-imperative': 'book-literal',
               'pytorch-eager': 'PyTorch eager',
               'pytorch-channels-last': 'PyTorch channels_last',
               'pytorch-channels-last-bf16': 'PyTorch bf16',
               'onnxruntime-fp32': 'ONNX Runtime fp32'}


def _bench_layout(record: dict[str, Any], first: dict[str, Any], group: str | None,
                  root: str) -> tuple[list[str], list[list[str]]]:
    show = first['show']
    header = ['configuration']
    for col in show:
        what, _, other = col.partition('/')
        header.append(f'{RATIO_NAMES[what]} vs {RATIO_BASES[other]}' if other
                      else BENCH_COLUMNS[what])
    # a ratio divides by a row of the same group, superseded or not
    by = {(r['name'], r['task']): r for r in record['rows'] if _in_group(r, group)}
    visible = _visible(record['rows'], group)
    rows = []
    for name in dict.fromkeys(r['name'] for r in visible):
        mine = {r['task']: r for r in visible if r['name'] == name}
        cells = [BENCH_LABELS.get(name, name)]
        for col in show:
            what, _, other = col.partition('/')
            if what == 'input':
                r = next(iter(mine.values()))
                side = r.get('side', 96)
                cells.append(f'{r.get("model", "book")}, {side}x{side}, {r["batch_size"]}')
                continue
            task, _, field = what.partition('_')
            if what.startswith('latency'):
                task, field = 'infer', what
            field = {'added_mb': 'peak_added_mb'}.get(field, field)
            row = mine.get(task)
            if row is None:
                cells.append('-')
            elif row.get('unsupported'):
                cells.append(row['unsupported'])
            elif what in ('train', 'infer'):
                if other:
                    cells.append(f'{row["img_s"] / by[other, task]["img_s"]:.2f}x')
                elif row.get('img_s_min') is not None:
                    cells.append(f'{row["img_s"]:,.1f} '
                                 f'({row["img_s_min"]:,.1f}-{row["img_s_max"]:,.1f})')
                else:
                    cells.append(f'{row["img_s"]:,.1f}')
            elif row.get(field) is None:
                cells.append('-')
            elif other:
                cells.append(f'{row[field] / by[other, task][field]:.0%}')
            else:
                cells.append(f'{row[field]:.2f}' if field.startswith('latency')
                             else f'{row[field]:,.0f}')
        rows.append(cells)
    return header, rows


def _best_layout(record: dict[str, Any], first: dict[str, Any], group: str | None,
                 root: str) -> tuple[list[str], list[list[str]]]:
    """Per model and task, this library's fastest configuration against PyTorch's and
    against every other framework's fastest (``record:NAME:best``)."""
    header = ['model, input, batch', 'task', 'this library, best', 'img/s',
              "vs PyTorch's best", 'vs the best other', 'latency at batch 1, ms: this '
              "library's lowest / the others' lowest"]
    rows = []
    measured = [r for r in _visible(record['rows'], None) if r.get('img_s')]
    for model in dict.fromkeys(r.get('model', 'book') for r in measured):
        for task in ('train', 'infer'):
            mine = [r for r in measured if r.get('model', 'book') == model and r['task'] == task]
            ours = [r for r in mine if r['framework'] == 'mxnet']
            others = [r for r in mine if r['framework'] != 'mxnet']
            if not ours:
                continue
            best = max(ours, key=lambda r: r['img_s'])
            torch = [r['img_s'] for r in others if r['framework'] == 'pytorch']
            side = best.get('side', 96)

            def ratio(values: list[float]) -> str:
                return f'{best["img_s"] / max(values):.2f}x' if values else '-'

            def lowest(rows: list[dict[str, Any]]) -> str:
                values = [r['latency_ms_bs1'] for r in rows if r.get('latency_ms_bs1')]
                return f'{min(values):.2f}' if values else '-'

            latency = (f'{lowest(ours)} / {lowest(others)}' if task == 'infer' else '-')
            rows.append([f'{model}, {side}x{side}, {best["batch_size"]}',
                         'inference' if task == 'infer' else 'train',
                         re.sub(r'^this library(?: \(MXNet\))?, ', '',
                                BENCH_LABELS.get(best['name'], best['name'])),
                         f'{best["img_s"]:,.1f}',
                         ratio(torch), ratio([r['img_s'] for r in others]), latency])
    return header, rows


def _fields_layout(record: dict[str, Any], first: dict[str, Any], group: str | None,
                   root: str) -> tuple[list[str], list[list[str]]]:
    return ['', 'measured'], [
        [label, _format(record[key], fmt[0] if fmt else None, root, record)]
        for key, label, *fmt in record['fields']]


LAYOUTS: dict[str, Layout] = {'table': _table_layout, 'runs': _runs_layout,
                              'bench': _bench_layout, 'best': _best_layout,
                              'fields': _fields_layout}


def _footer(parts: list[tuple[str, dict[str, Any]]], root: str, commands_shown: bool,
            row_commands: list[str]) -> str:
    """The line under a table: the records, their machine, date, versions and commands
    (the drawn rows' own ``command`` where they have one, else the records')."""
    records = [record for _, record in parts]
    links = ', '.join(f'[{name}]({root}records/{name}.json)' for name, _ in parts)
    cores = {record['machine'].get('cores') for record in records}
    each = f', {cores.pop()} cores' if len(cores) == 1 and None not in cores else ''
    where = {(machine_name(r['machine']), _when(r)) for r in records}
    if len(where) == 1:
        machine, when = where.pop()
        text = f'{links}: {machine}{each}, {when}'
    else:
        commit = all(r.get('date_source') == 'commit' for r in records)
        text = (f'{links}: machines and dates in the table{" (commit dates)" if commit else ""}'
                f'{each and ";" + each[1:] + " each"}')
    common = {k: v for k, v in records[0]['versions'].items()
              if all(r['versions'].get(k) == v for r in records)}
    text += f'; {_versions(common)}'
    for name, record in parts:
        extra = {k: v for k, v in record['versions'].items() if k not in common}
        if extra:
            text += f'; {_versions(extra)} ({name})'
    if not commands_shown:
        commands = [c for r in records
                    for c in ([r['command']] if isinstance(r['command'], str) else r['command'])]
        text += '; ' + ', '.join(f'`{c}`' for c in dict.fromkeys(row_commands or commands))
    for record in records:
        if record.get('metrics'):
            text += f'; per epoch: {_format(record["metrics"], "link", root, record)}'
    return ('Record ' if len(parts) == 1 else 'Records ') + text + '.'


def record_table(name: str, root: str | None = None) -> str:
    """The table of record(s) `name`, with the line naming machine, date, versions and
    command under it.

    Args:
        name: a record's name; ``A+B`` draws the rows of several records in one table
            (in the first one's layout and columns); ``NAME:GROUP`` only the rows of
            that group (``A:G+B``). Where the records differ in machine or date, a column
            names them.
        root: the path from the page to the docs folder, for links (default: that of the
            page being rendered; '' outside MkDocs).

    Returns:
        Markdown: the table, a blank line, the line.

    Raises:
        ValueError: an unknown record or layout, or nothing to draw.
    """
    root = _ROOT.get() if root is None else root
    wanted = [part.partition(':')[::2] for part in name.split('+')]
    parts = [(n, load_record(n)) for n, _ in wanted]
    groups = [g or None for _, g in wanted]
    first = parts[0][1]
    layout = first.get('layout', 'table')
    if layout == 'bench' and groups == ['best']:
        layout, groups = 'best', [None]
    if layout not in LAYOUTS:
        raise ValueError(f'record {parts[0][0]}: unknown layout {layout!r}')
    several = len({(machine_name(r['machine']), r['date']) for _, r in parts}) > 1
    header: list[str] = []
    rows: list[list[str]] = []
    row_commands = [r['command'] for (_, record), group in zip(parts, groups, strict=True)
                    for r in _visible(record.get('rows', []), group) if r.get('command')]
    for (_, record), group in zip(parts, groups, strict=True):
        header, mine = LAYOUTS[layout](record, first, group, root)
        if several:
            mine = [row + [f'{machine_name(record["machine"])}, {record["date"]}']
                    for row in mine]
        rows += mine
    if several:
        header = header + ['CPU, date']
    if not rows:
        raise ValueError(f'record {name}: no rows to draw')
    if layout == 'runs':  # leave out the columns that no run fills
        keep = [i for i in range(len(header)) if any(row[i] != '-' for row in rows)]
        header, rows = [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    return _table(header, rows) + '\n\n' + _footer(parts, root, 'command' in header,
                                                     row_commands)


def record_markers(text: str) -> list[str]:
    """The record names that `text`'s ``record:`` markers name."""
    return [part.partition(':')[0] for spec in MARKER.findall(text)
            if spec.startswith('record:') for part in spec[len('record:'):].split('+')]


def render_readme(text: str) -> str:
    """README's text with each generated section drawn again from its record(s)."""
    def replace(match: re.Match[str]) -> str:
        spec = match.group(1)
        return (f'<!-- generated: {spec} -->\n{record_table(spec[len("record:"):], "docs/")}\n'
                '<!-- end generated -->')
    return README_BLOCK.sub(replace, text)

def model_card() -> str:
    """The model card's tables (docs/hooks/model_card.py), from the registry, the shipped
    weights' metadata and the records that name the weights."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('model_card',
                                                  Path(__file__).with_name('model_card.py'))
    assert spec is not None and spec.loader is not None
    card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(card)
    return card.render(_table, [(n, load_record(n)) for n in record_names()], machine_name)


GENERATORS: dict[str, Callable[[], str]] = {
    'cli': cli, 'train-options': train_options, 'recipes': recipes, 'models': models,
    'run-files': run_files, 'model-card': model_card,
}


def render(markdown: str, root: str = '') -> str:
    """`markdown` with every marker replaced by its table.

    Args:
        markdown: the page.
        root: the path from the page to the docs folder (the records' links).
    """
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith('record:'):
            return record_table(name[len('record:'):])
        if name not in GENERATORS:
            raise ValueError(f'unknown generated table {name!r}; known: {sorted(GENERATORS)} '
                             'and record:NAME')
        return GENERATORS[name]()
    for line in markdown.splitlines():
        if line.startswith('<!-- generated:') and not MARKER.fullmatch(line):
            raise ValueError(f'not a marker this hook reads: {line!r}')
    token = _ROOT.set(root)
    try:
        return MARKER.sub(replace, markdown)
    finally:
        _ROOT.reset(token)


def on_startup(**kwargs: Any) -> None:
    """MkDocs event: import the package once, before any page, without MXNet's
    deprecation warnings (numpy aliases) in the build log."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import densenet  # noqa: F401  (it imports mxnet, after setting its thread count)


def on_page_markdown(markdown: str, page: Any = None, **kwargs: Any) -> str:
    """MkDocs event: render the page's generated tables."""
    depth = page.file.src_uri.count('/') if page is not None else 0
    return render(markdown, '../' * depth)


def main(argv: list[str] | None = None) -> int:
    """``python docs/hooks/generated.py --readme``: draw README's generated sections
    again from the records (``--check``: exit 1 if README differs, writing nothing)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument('--readme', action='store_true', help='rewrite README.md in place')
    action.add_argument('--check', action='store_true', help='exit 1 if README.md is stale')
    args = parser.parse_args(argv)
    text = README.read_text()
    new = render_readme(text)
    if args.check:
        if new != text:
            print('README.md differs from its records: python docs/hooks/generated.py --readme',
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new)
    return 0


if __name__ == '__main__':
    sys.exit(main())
