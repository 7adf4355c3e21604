"""Named recipes: sets of `TrainConfig` values that ``--recipe`` applies before the flags.

``book`` is the d2l chapter's recipe (the configuration's own defaults);
``fast-cpu`` reaches a higher accuracy on a 2-core CPU within an hour: 64x64
inputs, momentum SGD with weight decay on a cosine schedule, augmentation,
label smoothing, a 60-minute budget that the run plans itself into, and
flip-averaged scores at the end. The docs' results pages give what each
recipe measured, per machine.
"""
from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    'book': dict(epochs=10, batch_size=128, resize=96, lr=0.01, momentum=0.0, wd=0.0,
                 schedule='constant', augment=False),
    'fast-cpu': dict(epochs=23, batch_size=128, resize=64, lr=0.1, momentum=0.9, wd=5e-4,
                     schedule='cosine', augment=True, label_smoothing=0.1, budget=3600.0,
                     tta=True),
}


def recipe_table() -> list[tuple[str, dict[str, Any]]]:
    """Every recipe and the values it sets, for the reference docs.

    Returns:
        (name, the values it sets) per recipe.
    """
    return [(name, dict(values)) for name, values in RECIPES.items()]
