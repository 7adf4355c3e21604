"""Files are written under a temporary name and renamed: never left half-written."""
import os
import tempfile


def atomic_write(path, write):
    """Call write(tmp_path), then rename tmp_path to path: no half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=folder)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_text(path, text):
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_write(path, write)


def atomic_bytes(path, data):
    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    atomic_write(path, write)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    return plt


def save_figure(fig, path):
    """Write a matplotlib figure as PNG to `path` atomically, then close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    pyplot().close(fig)
