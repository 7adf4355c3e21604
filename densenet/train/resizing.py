"""Progressive resizing: the first part of a run trains on smaller images, the rest (and
every evaluation) at the run's side. A step's cost falls about with the square of the
side, so a slow machine fits more epochs into the same time."""
import math


def early_epochs(epochs, fraction):
    """How many of a run's first `epochs` epochs train at the small side."""
    return math.floor(fraction * epochs)


def side_for_epoch(cfg, epoch, epochs, sides_so_far=()):
    """The training side of `epoch` (0-based) in a run planned for `epochs`: the small
    side (`cfg.progressive`) for the first `cfg.progressive_until` of the epochs, then
    `cfg.resize`. A run that has trained at the full side stays there, even when a budget
    re-plans to more epochs. (A budgeted run chooses its first epoch's side before it has
    a plan, from the --epochs cap.)"""
    if not cfg.progressive or cfg.resize in sides_so_far:
        return cfg.resize
    return cfg.progressive if epoch < early_epochs(epochs, cfg.progressive_until) else cfg.resize
