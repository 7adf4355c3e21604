"""An exponential moving average (EMA) of a network's weights, for evaluation.

After every optimizer step each parameter's average moves towards it:
``avg = d * avg + (1 - d) * w``, with ``d = min(decay, (1 + t) / (10 + t))`` at
update ``t`` (so early updates, while the average still holds the random
initialisation, weigh the new weights more). BatchNorm's running mean and
variance are averaged alike, so the averaged network is complete on its own.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from mxnet.gluon import nn

from densenet.errors import UsageError
from densenet.models.params import save
from densenet.system.files import atomic_write
from densenet.train.extensions.base import Extension
from densenet.train.run_folder import EMA

if TYPE_CHECKING:
    from densenet.train.loop import EpochResult, Loop


class WeightEMA:
    """The moving average of every parameter of `net` (on the first device).

    After every step ``avg = d avg + (1 - d) w`` with ``d = min(decay, (1 + t) / (10 + t))``
    at step ``t``, BatchNorm's running statistics included.

    Args:
        net: the network.
        decay: the decay, in (0, 1).

    Raises:
        UsageError: a decay outside (0, 1).
    """

    def __init__(self, net: nn.Block, decay: float) -> None:
        if not 0 < decay < 1:
            raise UsageError(f'--ema must be a decay in (0, 1), e.g. 0.999; got {decay}')
        self.net, self.decay, self.updates = net, decay, 0
        self.params = list(net.collect_params().values())
        self.average = [p.data().copy() for p in self.params]

    def rate(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self) -> None:
        """Move the average towards the network's current parameters."""
        d = self.rate()
        for avg, p in zip(self.average, self.params):
            avg *= d
            avg += (1 - d) * p.data()
        self.updates += 1

    @contextmanager
    def _own_weights_kept(self) -> Iterator[Any]:
        """Whatever the block puts into the network, its own weights are back after it."""
        own = [p.data().copy() for p in self.params]
        try:
            yield self.net
        finally:
            for p, w in zip(self.params, own):
                p.set_data(w)

    @contextmanager
    def applied(self) -> Iterator[Any]:
        """The network with the averaged parameters inside the block, its own after it.

        Yields:
            The network.
        """
        with self._own_weights_kept() as net:
            for p, avg in zip(self.params, self.average):
                p.set_data(avg)
            yield net

    def save(self, path: str) -> None:
        """Write the average as a params file of the network (loadable like any other).

        Args:
            path: the params file.
        """
        with self.applied() as net:
            net.save_parameters(path)

    def load(self, path: str) -> None:
        """Take the average from a file `save` wrote; the network's own weights stay.

        Args:
            path: the params file.
        """
        with self._own_weights_kept() as net:
            net.load_parameters(path, ctx=self.params[0].list_ctx())
            self.average = [p.data().copy() for p in self.params]


class WeightAveraging(Extension):
    """``--ema``: keeps a `WeightEMA` updated after every step.

    It scores the average every epoch (ema_val_loss, ema_val_acc), saves it as
    ema.params, keeps it in the checkpoint, and reports its final accuracy
    (final_ema_val_acc).

    Args:
        decay: the decay of the average.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.ema: WeightEMA | None = None

    def on_fit_start(self, loop: Loop, state: dict[str, Any] | None) -> None:
        self.ema = WeightEMA(loop.model.net, self.decay)
        if state is not None:
            self.ema.load(state['stem'] + '.ema.params')
            self.ema.updates = state['ema_updates']

    def on_step_end(self, loop: Loop, step: int) -> None:
        self.average.update()

    @property
    def average(self) -> WeightEMA:
        """The run's `WeightEMA`.

        Raises:
            RuntimeError: before the fit has started.
        """
        if self.ema is None:
            raise RuntimeError('the weight average exists once the fit has started')
        return self.ema

    def on_validation_end(self, loop: Loop, row: dict[str, Any]) -> str:
        with self.average.applied():
            row['ema_val_loss'], row['ema_val_acc'], _ = loop.validate()
        return f' (EMA {row["ema_val_acc"]:.4f})'

    def on_epoch_end(self, loop: Loop, row: dict[str, Any], result: EpochResult) -> None:
        with self.average.applied():
            save(loop.model, loop.run.path(EMA),
                 dict(loop.meta, epoch=row['epoch'], ema_decay=self.decay))

    def checkpoint(self, loop: Loop, stem: str) -> tuple[list[str], dict[str, Any]]:
        atomic_write(stem + '.ema.params', self.average.save)
        return ['.ema.params'], {'ema_updates': self.average.updates}

    def on_fit_end(self, loop: Loop, summary: dict[str, Any] | None) -> None:
        if summary is not None:
            summary['final_ema_val_acc'] = loop.rows[-1]['ema_val_acc']
