"""--tta as an extension: the final model (and the other weights the run scores, its
extensions' `variants`) scored with logits averaged over each image and its mirror image."""
from __future__ import annotations

from densenet.models.tta import FlipAverage
from densenet.train.config import TrainConfig
from densenet.train.evaluate import evaluate
from densenet.train.extensions.base import Extension, LoopView, Process, Summary, scored_weights


class FlipAveragedScores(Extension):
    """``--tta``: adds final_val_acc_tta (and final_PREFIXval_acc_tta for each of the
    other extensions' `variants`) to summary.json."""
    name = 'tta'

    @classmethod
    def create(cls, cfg: TrainConfig, process: Process) -> FlipAveragedScores | None:
        return cls() if cfg.tta and process.writer else None

    def final_passes(self, scored: int) -> int:
        return 2 * scored  # each image and its mirror image

    def on_fit_end(self, loop: LoopView, summary: Summary | None) -> None:
        if summary is None:
            return
        scores = {}
        for prefix, applied in scored_weights(loop.extensions).items():
            with applied:
                scores[f'final_{prefix}val_acc_tta'] = evaluate(
                    FlipAverage(loop.model), loop.val_loader, loop.ctxs)[1]
        loop.log('flip-averaged (--tta): ' + ', '.join(f'{k} {v:.4f}' for k, v in scores.items()))
        summary.update(scores)
