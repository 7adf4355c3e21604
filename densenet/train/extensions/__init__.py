"""The options of a run that are not the loop itself, each an `Extension` (base.py).

`default_extensions` lists the ones a configuration asks for, in the order the
loop calls them.
"""
from __future__ import annotations

from typing import Any

from densenet.train.extensions.base import Extension
from densenet.train.extensions.budget import BudgetPlanner
from densenet.train.extensions.ema import WeightAveraging, WeightEMA
from densenet.train.extensions.flip import FlipAveragedScores
from densenet.train.extensions.precise_bn import PreciseBatchNorm
from densenet.train.extensions.progressive import ProgressiveResizing
from densenet.train.extensions.run_files import Checkpoints, EpochFiles, RankParams
from densenet.train.extensions.speed import SpeedNote


def default_extensions(cfg: Any, writer: bool = True, dist: bool = False,
                       quiet: bool = False) -> list[Extension]:
    """The extensions `cfg` asks for, in the order the loop calls them.

    Args:
        cfg: the configuration.
        writer: this process writes the run folder (rank 0).
        dist: a dist kvstore (no checkpoints: MXNet cannot save its optimizer states).
        quiet: no speed note (on a GPU, or a worker that is not rank 0).

    Returns:
        The extensions.
    """
    exts: list[Extension] = []
    if cfg.progressive:
        exts.append(ProgressiveResizing())
    if writer and not cfg.freeze_features:  # frozen features keep the statistics they had
        exts.append(PreciseBatchNorm(cfg.precise_bn))
    if cfg.ema:
        exts.append(WeightAveraging(cfg.ema))
    if writer:
        exts.append(EpochFiles())
        if not dist:
            exts.append(Checkpoints())
    if cfg.budget:
        exts.append(BudgetPlanner())  # after the files: an epoch's cost includes writing them
    if not quiet:
        exts.append(SpeedNote())  # after the budget: it tells the planned run's length
    if cfg.tta and writer:
        exts.append(FlipAveragedScores())
    if cfg.rank_params:
        exts.append(RankParams(cfg.rank_params))
    return exts


__all__ = ['Extension', 'default_extensions', 'BudgetPlanner', 'WeightAveraging', 'WeightEMA',
           'FlipAveragedScores', 'PreciseBatchNorm', 'ProgressiveResizing', 'Checkpoints',
           'EpochFiles', 'RankParams', 'SpeedNote']
