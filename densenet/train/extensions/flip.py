"""--tta as an extension: the final model (and its weight average, with --ema) scored with
logits averaged over each image and its mirror image."""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from densenet.models.tta import FlipAverage
from densenet.train.evaluate import evaluate
from densenet.train.extensions.base import Extension
from densenet.train.extensions.ema import WeightAveraging

if TYPE_CHECKING:
    from densenet.train.loop import Loop


class FlipAveragedScores(Extension):
    """``--tta``: adds final_val_acc_tta (and final_ema_val_acc_tta) to summary.json."""

    def on_fit_end(self, loop: Loop, summary: dict[str, Any] | None) -> None:
        if summary is None:
            return
        averaging = loop.find(WeightAveraging)
        weights: dict[str, Any] = {'final_val_acc_tta': nullcontext()}
        if averaging is not None:
            weights['final_ema_val_acc_tta'] = averaging.average.applied()
        scores = {}
        for key, applied in weights.items():
            with applied:
                scores[key] = evaluate(FlipAverage(loop.model), loop.val_loader, loop.ctxs)[1]
        loop.log('flip-averaged (--tta): ' + ', '.join(f'{k} {v:.4f}' for k, v in scores.items()))
        summary.update(scores)
