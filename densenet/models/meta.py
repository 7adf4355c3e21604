"""The metadata beside every params file the package writes (``X.params.json``)."""
from __future__ import annotations

from typing import Any, TypedDict

from densenet.system.machine import Machine


class RunData(TypedDict, total=False):
    """The image folder a run trained on, and how it split it."""

    root: str
    val_split: float
    seed: int


class Meta(TypedDict, total=False):
    """A params file's metadata (``X.params.json``): how to rebuild and feed its model.

    `describe` writes the first eight fields; training adds the run's (recipe, seed,
    epoch, data), and the shipped weights' file how they were made and measured.
    """

    format: int
    model: str
    kwargs: dict[str, Any]     # the registry builder's keyword arguments
    input_size: int
    channels: int
    classes: list[str]
    dataset: str | None
    preprocess: dict[str, object]  # `Preprocess.steps`
    recipe: str | None
    seed: int
    epoch: int
    data: RunData
    command: str
    commit: str
    trained_by: str
    test_accuracy: float
    train_wall_s: float
    sha256: str
    machine: Machine
    config: dict[str, object]
