"""An exponential moving average (EMA) of a network's weights, for evaluation.

After every optimizer step each parameter's average moves towards it:
``avg = d * avg + (1 - d) * w``, with ``d = min(decay, (1 + t) / (10 + t))`` at
update ``t`` (so early updates, while the average still holds the random
initialisation, weigh the new weights more). BatchNorm's running mean and
variance are averaged alike, so the averaged network is complete on its own.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import ClassVar, cast

from mxnet.gluon import nn

from densenet.models.meta import Meta
from densenet.models.params import save
from densenet.train.config import TrainConfig
from densenet.train.extensions.base import (
    EpochResult,
    Extension,
    LoopView,
    Process,
    Row,
    State,
    Summary,
)
from densenet.train.options import option

#: What ``--ema`` writes: the average, as a params file of the network.
EMA = 'ema.params'


class WeightEMA:
    """The moving average of every parameter of `net` (on the first device).

    After every step ``avg = d avg + (1 - d) w`` with ``d = min(decay, (1 + t) / (10 + t))``
    at step ``t``, BatchNorm's running statistics included.

    Args:
        net: the network.
        decay: the decay, in (0, 1) (``--ema`` checks it).
    """

    def __init__(self, net: nn.Block, decay: float) -> None:
        self.net, self.decay, self.updates = net, decay, 0
        self.params = list(net.collect_params().values())
        self.average = [p.data().copy() for p in self.params]

    def rate(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self) -> None:
        """Move the average towards the network's current parameters."""
        d = self.rate()
        for avg, p in zip(self.average, self.params, strict=True):
            avg *= d
            avg += (1 - d) * p.data()
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[nn.Block]:
        """The network with the averaged parameters inside the block; whatever the block
        puts into it, its own weights are back after it.

        Yields:
            The network.
        """
        own = [p.data().copy() for p in self.params]
        try:
            for p, avg in zip(self.params, self.average, strict=True):
                p.set_data(avg)
            yield self.net
        finally:
            for p, w in zip(self.params, own, strict=True):
                p.set_data(w)

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
        with self.applied() as net:
            net.load_parameters(path, ctx=self.params[0].list_ctx())
            self.average = [p.data().copy() for p in self.params]


class WeightAveraging(Extension):
    """``--ema``: keeps a `WeightEMA` updated after every step.

    The loop scores the average every epoch (its `variants`: ema_val_loss,
    ema_val_acc); it saves it as ema.params, keeps it in the checkpoint, and
    reports its final accuracy (final_ema_val_acc).

    Args:
        decay: the decay of the average.

    Attributes:
        average: the run's `WeightEMA`, from `on_fit_start` on.
    """
    name = 'ema'
    options: ClassVar[dict[str, dataclasses.Field[object]]] = {'ema': option(
        0.0, group='regularisation', parse=float, metavar='DECAY', within='[0, 1)',
        error='{flag} must be a decay in [0, 1) (0: off), e.g. 0.999; got {value}',
        help='also keep a moving average of the weights with this decay (e.g. 0.999; 0: '
             'none), scored every epoch and saved as ema.params')}
    files = (EMA,)
    average: WeightEMA

    def __init__(self, decay: float) -> None:
        self.decay = decay

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> WeightAveraging | None:
        decay = cfg.value('ema', float)
        return cls(decay) if decay else None

    def on_fit_start(self, loop: LoopView) -> None:
        self.average = WeightEMA(loop.model.net, self.decay)

    def state_dict(self) -> State:
        return State({'updates': self.average.updates}, list(self.average.average))

    def load_state_dict(self, state: State) -> None:
        ctx = self.average.params[0].list_ctx()[0]
        self.average.average = [a.as_in_context(ctx) for a in state.arrays]
        self.average.updates = cast(int, state.values['updates'])  # as state_dict wrote it

    def on_step_end(self, loop: LoopView, step: int) -> None:
        self.average.update()

    def variants(self) -> dict[str, AbstractContextManager[object]]:
        return {'ema_': self.average.applied()}

    def on_validation_end(self, loop: LoopView, row: Row) -> str:
        return f' (EMA {row["ema_val_acc"]:.4f})'

    def on_epoch_end(self, loop: LoopView, row: Row, result: EpochResult,
                     is_best: bool) -> None:
        # ema_decay is this extension's field of the metadata, beyond `Meta`'s.
        meta = cast(Meta, {**loop.meta, 'epoch': int(row['epoch']), 'ema_decay': self.decay})
        with self.average.applied():
            save(loop.model, loop.run.path(EMA), meta)

    def on_fit_end(self, loop: LoopView, summary: Summary | None) -> None:
        if summary is not None:
            summary['final_ema_val_acc'] = loop.rows[-1]['ema_val_acc']
