"""What a training step minimises and how it runs the model: the loss, the learning-rate
schedule, and the forward pass with frozen features."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from mxnet import autograd, npx

from densenet.errors import Diverged
from densenet.models.classifier import CheckedClassifier
from densenet.system.hints import Array

if TYPE_CHECKING:
    from densenet.train.config import TrainConfig


def smoothed_loss(Y_hat: Array, y: Array, eps: float) -> Array:
    """Per-example cross-entropy against labels smoothed by `eps`.

    The target puts 1 - eps on the label and eps spread evenly over all
    classes; eps = 0 is the book's softmax cross-entropy.

    Args:
        Y_hat: the logits, (N, classes).
        y: the labels, (N,).
        eps: the label smoothing.

    Returns:
        The losses, (N,).
    """
    logp = npx.log_softmax(Y_hat, axis=1)
    nll = -npx.pick(logp, y, axis=1)
    return (1 - eps) * nll - eps * logp.mean(axis=1)


def make_loss(model: CheckedClassifier, cfg: TrainConfig) -> Callable[[Array, Array], Array]:
    """The per-example loss of a run: the book's (d2l.Classifier.loss), or label-smoothed.

    Args:
        model: the model.
        cfg: the configuration (its ``label_smoothing``).

    Returns:
        loss(logits, labels) -> per-example losses.
    """
    def loss_fn(Y_hat: Array, y: Array) -> Array:
        if not cfg.label_smoothing:
            return model.loss(Y_hat, y, averaged=False)
        model.check_labels(y)
        return smoothed_loss(Y_hat, y, cfg.label_smoothing)
    return loss_fn


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of `step` (0-based) in a run of `total_steps`.

    Args:
        cfg: the configuration (``lr``, ``schedule``).
        step: the step.
        total_steps: the run's steps.

    Returns:
        ``cfg.lr`` for a constant schedule, else the cosine from ``cfg.lr`` to 0.
    """
    if cfg.schedule == 'cosine':
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    return cfg.lr


def forward_train(model: CheckedClassifier, X: Array, frozen: bool) -> Array:
    """Logits of a training batch.

    Args:
        model: the model.
        X: the batch.
        frozen: only the classifier trains: the features come from inference-mode
            BatchNorm (its statistics stay as loaded) and are not recorded.

    Returns:
        The logits.
    """
    if not frozen:
        return model(X)
    with autograd.pause(train_mode=False):
        features = model.forward_features(X)
    return model.net[-1](features)


def loss_limit(num_classes: int) -> float:
    """The per-image loss above which a run has diverged.

    Guessing uniformly costs ln(classes) per image; a run whose loss is a hundred
    times that has left training behind, so it stops rather than save it.

    Args:
        num_classes: the class count.

    Returns:
        100 x ln(num_classes).
    """
    return 100 * math.log(max(num_classes, 2))


def diverged(what: str, epoch: int, lr: float) -> Diverged:
    """The error that stops a diverged run, naming where and the fix.

    Args:
        what: what went wrong.
        epoch: the epoch (0-based).
        lr: the learning rate at that point.

    Returns:
        The `Diverged` error, for the caller to raise.
    """
    return Diverged(f'training diverged: {what} in epoch {epoch + 1} at learning rate {lr:.4g}; '
                    'nothing from this epoch was written (the last checkpoint, if any, is '
                    f'intact). Try a lower --lr (e.g. --lr {lr / 10:.3g}), and check the data')
