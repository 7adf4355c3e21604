"""The options of a run that are not the loop itself, each an `Extension` (base.py),
registered here in the order the loop calls them.

`default_extensions` makes the ones a configuration asks for.
"""
from __future__ import annotations

from densenet.train.config import TrainConfig
from densenet.train.extensions.base import REGISTRY, Extension, Process, register, run_folder_files
from densenet.train.extensions.budget import BudgetPlanner
from densenet.train.extensions.ema import WeightAveraging, WeightEMA
from densenet.train.extensions.flip import FlipAveragedScores
from densenet.train.extensions.precise_bn import PreciseBatchNorm
from densenet.train.extensions.progressive import ProgressiveResizing
from densenet.train.extensions.run_files import Checkpoints, EpochFiles
from densenet.train.extensions.speed import SpeedNote

for extension in (ProgressiveResizing, PreciseBatchNorm, WeightAveraging, EpochFiles, Checkpoints,
                  BudgetPlanner,  # after the files: an epoch's cost includes writing them
                  SpeedNote,  # after the budget: it tells the planned run's length
                  FlipAveragedScores):
    register(extension)


def default_extensions(cfg: TrainConfig, writer: bool = True, dist: bool = False,
                       quiet: bool = False) -> list[Extension]:
    """The registered extensions `cfg` asks for, in the order the loop calls them.

    Args:
        cfg: the configuration.
        writer: this process writes the run folder (rank 0).
        dist: a dist kvstore (no checkpoints: MXNet cannot save its optimizer states).
        quiet: no speed note (on a GPU, or a worker that is not rank 0).

    Returns:
        The extensions.
    """
    process = Process(writer, dist, quiet)
    return [ext for cls in REGISTRY if (ext := cls.create(cfg, process)) is not None]


__all__ = ['Extension', 'default_extensions', 'register', 'run_folder_files', 'BudgetPlanner',
           'WeightAveraging', 'WeightEMA', 'FlipAveragedScores', 'PreciseBatchNorm',
           'ProgressiveResizing', 'Checkpoints', 'EpochFiles', 'SpeedNote']
