"""The measured figures have one source: the records in docs/records/.

The results pages draw their tables from the records when the site is built
(docs/hooks/generated.py); README.md holds the same tables between
``<!-- generated: record:NAME -->`` and ``<!-- end generated -->``. These tests
keep README equal to what its records draw, every record saying where its figures
come from, and every marker naming a record that exists.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / 'README.md'] + sorted(p for p in (ROOT / 'docs').rglob('*.md')
                                      if 'hooks' not in p.parts)


def _generated():
    spec = importlib.util.spec_from_file_location(
        'docs_generated', ROOT / 'docs' / 'hooks' / 'generated.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generated = _generated()
NAMES = generated.record_names()


def test_readme_equals_its_records() -> None:
    """README's generated sections are what the records draw: a figure changed by hand
    in README, or a record changed without `python docs/hooks/generated.py --readme`,
    fails here."""
    text = (ROOT / 'README.md').read_text()
    assert generated.README_BLOCK.search(text), 'README.md has no generated section'
    assert generated.render_readme(text) == text, (
        'README.md differs from docs/records/: run python docs/hooks/generated.py --readme')


def test_readme_markers_are_closed() -> None:
    """Every README marker has its end line (an unclosed one would swallow the text up
    to the next section's end)."""
    text = (ROOT / 'README.md').read_text()
    starts = len(re.findall(r'^<!-- generated: record:', text, re.MULTILINE))
    ends = len(re.findall(r'^<!-- end generated -->$', text, re.MULTILINE))
    assert starts == ends == len(generated.README_BLOCK.findall(text))


@pytest.mark.parametrize('name', NAMES)
def test_record_says_where_it_comes_from(name: str) -> None:
    """Machine, date, versions and command, all filled in; the date a real date."""
    record = json.loads((generated.RECORDS / f'{name}.json').read_text())
    for field in ('title', 'machine', 'date', 'versions', 'command'):
        assert record.get(field), f'{name}: no {field}'
    assert record['machine'].get('cpu'), f'{name}: the machine has no cpu'
    assert record['machine'].get('flags'), f'{name}: the machine has no flags'
    assert record['versions'].get('mxnet'), f'{name}: no MXNet version'
    assert re.fullmatch(r'\d{4}-\d{2}-\d{2}', record['date']), name
    assert record.get('date_source') in ('run', 'commit'), name
    if record['date_source'] == 'commit':
        assert record.get('commit'), f'{name}: a commit date names its commit'
    commands = [record['command']] if isinstance(record['command'], str) else record['command']
    assert all(isinstance(c, str) and c for c in commands), name
    generated.load_record(name)  # the hook's own checks


def _drawn(name: str) -> bool:
    """Whether a record is drawn: neither it nor all of its rows superseded."""
    record = generated.load_record(name)
    return not record.get('superseded_by') and any(
        not r.get('superseded_by') for r in record.get('rows', [{}]))


@pytest.mark.parametrize('name', [n for n in NAMES if _drawn(n)])
def test_record_draws(name: str) -> None:
    """Every record that is not superseded renders (its layout, columns and formats are
    known)."""
    table = generated.record_table(name, root='')
    assert table.startswith('| ') and f'records/{name}.json' in table


def test_markers_name_existing_records() -> None:
    """Every ``record:`` marker in README.md and docs/ names a record that exists, and a
    superseded record is not drawn."""
    seen = set()
    for page in PAGES:
        for name in generated.record_markers(page.read_text()):
            assert name in NAMES, f'{page.relative_to(ROOT)}: no record {name!r}'
            assert not generated.load_record(name).get('superseded_by'), (
                f'{page.relative_to(ROOT)}: record {name!r} is superseded')
            seen.add(name)
    assert seen, 'no page draws a record'


def test_a_marker_the_hook_cannot_read_fails() -> None:
    """A marker line the hook's pattern does not take would stay an invisible HTML
    comment: the build fails instead. Group names may have underscores."""
    with pytest.raises(ValueError, match='not a marker'):
        generated.render('<!-- generated: record:NO SUCH -->\n')
    table = generated.render('<!-- generated: record:bench-families-avx2-epyc:densenet_bc_100 -->')
    assert 'densenet_bc_100, 32x32' in table and 'book, 96x96' not in table


def test_unknown_record_fails() -> None:
    """A marker naming no record fails the build, as an unknown table does."""
    with pytest.raises(ValueError, match='unknown record'):
        generated.render('<!-- generated: record:no-such-record -->\n')


def test_shipped_weights_record_is_the_weights_metadata() -> None:
    """The shipped weights' record repeats the figures of their .params.json."""
    meta = json.loads((ROOT / 'densenet' / 'models' / 'weights' /
                       'book-fashion-mnist.params.json').read_text())
    record = generated.load_record('shipped-weights')
    assert record['test_accuracy'] == meta['test_accuracy']
    assert record['train_wall_s'] == meta['train_wall_s']
    assert record['sha256'] == meta['sha256']
    assert record['machine'] == meta['machine']
    assert record['command'] == meta.get('command') or record['command'] in meta['trained_by']
    (row,) = record['rows']
    assert row['accuracy'] == round(meta['test_accuracy'] * 100, 2)
    assert row['wall_s'] == meta['train_wall_s']


def test_machine_names() -> None:
    """One naming scheme, from the CPU and its flags."""
    name = generated.machine_name
    assert name({'cpu': 'Intel(R) Xeon(R) Processor',
                 'flags': ['avx2', 'avx512f', 'amx_tile']}) == 'Intel Xeon, AVX-512 + AMX'
    assert name({'cpu': 'AMD EPYC', 'flags': ['avx2', 'fma', 'avx512f']}) == 'AMD EPYC, AVX-512'
    assert name({'cpu': 'AMD EPYC (Zen 3)', 'flags': ['avx2', 'fma']}) == \
        'AMD EPYC (Zen 3), AVX2'


def test_best_view_compares_each_side_at_its_fastest() -> None:
    """``record:NAME:best`` draws, per model and task, this library's fastest configuration
    over PyTorch's fastest and over the fastest of every other framework, and the lowest
    batch-1 latencies: the same figures as the rows, recomputed here."""
    record = generated.load_record('bench-families-avx2-epyc')
    table = generated.record_table('bench-families-avx2-epyc:best', root='')
    lines = [line for line in table.splitlines() if line.startswith('| ') and '---' not in line]
    body = {tuple(c.strip() for c in line.strip('|').split('|')[:2]): line
            for line in lines[1:]}
    rows = [r for r in record['rows'] if r.get('img_s')]
    for (model, task), line in body.items():
        model = model.split(',')[0]
        mine = [r for r in rows if r['model'] == model and r['task'] == {'train': 'train',
                'inference': 'infer'}[task]]
        ours = max((r for r in mine if r['framework'] == 'mxnet'), key=lambda r: r['img_s'])
        torch = max(r['img_s'] for r in mine if r['framework'] == 'pytorch')
        other = max(r['img_s'] for r in mine if r['framework'] != 'mxnet')
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert cells[3] == f'{ours["img_s"]:,.1f}'
        assert cells[4] == f'{ours["img_s"] / torch:.2f}x'
        assert cells[5] == f'{ours["img_s"] / other:.2f}x'
        if task == 'inference':
            low = min(r['latency_ms_bs1'] for r in mine if r['framework'] == 'mxnet')
            assert cells[6].startswith(f'{low:.2f} / ')
    assert {task for _, task in body} == {'train', 'inference'} and len(body) == 6
