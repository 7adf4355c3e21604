"""The errors the command line turns into one line on stderr (no mxnet import here)."""
from __future__ import annotations


class UsageError(ValueError):
    """A bad value, path or file given by the user: one line on stderr, exit status 2.

    A ValueError, so that library callers catch it as one; the command line
    treats only these (and the `Fault` kinds below) as expected, so any other
    exception keeps its traceback and exits with status 1.
    """


class Fault(RuntimeError):
    """A run that failed for a known reason outside the user's flags: one line, exit status 1."""


class Diverged(Fault):
    """Training produced a non-finite or exploding loss, or non-finite weights: exit status 1."""


def _size(n: float) -> str:
    """A byte count the way `df -h` rounds it: 0 bytes, 512 bytes, 12 KB, 3.9 MB, 1.2 GB."""
    if n < 1024:
        return f'{n} bytes'
    for unit in ('KB', 'MB', 'GB', 'TB'):
        n /= 1024
        if n < 1024 or unit == 'TB':
            break
    return f'{n:.0f} {unit}' if n >= 100 else f'{n:.1f} {unit}'


class DiskFull(Fault):
    """A file could not be written because its file system (or the user's quota) is full.

    Raised by `densenet.system.files.atomic_write`, which leaves no temporary file and
    the previous file at `path` as it was.

    Args:
        path: the file that could not be written.
        free: bytes still free on the file system holding `path` once the temporary
            file is gone (None if unknown).
        mount: that file system's mount point.
        quota: the user's disk quota, not the disk, ran out.
    """

    def __init__(self, path: str, free: int | None = None, mount: str | None = None,
                 quota: bool = False) -> None:
        self.path, self.free, self.mount, self.quota = path, free, mount, quota
        where = f' on {mount}' if mount else ''
        room = f' ({_size(free)} free{where})' if free is not None else ''
        what = f'the disk quota{where} is exceeded' if quota else f'the disk is full{room}'
        super().__init__(f'could not write {path}: {what}; free some space there, or '
                         'choose another --out')

    def __reduce__(self) -> tuple:  # pickled with its fields, not with the message
        return type(self), (self.path, self.free, self.mount, self.quota)
