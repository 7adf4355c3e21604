"""A run folder (``--out``): its files, its lock, its checkpoint.

A folder belongs to one run. Training into a folder that already holds a run
needs ``resume`` (continue it) or ``overwrite`` (replace it); a lock file with
the owner's pid and host refuses a second run while the first is alive, and a
lock whose process is gone is taken over. Temporaries that a killed run left
behind (see files.py) are removed when the next run claims the folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from typing import TypeAlias, TypedDict

from densenet.errors import UsageError
from densenet.system.files import atomic_text, atomic_write

#: The files the loop writes into a run folder: every writer takes its name from here,
#: and ``--overwrite`` removes each of them (a params file with its .json). Extensions
#: declare theirs (`Extension.files`).
SUMMARY, METRICS, CURVES = 'summary.json', 'metrics.csv', 'curves.png'
LAST, BEST = 'last.params', 'best.params'
CHECKPOINT = 'checkpoint'
#: Written beside a run's params by ``densenet evaluate``; it describes the old model.
CONFUSION = 'confusion.png'
RUN_FILES = (SUMMARY, METRICS, CURVES, LAST, BEST, LAST + '.json', BEST + '.json', CHECKPOINT,
             CONFUSION)
#: The files of one checkpoint, after its stem ``checkpoint/epoch-NNNN``: the parameters,
#: the optimizer states and the extensions' arrays.
PARAMS, STATES, ARRAYS = '.params', '.states', '.arrays'
STATE = 'state.json'
#: How a checkpoint's optimizer states are indexed: by the trainer's parameters in the
#: network's order (`densenet.train.setup.trained_params`).
STATES_ORDER = 'network'
#: A value that JSON holds (state.json, summary.json).
Json: TypeAlias = 'None | bool | int | float | str | list[Json] | dict[str, Json]'


class Checkpoint(TypedDict):
    """A checkpoint's state.json, and where its files are (``stem``)."""
    epoch: int
    rows: list[dict[str, float]]
    config: dict[str, object]
    best_val_acc: float
    wall_s: float
    total_steps: int
    states_order: str
    extensions: dict[str, dict[str, Json]]
    files: list[str]
    stem: str


class Run:
    """Files of one run folder, and checkpoint/resume of its state.

    Args:
        out: the folder (``--out``).
        files: the files of the run (default: the loop's, `RUN_FILES`; a run has its
            extensions' too, `densenet.train.extensions.run_folder_files`).
    """

    def __init__(self, out: str, files: tuple[str, ...] = RUN_FILES) -> None:
        self.out, self.files = out, files
        self.ckpt = os.path.join(out, CHECKPOINT)
        self.lock = os.path.join(out, '.lock')

    def path(self, name: str) -> str:
        """The path of `name` inside the run folder.

        Args:
            name: a file name (`RUN_FILES`).

        Returns:
            The path.
        """
        return os.path.join(self.out, name)

    def check_path(self) -> None:
        """Check that `out` is a folder or can be made one (nothing is created).

        Raises:
            UsageError: `out` is a file, lies below one, or cannot be written.
        """
        parent = path = os.path.abspath(self.out)
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f'--out {self.out} is a file, not a folder: choose a folder')
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise UsageError(f'--out {self.out}: {parent} is a file, so no folder can be made '
                             'inside it: choose another --out')
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f'--out {self.out}: {parent} is not writable: choose another --out')

    def existing(self) -> list[str]:
        """The run files already in the folder.

        Returns:
            Their names, in `files` order.
        """
        return [f for f in self.files if os.path.exists(self.path(f))]

    @contextlib.contextmanager
    def claimed(self, resume: bool, overwrite: bool,
                log: Callable[[str], None] = print) -> Iterator[Checkpoint | None]:
        """Lock the folder for the `with` body (released however it ends) and yield the
        checkpoint state to resume.

        Temporaries that a killed run left are removed; with `overwrite` the old run's
        files are.

        Args:
            resume: continue the run in the folder.
            overwrite: replace the run in the folder.
            log: where notes go.

        Yields:
            The checkpoint state to resume, or None.

        Raises:
            UsageError: touching no run file, when another live run holds the folder,
                or when it holds a run and neither `resume` nor `overwrite` is set.
        """
        self.check_path()
        created = not os.path.exists(self.out)
        os.makedirs(self.out, exist_ok=True)
        self._lock()
        try:
            found = self.existing()
            state = self.load_checkpoint() if resume else None
            if resume and state is None:
                if found:
                    raise UsageError(f'--resume: {self.out} holds a run ({", ".join(found)}) '
                                     'but no checkpoint to continue (a dist run writes none): '
                                     'use --overwrite to start again, or another --out')
                log(f'--resume: no checkpoint in {self.out}, so the run starts from epoch 1')
            elif found and not resume:
                if not overwrite:
                    raise UsageError(f'--out {self.out} already holds a run '
                                     f'({", ".join(found)}): add --resume to continue it, '
                                     '--overwrite to replace it, or choose another --out')
                log(f'--overwrite: replacing the run in {self.out}')
                for name in found:
                    target = self.path(name)
                    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
            self._remove_temporaries()
            yield state
        finally:  # drop the lock; a folder this run created and left empty goes too
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.lock)
            if created and not os.listdir(self.out):
                os.rmdir(self.out)

    def _lock(self) -> None:
        for _ in range(3):
            try:
                with open(self.lock, 'x') as f:  # created only if there is none
                    f.write(f'{os.getpid()} {socket.gethostname()}')
                return
            except FileExistsError:
                if owner := self._live_owner():
                    raise UsageError(f'--out {self.out} is in use by another run ({owner}, '
                                     f'lock file {self.lock}): wait for it to end or choose '
                                     'another --out') from None
                with contextlib.suppress(FileNotFoundError):  # its process is gone: stale
                    os.remove(self.lock)
        raise UsageError(f'--out {self.out}: could not take the lock file {self.lock}')

    def _live_owner(self) -> str | None:
        """'pid N on HOST' of the lock's owner if it may still run, else None."""
        try:
            text, host = pathlib.Path(self.lock).read_text().split()
            pid = int(text)
        except (OSError, ValueError):
            return None  # unreadable or half-written by a killed run
        if host != socket.gethostname():
            return f'pid {pid} on {host}; remove the lock file if that run is gone'
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f'pid {pid}'

    def _remove_temporaries(self) -> None:
        """Remove the names files.atomic_write gives a run's files while it writes them."""
        names = [re.escape(f) for f in self.files if f != CHECKPOINT] + [re.escape(STATE)]
        parts = r'epoch-\d+(' + '|'.join(re.escape(p) for p in (PARAMS, STATES, ARRAYS)) + ')'
        temporary = re.compile(r'^\.(' + '|'.join(names) + '|' + parts + r')\.\w{8}$')
        for folder in (self.out, self.ckpt):
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if temporary.match(name):
                        os.remove(os.path.join(folder, name))

    def save_checkpoint(self, epoch: int, writers: dict[str, Callable[[str], None]],
                        state: dict[str, object]) -> None:
        """Checkpoint `epoch`.

        Each writer writes its file (``checkpoint/epoch-NNNN`` and its suffix, e.g.
        ``.params``) under a temporary name, renamed once complete; then state.json
        (`state` and the suffixes) is written, then the older epochs' files go.

        Args:
            epoch: the epochs done.
            writers: {suffix: a function that writes the file at the path it is given}.
            state: the `Checkpoint` fields but epoch, files and stem.
        """
        os.makedirs(self.ckpt, exist_ok=True)
        stem = os.path.join(self.ckpt, f'epoch-{epoch:04d}')
        for suffix, write in writers.items():
            atomic_write(stem + suffix, write)
        record = {'epoch': epoch, **state, 'files': list(writers)}
        atomic_text(os.path.join(self.ckpt, STATE), json.dumps(record, indent=1))
        for name in os.listdir(self.ckpt):  # older epochs are no longer needed
            if name.startswith('epoch-') and not name.startswith(f'epoch-{epoch:04d}.'):
                os.remove(os.path.join(self.ckpt, name))

    def load_checkpoint(self) -> Checkpoint | None:
        """The saved state of the folder's checkpoint.

        Returns:
            The state, or None if there is no checkpoint.

        Raises:
            UsageError: a damaged checkpoint, or one whose files are missing.
        """
        path = os.path.join(self.ckpt, STATE)
        if not os.path.exists(path):
            return None
        try:
            state: Checkpoint = json.loads(pathlib.Path(path).read_text())
            stem = os.path.join(self.ckpt, f'epoch-{state["epoch"]:04d}')
            parts = list(state['files'])
            dict(state['extensions'])  # written by this version: every extension's part
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f'--resume: {path} is damaged ({e}); use --overwrite to start '
                             'again, or another --out') from None
        for ext in parts:
            if not os.path.isfile(stem + ext):
                raise UsageError(f'--resume: {stem + ext} is missing (the checkpoint of epoch '
                                 f'{state["epoch"]}); restore it, or use --overwrite to start '
                                 'again')
        state['stem'] = stem
        return state
