"""The code in README.md and docs/ runs, as a reader would type it.

Every fenced block of README.md and docs/**/*.md is one of:

- ```python: executed. The blocks of one page run in order, in one fresh
  namespace;
- ```bash: run by bash, as written, in order: README's in a fresh shell with no
  virtual environment on PATH (its quickstart runs ``make install`` and activates
  ``.venv`` itself), every other page's in a fresh shell that has run the
  quickstart's ``. .venv/bin/activate``, the state a reader of the docs is in;
  `test_every_command_parses` (quick) parses every ``densenet`` line with the real
  parser;
- anything else (```text, output): not run.

Each page runs in its own fresh copy of the repository (the files git tracks, as
a clone has them), with a fresh home folder; its ``.venv`` is the one running the
tests, already installed, so ``make install`` there has nothing to do. The shell
and the Python blocks share the page's working folder: a Python block runs where
the shell stands.

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
import os
import re
import selectors
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / 'README.md'] + sorted(p for p in (ROOT / 'docs').rglob('*.md')
                                      if 'hooks' not in p.parts)
FENCE = re.compile(r'^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$', re.MULTILINE | re.DOTALL)
MARK = re.compile(r'<!--\s*(not run|slow)\s*:\s*(.*?)\s*-->\s*\Z', re.DOTALL)
#: Before a ```text block: it shows what the shell block before it prints.
OUTPUT = re.compile(r'<!--\s*output\s*-->\s*\Z')
#: A probability as predict prints it: compared to 0.01, the spread between CPU kinds.
PROBABILITY = re.compile(r'\((0\.\d{3}|1\.000)\)')
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
    output: bool = False  # a text block that shows the shell block's output before it

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
                           mark.group(2) if mark else '', bool(OUTPUT.search(before))))
        end = m.end()
    return out


def runnable(page: Path, slow: bool) -> list[Snippet]:
    """The blocks of `page` that the fast (or the slow) test runs, in order."""
    chosen = []
    for s in snippets(page):
        if s.output and slow:
            chosen.append(s)
            continue
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


#: Programs other than `densenet` that a page's shell lines may run.
OTHER_PROGRAMS = {'make', '.', 'source', 'cd', 'ls', 'python', 'python3'}


def clone(dest: Path) -> Path:
    """A copy of the working tree's files (git's tracked ones and new ones it does not
    ignore: a clone of the commit to be made), times kept, with `.venv` the installed
    environment running the tests, so that `make install` finds it up to date. That
    environment's package is the editable install of this checkout, whose files the
    copy repeats."""
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others',
                             '--exclude-standard'], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split('\0')
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    venv = Path(sys.prefix)
    stamp = venv / '.installed'
    assert stamp.is_file(), (f'{venv} was not made by `make install`: run the tests with '
                             '`make test` (the snippets run `make install` in a copy)')
    (dest / '.venv').symlink_to(venv)
    older = stamp.stat().st_mtime - 60
    for name in ('pyproject.toml', 'Makefile'):  # as old as a clone's, for make's rule
        os.utime(dest / name, (older, older))
    return dest


def fresh_env(home: Path) -> dict[str, str]:
    """A new login's environment: PATH without any virtual environment, a new home."""
    venv_bins = {os.path.dirname(sys.executable), os.path.join(sys.prefix, 'bin')}
    path = [p for p in os.environ.get('PATH', os.defpath).split(os.pathsep)
            if p and p not in venv_bins]
    return {'PATH': os.pathsep.join(path), 'HOME': str(home), 'LANG': 'C.UTF-8',
            'TERM': 'dumb'}


def _ended(out: bytes, end: bytes) -> bool:
    """Whether `out` holds the end marker's whole line."""
    return end in out and b'\n' in out[out.index(end):]


class Shell:
    """One bash process per page: its shell blocks run in it in order, so what one sets
    (an activated environment, a folder) holds for the next; a failing command ends it."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path,
                 activated: bool = False) -> None:
        self.scratch = scratch
        self.proc = subprocess.Popen(['bash', '--noprofile', '--norc'], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.cwd = cwd
        if activated:  # the quickstart's last step, done before a docs page
            self.run('. .venv/bin/activate', 'the quickstart')

    def run(self, code: str, where: str, timeout: float = 900) -> str:
        """Run `code` (a block's text) in the shell; its output. Fails the test, with
        the output, when a command fails or the block outlasts `timeout`."""
        block = self.scratch / 'block.sh'
        block.write_text(code)
        end = f'__end_of_block_{os.getpid()}__'
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f'set -e -o pipefail; . {shlex.quote(str(block))}; set +e; '
                              f'echo "{end} $PWD"\n'.encode())
        self.proc.stdin.flush()
        out = b''
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not _ended(out, end.encode()):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.close()
                    pytest.fail(f'{where}: the block ran over {timeout:.0f} s\n'
                                f'{out.decode(errors="replace")[-3000:]}')
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    status = self.proc.wait()
                    pytest.fail(f'{where}: a command failed (the shell exited {status}):\n'
                                f'{out.decode(errors="replace")[-4000:]}')
                out += chunk
        text = out.decode(errors='replace')
        output, _, tail = text.rpartition(end)
        self.cwd = Path(tail.strip())
        return output

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_python(snippet: Snippet, namespace: dict) -> None:
    try:
        exec(compile(snippet.code, snippet.where, 'exec'), namespace)
    except Exception as e:
        if hasattr(e, 'add_note'):  # Python 3.11+
            e.add_note(f'in the python block at {snippet.where}')
        raise


@pytest.fixture
def page_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the repository to run a page in, the current folder."""
    repo = clone(tmp_path / 'repo')
    (tmp_path / 'home').mkdir()
    (tmp_path / 'scratch').mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    monkeypatch.setenv('DENSENET_CACHE', str(tmp_path / 'home' / '.cache' / 'densenet'))
    return repo


def check_output(snippet: Snippet, printed: str) -> None:
    """A block marked <!-- output --> is what the shell block before it printed last: the
    same lines, each probability within 0.01."""
    want = snippet.code.strip().splitlines()
    got = printed.strip().splitlines()[-len(want):]
    assert [PROBABILITY.sub('(p)', line) for line in got] == [
        PROBABILITY.sub('(p)', line) for line in want], (
        f'{snippet.where}: the page shows\n{snippet.code}\nthe commands printed\n{printed}')
    for a, b in zip(want, got, strict=True):
        for x, y in zip(PROBABILITY.findall(a), PROBABILITY.findall(b), strict=True):
            assert abs(float(x) - float(y)) <= 0.01, f'{snippet.where}: {a} printed as {b}'


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
def test_fast_snippets(page: Path, page_clone: Path) -> None:
    namespace: dict = {'__name__': '__docs__'}
    for s in runnable(page, slow=False):
        run_python(s, namespace)


def _slow_params() -> list:
    return _pages(slow=True)


def parse_shell(snippet: Snippet) -> None:
    """Each `densenet ...` line of a shell block parses with the real parser (a renamed
    flag or a bad value fails here; argparse exits 2); other lines run only the
    programs a reader has (`OTHER_PROGRAMS`)."""
    from densenet.cli import build_parser
    for words in commands(snippet):
        assert words != ['densenet'], f'{snippet.where}: `densenet` alone names no command'
        if words[0] != 'densenet':
            assert words[0] in OTHER_PROGRAMS, (
                f'{snippet.where}: `{" ".join(words)}` runs {words[0]}, not densenet; add it '
                'to OTHER_PROGRAMS if a reader has it, or mark the block <!-- not run: -->')
            continue
        args = words[1:]
        lines = [args]
        if args[0] == 'launch':  # the worker command after -- is a command line too
            inner = args[args.index('--') + 1:] if '--' in args else []
            assert inner[:1] == ['densenet'], f'{snippet.where}: launch runs no densenet'
            lines.append(inner[1:])
        for line in lines:
            try:
                build_parser().parse_args(line)
            except SystemExit as e:
                pytest.fail(f'{snippet.where}: `{" ".join(words)}` does not parse '
                            f'(exit {e.code})')


def test_every_command_parses() -> None:
    """Every command line of the pages parses (quick; the slow test runs them)."""
    for page in PAGES:
        for s in runnable(page, slow=True):
            if s.lang in SHELL:
                parse_shell(s)


@pytest.mark.slow
@pytest.mark.parametrize('page', _slow_params(), ids=_id)
def test_all_snippets(page: Path, page_clone: Path, tmp_path: Path) -> None:
    namespace: dict = {'__name__': '__docs__'}
    shell = Shell(page_clone, fresh_env(tmp_path / 'home'), tmp_path / 'scratch',
                  activated=page != ROOT / 'README.md')
    printed = ''
    try:
        for s in runnable(page, slow=True):
            if s.output:
                check_output(s, printed)
            elif s.lang in PYTHON:
                os.chdir(shell.cwd)
                run_python(s, namespace)
            else:
                printed = shell.run(s.code, s.where)
    finally:
        shell.close()
