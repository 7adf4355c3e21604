"""Everything a run builds before its first step: the data, the model (fresh, or started
from a params file, with frozen features), the optimizer, the resume check."""
from __future__ import annotations

import os
from collections.abc import Callable

import mxnet as mx
from mxnet import gluon

from densenet.data import DataModule, open_data
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.models.meta import Meta
from densenet.models.params import build, describe, load_parameters, shape_args
from densenet.models.registry import default_cfg, get_model
from densenet.models.variants import load_gluon_zoo_parameters
from densenet.modes import dense_blocks
from densenet.train.config import TrainConfig
from densenet.train.run_folder import Checkpoint


def make_data(cfg: TrainConfig,
              shard: tuple[int, int] | None = None) -> DataModule:
    """The data module `cfg` names: an ImageFolder for --data, else Fashion-MNIST.

    Args:
        cfg: the configuration.
        shard: (i, n): a distributed worker's part of the training images.

    Returns:
        The data module.

    Raises:
        UsageError: a folder that cannot be trained on, or data that is not there.
    """
    return open_data(cfg.batch_size, cfg.resize, cfg.data, root=cfg.data_dir,
                     channels=cfg.channels, val_split=cfg.val_split, seed=cfg.seed,
                     augment=cfg.augment, limit=cfg.limit, val_limit=cfg.val_limit,
                     shard=shard, holdout=cfg.holdout, erase=cfg.erase,
                     skip_bad_images=cfg.skip_bad_images)


def build_model(cfg: TrainConfig, channels: int = 1,
                num_classes: int = 10) -> CheckedClassifier:
    """The registered model `cfg.model`, initialised.

    Args:
        cfg: the configuration (``model``, ``model_args``, ``memory_efficient``).
        channels: input channels.
        num_classes: the class count.

    Returns:
        The model.

    Raises:
        UsageError: an unknown model name or argument, or --memory-efficient for a
            model without dense blocks.
    """
    model = get_model(cfg.model, lr=cfg.lr, in_channels=channels, num_classes=num_classes,
                      **cfg.model_args)
    if cfg.memory_efficient and not dense_blocks(model.net):
        raise UsageError(f'--memory-efficient recomputes the layers of dense blocks, and '
                         f'{cfg.model} has none: train it without --memory-efficient')
    return model


def run_metadata(cfg: TrainConfig, model: CheckedClassifier, data: DataModule) -> Meta:
    """What every params file of the run says about its model (models/params.py).

    For --data it includes the image folder and its split, so that ``densenet
    evaluate`` rebuilds the held-out part.

    Args:
        cfg: the configuration.
        model: the model.
        data: the data module (its class names and name).

    Returns:
        The metadata dict.
    """
    meta = describe(model, cfg.resize, list(data.classes), data.name, recipe=cfg.recipe,
                    seed=cfg.seed)
    if cfg.data:
        meta['data'] = {'root': os.path.abspath(cfg.data), 'val_split': cfg.val_split,
                        'seed': cfg.seed}
    return meta


def initialize_from(model: CheckedClassifier, path: str, ctxs: list[mx.Context],
                    log: Callable[[str], None] = print) -> None:
    """Start `model` from the params file `path` (a new classifier if the class counts differ).

    Args:
        model: the model.
        path: this library's params file (saved either way) or a Gluon model-zoo file.
        ctxs: the devices.
        log: where notes go.

    Raises:
        UsageError: a file of another architecture.
    """
    shapes = shape_args(path)
    source = build({'model': model.registry_name, 'kwargs': model.registry_kwargs}, **shapes)
    try:
        load_parameters(source, path)
    except UsageError:
        if default_cfg(model.registry_name).dataset != 'imagenet':
            raise
        load_gluon_zoo_parameters(source, path)  # its own clear error if this fails too
    theirs, mine = source.classifier_params(), model.classifier_params()
    head_kept = [p.shape for p in theirs.values()] == [p.shape for p in mine.values()]
    skip = set() if head_kept else set(theirs.values())
    for src, dst in zip(source.net.collect_params().values(),
                        model.net.collect_params().values(), strict=True):
        if src not in skip:
            if src.shape != dst.shape:
                raise UsageError(f'--init {path}: parameter shapes {src.shape} and {dst.shape} '
                                 f'differ: the file is not a {model.registry_name} with these '
                                 'settings (check --model, --model-arg and the channel count)')
            dst.set_data(src.data().copyto(dst.list_ctx()[0]))
    log(f'initialised from {path}' + ('' if head_kept else
        f' (its {shapes["num_classes"]}-class classifier replaced by a new '
        f'{model.net[-1].weight.shape[0]}-class one)'))


def freeze_features(model: CheckedClassifier) -> None:
    """Train only the classifier: every other parameter stops taking gradients.

    Args:
        model: the model.
    """
    head = set(model.classifier_params().values())
    for p in model.net.collect_params().values():
        if p not in head:
            p.grad_req = 'null'


def trained_params(model: CheckedClassifier, cfg: TrainConfig) -> list[gluon.Parameter]:
    """The parameters SGD updates, in the order the network holds them.

    A `gluon.Trainer` given a dict sorts it by parameter name, and Gluon's names
    carry per-process counters (``conv2d20_weight`` for the second model built in a
    process): the optimizer states of a checkpoint would then belong to other
    parameters when a run resumes in a process that built another model first. The
    network's order does not depend on the names.

    Args:
        model: the model.
        cfg: the configuration (``freeze_features``).

    Returns:
        The parameters.
    """
    params = (model.classifier_params() if cfg.freeze_features
              else model.net.collect_params())
    return list(params.values())


def make_trainer(model: CheckedClassifier, cfg: TrainConfig,
                 kvstore: str | mx.kvstore.KVStore) -> gluon.Trainer:
    """SGD over the parameters that train (only the classifier's with --freeze-features).

    Args:
        model: the model.
        cfg: the configuration (``lr``, ``momentum``, ``wd``).
        kvstore: the gradient aggregation (a name or a KVStore).

    Returns:
        The `gluon.Trainer`, its parameters in the network's order (`trained_params`).
    """
    return gluon.Trainer(trained_params(model, cfg), 'sgd',
                         {'learning_rate': cfg.lr, 'momentum': cfg.momentum, 'wd': cfg.wd},
                         kvstore=kvstore)


def check_resumable(state: Checkpoint, cfg: TrainConfig) -> None:
    """Check that the checkpoint was written with these settings.

    Args:
        state: the checkpoint's record.
        cfg: this run's configuration.

    Raises:
        UsageError: a setting that differs (the message lists them).
    """
    # Options of extensions registered after the checkpoint was written take their defaults.
    now = cfg.as_dict()
    saved = {**TrainConfig().as_dict(), **state['config'], 'out': cfg.out, 'resume': cfg.resume,
             'overwrite': cfg.overwrite}
    if saved != now:
        diff = sorted(k for k in saved if saved[k] != now.get(k))
        raise UsageError(f'--resume: {cfg.out} was started with other settings '
                         f'({", ".join(diff)}); rerun with the same flags or a new --out')
