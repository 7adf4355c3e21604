"""Files are written under a temporary name and renamed: never left half-written.

A full file system (``ENOSPC``, or ``EDQUOT`` for a full quota) while writing,
whether Python's own ``OSError`` or MXNet's ``FileStream.Write incomplete`` from a
``save_parameters``-like callback, becomes `densenet.errors.DiskFull`: one line
naming the file and the space left, exit status 1 on the command line. The
temporary file is removed and the file already at the target path is untouched.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

from densenet.errors import DiskFull

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_FULL_ERRNOS = tuple(n for n in (errno.ENOSPC, getattr(errno, 'EDQUOT', None)) if n is not None)
# dmlc-core's FileStream::Write: "Check failed: std::fwrite(ptr, 1, size, fp_) == size:
# FileStream.Write incomplete" (MXNet prints it as "std: :fwrite").
_MXNET_WRITE_FAILED = ('FileStream.Write incomplete', 'fwrite(')


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says that the file system (or the quota) holding a file is full.

    Args:
        error: the exception.

    Returns:
        True for ENOSPC and EDQUOT (also as MXNet reports them).
    """
    if isinstance(error, OSError):
        return error.errno in _FULL_ERRNOS
    # MXNet's failed fwrite, checked by name: no mxnet import here.
    names = {cls.__name__ for cls in type(error).__mro__}
    return 'MXNetError' in names and any(s in str(error) for s in _MXNET_WRITE_FAILED)


def _mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _no_space_left(folder: str) -> bool:
    """Whether the file system holding `folder` has no free block left (for this user:
    root may use the blocks reserved for it). MXNet's writer (dmlc-core) ignores the
    error of its final flush, so a file that hit a full disk in its last buffered bytes
    is left short without an error; a write that leaves no room at all is not trusted."""
    with contextlib.suppress(OSError, AttributeError):  # no statvfs (Windows), or no folder
        st = os.statvfs(folder)
        free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
        return st.f_blocks > 0 and free == 0
    return False


def disk_full(path: str | os.PathLike[str], error: BaseException) -> DiskFull:
    """The `DiskFull` for `path`, with the space now free on its file system if known.

    Args:
        path: the file that could not be written.
        error: the original error.

    Returns:
        The error, for the caller to raise.
    """
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):  # makedirs itself may have failed
        folder = os.path.dirname(folder)
    free = mount = None
    with contextlib.suppress(OSError, AttributeError):  # no statvfs (Windows), or no folder
        st = os.statvfs(folder)
        free, mount = st.f_bavail * st.f_frsize, _mount_point(folder)
    quota = isinstance(error, OSError) and error.errno == getattr(errno, 'EDQUOT', None)
    return DiskFull(os.fspath(path), free, mount, quota)


def _drop_frames(error: BaseException) -> None:
    """Clear the locals of the finished frames in the tracebacks of `error` and the errors
    it chains, quietly. What a failed writer abandoned there (numpy.savez's half-written
    ZipFile) would otherwise print an 'Exception ignored in ... __del__' traceback on
    stderr whenever it is collected; the tracebacks keep their files and lines."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        todo: list[BaseException | None] = [error]
        seen: set[int] = set()
        while todo:
            e = todo.pop()
            if e is not None and id(e) not in seen:
                seen.add(id(e))
                traceback.clear_frames(e.__traceback__)  # skips the frames still running
                todo += [e.__cause__, e.__context__]
    finally:
        sys.unraisablehook = hook


@contextlib.contextmanager
def disk_full_as_error(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full-disk error raised inside the block into `DiskFull` naming `path`.

    For writers that do not go through `atomic_write` (they clean up their own
    temporary files): the space is measured after the block has unwound.

    Args:
        path: the file being written.

    Yields:
        None.

    Raises:
        DiskFull: the file system filled up inside the block.
    """
    try:
        yield
    except (OSError, RuntimeError) as e:  # MXNetError is a RuntimeError
        if isinstance(e, DiskFull) or not is_disk_full(e):
            raise
        _drop_frames(e)
        raise disk_full(path, e) from e


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call write(tmp_path), then rename tmp_path to path: no half-written file.

    Whatever was at `path` before is left as it was when the write fails.

    Args:
        path: the file.
        write: writes the content to the path it is given.

    Raises:
        DiskFull: the disk filled up (the temporary file is removed), or the write
            left its file system without a free block, so it may have been cut
            short silently (see `_no_space_left`).
    """
    with disk_full_as_error(path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=folder)
        os.close(fd)
        try:
            write(tmp)
            if _no_space_left(folder):
                raise OSError(errno.ENOSPC, 'no space left once written: it may be short', tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)


def user_cache(*parts: str) -> str:
    """A path in the user's cache folder: ``$DENSENET_CACHE``, else ``~/.cache/densenet``.

    Args:
        *parts: the path inside it.

    Returns:
        The path.
    """
    root = os.environ.get('DENSENET_CACHE') or os.path.join('~', '.cache', 'densenet')
    return os.path.join(os.path.expanduser(root), *parts)


def atomic_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically.

    Args:
        path: the file.
        text: its content.

    Raises:
        DiskFull: the disk filled up; the previous file stays as it was.
    """
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def atomic_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically.

    Args:
        path: the file.
        data: its content.

    Raises:
        DiskFull: the disk filled up; the previous file stays as it was.
    """
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_bytes(data))


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend (no display needed).

    Returns:
        The pyplot module.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    return plt


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write a matplotlib figure as PNG to `path` atomically, then close it.

    The figure is closed also when the write fails.

    Args:
        fig: the figure.
        path: the PNG file.

    Raises:
        DiskFull: the disk filled up.
    """
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    finally:
        pyplot().close(fig)
