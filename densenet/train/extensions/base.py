"""The interface between the training loop and its extensions, and their registry.

The loop (loop.py) trains and validates; everything else a run does (time
budgets, weight averaging, progressive resizing, flip-averaged scores, the
files of the run folder and its checkpoints) is an `Extension`, called at fixed
points of the loop. An extension defines its own options (`Extension.options`),
the run files it writes (`Extension.files`), its part of the checkpoint
(`state_dict` / `load_state_dict`) and its columns of the epoch row; `register`
makes it part of every run. Adding an option means a new extension and a
`register` line, not a change to the loop.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import AbstractContextManager, nullcontext
from typing import ClassVar, Protocol, TypeAlias, TypeVar

import mxnet as mx
from mxnet import gluon

from densenet.data import DataModule
from densenet.data.batches import BatchLoader
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.system.hints import Array
from densenet.train.config import TrainConfig
from densenet.train.options import EXTENSION_OPTIONS
from densenet.train.run_folder import RUN_FILES, Json, Run

#: An epoch's row of metrics.csv: the loop's columns, then those the extensions add.
Row: TypeAlias = dict[str, float]
#: summary.json's fields; extensions add theirs.
Summary: TypeAlias = dict[str, object]


@dataclasses.dataclass
class Steps:
    """The run's planned number of steps; a budget may change it between epochs.

    Attributes:
        total: the steps of the whole run.
        steps_per_epoch: the steps of one epoch.
    """
    total: int
    steps_per_epoch: int

    @property
    def epochs(self) -> int:
        """The epochs the planned steps take (the last one may be partial)."""
        return math.ceil(self.total / self.steps_per_epoch)


@dataclasses.dataclass
class EpochResult:
    """What an epoch of training measured.

    Attributes:
        loss: mean training loss per image.
        acc: training accuracy (training mode, as the steps saw it).
        images: images trained on.
        seconds: the epoch's training time.
        step_s: seconds per step after the first (which builds the graph).
    """
    loss: float
    acc: float
    images: int
    seconds: float
    step_s: float


@dataclasses.dataclass
class State:
    """An extension's part of a checkpoint.

    Attributes:
        values: what state.json keeps (under the extension's `Extension.name`).
        arrays: arrays kept beside it, in the checkpoint's ``.arrays`` file.
    """
    values: dict[str, Json] = dataclasses.field(default_factory=dict)
    arrays: list[Array] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Process:
    """What the extensions of one process of a run may do.

    Attributes:
        writer: it writes the run folder (rank 0).
        dist: a dist kvstore (no checkpoints: MXNet cannot save its optimizer states).
        quiet: no speed note (on a GPU, or a worker that is not rank 0).
    """
    writer: bool = True
    dist: bool = False
    quiet: bool = False


class LoopView(Protocol):
    """What extensions see of the loop: read-only, except ``steps.total`` (a budget)."""

    @property
    def cfg(self) -> TrainConfig: ...
    @property
    def model(self) -> CheckedClassifier: ...
    @property
    def trainer(self) -> gluon.Trainer: ...
    @property
    def ctxs(self) -> list[mx.Context]: ...
    @property
    def data(self) -> DataModule: ...
    @property
    def val_loader(self) -> BatchLoader: ...
    @property
    def steps(self) -> Steps: ...
    @property
    def run(self) -> Run: ...
    @property
    def meta(self) -> Meta: ...
    @property
    def rank(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def side(self) -> int: ...
    @property
    def rows(self) -> list[Row]: ...
    @property
    def extensions(self) -> list[Extension]: ...
    @property
    def epoch_tic(self) -> float: ...
    @property
    def best_acc(self) -> float: ...

    def log(self, line: str) -> None: ...
    def elapsed(self) -> float: ...


class Extension:
    """Hooks the loop calls, in the order of its extension list; each does nothing here.

    Attributes:
        name: the key of its part of the checkpoint.
        options: its `TrainConfig` options (`densenet.train.options.option` fields), by
            name; ``densenet train`` has a flag for each, and ``cfg.NAME`` its value.
        files: the files it writes into the run folder (a ``.params`` file with its
            ``.json``); ``--overwrite`` removes them.
    """
    name: ClassVar[str] = ''
    options: ClassVar[dict[str, dataclasses.Field[object]]] = {}
    files: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> Extension | None:
        """The extension a run of `cfg` has, or None when it has none.

        Args:
            cfg: the configuration.
            process: what this process does.

        Returns:
            The extension, or None.
        """
        return None

    def state_dict(self) -> State | None:
        """Its part of the checkpoint, or None when it keeps nothing.

        Returns:
            The state.
        """
        return None

    def load_state_dict(self, state: State) -> None:
        """Take back the part `state_dict` gave, when a run resumes (after on_fit_start).

        Args:
            state: the state.
        """

    def variants(self) -> dict[str, AbstractContextManager[object]]:
        """Weights besides the model's own that are scored too, by column prefix.

        Each is a context in which the model holds those weights; the loop scores
        it after every validation (``PREFIXval_loss``, ``PREFIXval_acc``).

        Returns:
            {prefix: context}.
        """
        return {}

    def final_passes(self, scored: int) -> int:
        """Validation passes it makes after the last epoch (a budget plans for them).

        Args:
            scored: the weights scored every epoch (the model's and the variants).

        Returns:
            The passes.
        """
        return 0

    def early_share(self, cfg: TrainConfig) -> float:
        """The share of the first epochs it trains at a side below the run's (a budget
        plans their steps at the speed it measured there).

        Args:
            cfg: the configuration.

        Returns:
            The share (0: none).
        """
        return 0.0

    def on_fit_start(self, loop: LoopView) -> None:
        """Before the first epoch (and before a resumed state is loaded).

        Args:
            loop: the run.
        """

    def on_epoch_start(self, loop: LoopView) -> int | None:
        """Before an epoch trains (``loop.epoch`` is 0-based).

        Args:
            loop: the run.

        Returns:
            The side to train this epoch at, or None for the run's side.
        """
        return None

    def on_step_end(self, loop: LoopView, step: int) -> None:
        """After every optimizer step. Its time counts as training time.

        Args:
            loop: the run.
            step: the run's steps so far.
        """

    def on_warm(self, loop: LoopView, images_s: float, step_s: float) -> None:
        """Once per process, five steps after the first (which builds the graph).

        Its time is not counted as training time.

        Args:
            loop: the run.
            images_s: the measured images per second.
            step_s: the measured seconds per step.
        """

    def on_check(self, loop: LoopView, step: int, step_s: float) -> None:
        """Every twentieth of an epoch once warm; may shorten ``loop.steps.total``.

        Not counted as training time.

        Args:
            loop: the run.
            step: the run's steps so far.
            step_s: the mean seconds per step so far this epoch.
        """

    def on_validation_start(self, loop: LoopView) -> None:
        """Before the epoch's validation (writer only).

        May change what the model computes in inference mode (its BatchNorm
        statistics), not its weights.

        Args:
            loop: the run.
        """

    def on_validation_end(self, loop: LoopView, row: Row) -> str | None:
        """After the epoch's validation (writer only): add columns to `row`.

        Args:
            loop: the run.
            row: the epoch's row.

        Returns:
            A string appended to the epoch's log line, or None.
        """
        return None

    def on_epoch_end(self, loop: LoopView, row: Row, result: EpochResult,
                     is_best: bool) -> None:
        """After the epoch's row is logged (writer only).

        Args:
            loop: the run (``loop.epoch`` now counts the epochs done).
            row: the epoch's row.
            result: what the epoch's training measured.
            is_best: the epoch scored the best validation accuracy so far.
        """

    def on_fit_end(self, loop: LoopView, summary: Summary | None) -> None:
        """After the last epoch, on every process.

        Args:
            loop: the run.
            summary: the writer's summary, which takes the extension's fields for
                summary.json; None on other processes.
        """


E = TypeVar('E', bound=type[Extension])

#: The registered extensions, in the order the loop calls them.
REGISTRY: list[type[Extension]] = []


def register(ext: E) -> E:
    """Make `ext` part of every run: its options, its files, its hooks.

    Args:
        ext: the extension class.

    Returns:
        `ext`.

    Raises:
        ValueError: a name or an option that another registered extension has.
    """
    clash = set(ext.options) & (set(EXTENSION_OPTIONS) | set(TrainConfig.__dataclass_fields__))
    if ext.name in {e.name for e in REGISTRY} or clash:
        raise ValueError(f'{ext.__name__}: its name {ext.name!r} or options {sorted(clash)} '
                         'are taken')
    REGISTRY.append(ext)
    EXTENSION_OPTIONS.update(ext.options)
    return ext


def scored_weights(extensions: list[Extension]) -> dict[str, AbstractContextManager[object]]:
    """The weights a run scores at every validation: the model's own (prefix ''), then
    each extension's `Extension.variants`.

    Args:
        extensions: the run's extensions.

    Returns:
        {column prefix: a context in which the model holds those weights}.
    """
    weights: dict[str, AbstractContextManager[object]] = {'': nullcontext()}
    for ext in extensions:
        weights.update(ext.variants())
    return weights


def run_folder_files() -> tuple[str, ...]:
    """Every file a run folder may hold: the loop's and every registered extension's.

    Returns:
        The names.
    """
    return RUN_FILES + tuple(g for cls in REGISTRY for f in cls.files
                             for g in ((f, f + '.json') if f.endswith('.params') else (f,)))
