"""The code in README.md and docs/ runs, as a reader would type it.

Every fenced block of README.md and docs/**/*.md is one of:

- ```python: executed. The blocks of one page run in order, in one fresh
  namespace, in a temporary folder that holds the files the pages use
  (`photos/`, a folder of images per class, and the images `shoe.png` and
  `bag.png`);
- ```bash: each line is a `densenet ...` command, run in that folder through the
  command line's `main` (``densenet launch``, which starts processes, through the
  installed command); `test_every_command_parses` (quick) parses every line with the
  real parser; a line that is not a densenet command fails the test;
- anything else (```text, output): not run.

An HTML comment right before a block changes that:
``<!-- not run: REASON -->`` skips it (a full training run, a GPU, another
machine: the reason says why, and which test covers it), and
``<!-- slow: REASON -->`` runs it only in the slow test. Shell blocks run only
in the slow test. `test_fast_snippets` runs the quick Python blocks of every
page; `test_all_snippets` (marked slow) runs every block that is not marked
``not run``, in order.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / 'README.md'] + sorted(p for p in (ROOT / 'docs').rglob('*.md')
                                      if 'hooks' not in p.parts)
FENCE = re.compile(r'^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$', re.MULTILINE | re.DOTALL)
MARK = re.compile(r'<!--\s*(not run|slow)\s*:\s*(.*?)\s*-->\s*\Z', re.DOTALL)
PYTHON = {'python', 'py', 'pycon'}
SHELL = {'bash', 'sh', 'shell', 'console'}


@dataclasses.dataclass
class Snippet:
    page: Path
    line: int
    lang: str
    code: str
    mark: str | None  # None, 'not run' or 'slow'
    reason: str

    @property
    def where(self) -> str:
        return f'{self.page.relative_to(ROOT)}:{self.line}'


def snippets(page: Path) -> list[Snippet]:
    """The fenced blocks of `page`, each with the mark of the comment right before it."""
    text = page.read_text()
    out, end = [], 0
    for m in FENCE.finditer(text):
        before = text[end:m.start()]
        mark = MARK.search(before)
        out.append(Snippet(page, text.count('\n', 0, m.start()) + 1, m.group(1).lower(),
                           m.group(2), mark.group(1) if mark else None,
                           mark.group(2) if mark else ''))
        end = m.end()
    return out


def runnable(page: Path, slow: bool) -> list[Snippet]:
    """The blocks of `page` that the fast (or the slow) test runs, in order."""
    chosen = []
    for s in snippets(page):
        if s.mark == 'not run' or (s.lang not in PYTHON and s.lang not in SHELL):
            continue
        if not slow and (s.mark == 'slow' or s.lang in SHELL):
            continue
        chosen.append(s)
    return chosen


def commands(snippet: Snippet) -> list[list[str]]:
    """The command lines of a shell block: continuations joined, comments dropped."""
    out = []
    for line in snippet.code.replace('\\\n', ' ').splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the files the pages name: photos/ (3 classes of 10 Fashion-MNIST
    test images) and shoe.png, bag.png; the image cache kept inside it."""
    from PIL import Image

    from densenet.data import CLASSES, load_split
    images, labels = load_split('val')
    for c in (1, 7, 8):
        folder = tmp_path / 'photos' / CLASSES[c]
        folder.mkdir(parents=True)
        for i in (labels == c).nonzero()[0][:10]:
            Image.fromarray(images[i]).save(folder / f'{i}.png')
    Image.fromarray(images[(labels == 7).nonzero()[0][-1]]).save(tmp_path / 'shoe.png')
    Image.fromarray(images[(labels == 8).nonzero()[0][-1]]).save(tmp_path / 'bag.png')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    return tmp_path


def run_python(snippet: Snippet, namespace: dict) -> None:
    try:
        exec(compile(snippet.code, snippet.where, 'exec'), namespace)
    except Exception as e:
        if hasattr(e, 'add_note'):  # Python 3.11+
            e.add_note(f'in the python block at {snippet.where}')
        raise


def run_shell(snippet: Snippet, cwd: Path) -> None:
    bindir = os.path.dirname(sys.executable)  # `densenet` itself, also for launch's workers
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get('PATH', ''))
    for words in commands(snippet):
        if words[:3] == ['python', '-m', 'densenet']:
            words = ['densenet'] + words[3:]
        if words[0] != 'densenet':
            pytest.fail(f'{snippet.where}: `{" ".join(words)}` is not a densenet command; '
                        'mark the block <!-- not run: REASON --> or run it another way')
        args = []
        for w in words[1:]:
            found = sorted(os.path.relpath(f, cwd) for f in glob.glob(str(cwd / w)))
            args += (found or [w]) if '*' in w else [w]
        if args[0] != 'launch':  # in this process: no interpreter and mxnet start per line
            from densenet.cli import main
            assert os.getcwd() == str(cwd)
            code = main(args)
            assert code == 0, f'{snippet.where}: `{" ".join(words)}` exited {code}'
            continue
        proc = subprocess.run([sys.executable, '-m', 'densenet', *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (
            f'{snippet.where}: `{" ".join(words)}` exited {proc.returncode}\n'
            f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')


def _pages(slow: bool) -> list[Path]:
    return [p for p in PAGES if runnable(p, slow)]


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_marks_have_reasons() -> None:
    """Every `not run` or `slow` mark says why, and stands right before a block."""
    for page in PAGES:
        text = page.read_text()
        marked = [s for s in snippets(page) if s.mark]
        assert len(marked) == len(re.findall(r'<!--\s*(?:not run|slow)\s*:', text)), (
            f'{page}: a mark that is not right before a fenced block')
        for s in marked:
            assert s.reason, f'{s.where}: <!-- {s.mark}: --> needs a reason'


def test_readme_model_table_is_the_registry() -> None:
    """README's model table lists the registry's models with their defaults."""
    from densenet.models.registry import MODELS
    rows = {}
    for line in (ROOT / 'README.md').read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 7 and cells[0].startswith('`') and re.fullmatch(r'\d+x\d+', cells[2]):
            rows[cells[0].strip('`')] = cells
    assert list(rows) == list(MODELS)
    for name, cfg in MODELS.items():
        _, doc, side, min_side, channels, classes, _ = rows[name]
        assert cfg.doc.startswith(doc), name
        assert side == f'{cfg.input_size}x{cfg.input_size}', name
        assert (int(min_side), int(channels), int(classes)) == (
            cfg.min_input_size, cfg.channels, cfg.num_classes), name


@pytest.mark.parametrize('page', _pages(slow=False), ids=_id)
def test_fast_snippets(page: Path, workdir: Path) -> None:
    namespace: dict = {'__name__': '__docs__'}
    for s in runnable(page, slow=False):
        run_python(s, namespace)


def _slow_params() -> list:
    return _pages(slow=True)


def parse_shell(snippet: Snippet) -> None:
    """Each `densenet ...` line of a shell block parses with the real parser (a renamed
    flag or a bad value fails here; argparse exits 2)."""
    from densenet.cli import build_parser
    for words in commands(snippet):
        if words[:3] == ['python', '-m', 'densenet']:
            words = ['densenet'] + words[3:]
        assert words[0] == 'densenet', f'{snippet.where}: `{" ".join(words)}` is not densenet'
        args = words[1:]
        if args[0] == 'launch':  # the worker command after -- is a command line too
            inner = args[args.index('--') + 1:]
            assert inner[0] == 'densenet', snippet.where
            build_parser().parse_args(inner[1:])
        try:
            build_parser().parse_args(args)
        except SystemExit as e:
            pytest.fail(f'{snippet.where}: `{" ".join(words)}` does not parse (exit {e.code})')


def test_every_command_parses() -> None:
    """Every command line of the pages parses (quick; the slow test runs them)."""
    for page in PAGES:
        for s in runnable(page, slow=True):
            if s.lang in SHELL:
                parse_shell(s)


@pytest.mark.slow
@pytest.mark.parametrize('page', _slow_params(), ids=_id)
def test_all_snippets(page: Path, workdir: Path) -> None:
    namespace: dict = {'__name__': '__docs__'}
    for s in runnable(page, slow=True):
        if s.lang in PYTHON:
            run_python(s, namespace)
        else:
            run_shell(s, workdir)
