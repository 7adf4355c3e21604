"""What a run shows and leaves behind: the progress bar, metrics.csv and curves.png."""
from __future__ import annotations

import csv
import io
import sys
import time

from densenet.system.files import atomic_text, pyplot, save_figure

#: The columns of metrics.csv every run has, in order; the columns extensions add to the
#: rows follow them, in the order the last row holds them.
METRIC_FIELDS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc',
                 'lr', 'img_s', 'seconds']


class Progress:
    """A one-line progress bar with throughput and ETA, on `sys.stderr` as it is when the
    bar is made (so that a caller's redirection of stderr is honoured).

    Args:
        total: the steps of the epoch.
        prefix: the text before the bar.
    """

    def __init__(self, total: int, prefix: str) -> None:
        self.total, self.prefix, self.stream = total, prefix, sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.time()

    def update(self, done: int, images: int) -> None:
        """Show `done` of `total` steps (at most every 0.5 s on a terminal, every 30 s in a log).

        Args:
            done: the steps done.
            images: the images seen.
        """
        now = time.time()
        if not (done == self.total or now - self.last >= (0.5 if self.tty else 30)):
            return
        self.last = now
        rate = images / max(now - self.start, 1e-9)
        eta = (now - self.start) / done * (self.total - done)
        bar = '#' * int(20 * done / self.total)
        line = (f'{self.prefix} [{bar:<20}] {done}/{self.total} '
                f'{rate:6.1f} img/s ETA {eta:5.0f}s')
        self.stream.write('\r' + line if self.tty else line + '\n')
        if self.tty and done == self.total:
            self.stream.write('\n')
        self.stream.flush()


def plot_curves(rows: list[dict[str, float]], path: str) -> None:
    """Write loss and accuracy against epoch as a PNG, as d2l's ProgressBoard draws them.

    Args:
        rows: the epochs' rows.
        path: the PNG file.
    """
    import matplotlib.ticker
    ep = [r['epoch'] for r in rows]
    fig, ax = pyplot().subplots(figsize=(5, 3.5))
    styles: dict[str, str | tuple[int, tuple[int, int]]] = {
        'train_loss': '-', 'val_loss': '--', 'train_acc': '-.', 'val_acc': ':'}
    # The accuracy of other weights the run scores (the extensions' variants).
    styles.update({k: (0, (1, 3)) for k in rows[-1] if k.endswith('_val_acc')})
    for key, style in styles.items():
        ax.plot(ep, [r[key] for r in rows], linestyle=style, marker='o', markersize=3,
                label=key)
    ax.set_xlabel('epoch')
    ax.set_xlim(0.5, max(ep) + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_metrics(path: str, rows: list[dict[str, float]]) -> None:
    """Write metrics.csv: a row per epoch, the standard columns then the extensions'.

    Args:
        path: the CSV file.
        rows: the epochs' rows.
    """
    buf = io.StringIO()
    fields = METRIC_FIELDS + [k for k in rows[-1] if k not in METRIC_FIELDS]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f'{r[k]:.6g}' if isinstance(r[k], float) else r[k])
                         for k in fields})
    atomic_text(path, buf.getvalue())
