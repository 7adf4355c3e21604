"""Every DenseNet of the library by name, each with its default input (timm's default_cfg).

`get_model(name, **kwargs)` builds one; `default_cfg(name)` says what it
expects by default (input side, channels, classes) and where that comes from.
The constants every tool needs (96x96, 1 channel, 10 classes for the book)
live here and in `densenet.data`.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

from densenet.data.shapes import fix_shapes
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier, min_input_size
from densenet.models.resnet import D2LResNet18
from densenet.models.variants import (
    DenseNet,
    DenseNetBC,
    TransitionPoolDenseNet,
    densenet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet_bc,
)


@dataclasses.dataclass(frozen=True)
class ModelCfg:
    """What a registered model is and what input it expects by default.

    Attributes:
        name: the registry name.
        build: the constructor; keyword arguments pass through.
        input_size: the side it is usually trained at.
        channels: input channels by default.
        num_classes: classes by default.
        dataset: what the defaults are for.
        params: the published trainable-parameter count at these defaults, if any.
        params_unit: its rounding (the paper gives the CIFAR models to 0.1M).
        kwargs: fixed constructor arguments, (name, value) pairs.
        doc: one line that says what the model is.
    """
    name: str
    build: Callable[..., CheckedClassifier]  # the constructor; keyword arguments pass through
    input_size: int          # the side it is usually trained at
    channels: int
    num_classes: int
    dataset: str             # what the defaults are for
    params: float | None = None  # published trainable-parameter count at these defaults, if any
    params_unit: float = 1       # its rounding (the paper gives the CIFAR models to 0.1M)
    kwargs: tuple[tuple[str, Any], ...] = ()  # fixed constructor arguments, (name, value) pairs
    doc: str = ''

    @functools.cached_property
    def min_input_size(self) -> int:
        """The smallest side its pooling stages accept, traced from its layers."""
        return min_input_size(self.build(**dict(self.kwargs)).net)


def _book(num_classes: int = 10, in_channels: int = 1,
          transition_pool: str = 'avg', **kwargs: Any) -> DenseNet:
    """The book's DenseNet; its stem learns `in_channels` from the first batch.

    With ``transition_pool='max'`` its transitions max-pool (the chapter's first
    exercise); with the default 'avg' it is `DenseNet` itself.
    """
    if transition_pool == 'avg':
        return DenseNet(num_classes=num_classes, **kwargs)
    return TransitionPoolDenseNet(transition_pool, num_classes=num_classes, **kwargs)


def _d2l_resnet18(num_classes: int = 10, in_channels: int = 1, **kwargs: Any) -> D2LResNet18:
    """d2l's ResNet-18; its stem learns `in_channels` from the first batch."""
    return D2LResNet18(num_classes=num_classes, **kwargs)


MODELS: dict[str, ModelCfg] = {cfg.name: cfg for cfg in [
    ModelCfg('book', _book, 96, 1, 10, 'fashion-mnist',
             doc="the book's DenseNet (d2l 8.7), unchanged: 4 blocks of 4 layers, k=32, "
                 "average pooling in the transitions (the option transition_pool='max' "
                 "max-pools)"),
    ModelCfg('densenet121', densenet121, 224, 3, 1000, 'imagenet', 7_978_856,
             doc='DenseNet-BC-121 (k=32), the Gluon zoo layout'),
    ModelCfg('densenet161', densenet161, 224, 3, 1000, 'imagenet', 28_681_000,
             doc='DenseNet-BC-161 (k=48)'),
    ModelCfg('densenet169', densenet169, 224, 3, 1000, 'imagenet', 14_149_480,
             doc='DenseNet-BC-169 (k=32)'),
    ModelCfg('densenet201', densenet201, 224, 3, 1000, 'imagenet', 20_013_928,
             doc='DenseNet-BC-201 (k=32)'),
    ModelCfg('densenet_bc_100', densenet_bc, 32, 3, 10, 'cifar', 0.8e6, 0.1e6,
             kwargs=(('depth', 100), ('growth_rate', 12)),
             doc='DenseNet-BC (L=100, k=12), the paper\'s CIFAR model; depth= and '
                 'growth_rate= give any other BC depth (6n+4) and k'),
    ModelCfg('densenet_40', densenet, 32, 3, 10, 'cifar', 1.0e6, 0.1e6,
             kwargs=(('depth', 40), ('growth_rate', 12)),
             doc='DenseNet (L=40, k=12), plain layers; depth= (3n+4) and growth_rate= vary it'),
    ModelCfg('d2l_resnet18', _d2l_resnet18, 96, 1, 10, 'fashion-mnist',
             doc="the book's ResNet-18 (d2l.resnet18: 3x3 stem, no max pool), the "
                 'baseline the DenseNet is compared with'),
]}


# The class that a builder's other keyword arguments reach (the others': DenseNetBC).
PASSED_TO: dict[Callable[..., CheckedClassifier], type] = {
    _book: DenseNet, _d2l_resnet18: D2LResNet18}

# DenseNetBC arguments that the depth-named builders set themselves.
FIXED_BY_FAMILY: dict[str, tuple[str, ...]] = {
    'imagenet': ('num_init_features', 'growth_rate', 'block_config'),
    'cifar': ('num_init_features', 'block_config', 'bottleneck', 'compression', 'stem'),
}


def list_models() -> list[str]:
    """The registered names, in the registry's order.

    Returns:
        The names.
    """
    return list(MODELS)


def default_cfg(name: str) -> ModelCfg:
    """What the registered model `name` is and expects by default.

    Args:
        name: a registry name.

    Returns:
        Its `ModelCfg`.

    Raises:
        UsageError: `name` is not registered (the message lists the names).
    """
    if name not in MODELS:
        raise UsageError(f'no model named {name!r}; choose one of {", ".join(MODELS)}')
    return MODELS[name]


def constructor_args(name: str) -> list[str]:
    """The keyword arguments `get_model(name, ...)` accepts.

    Args:
        name: a registry name.

    Returns:
        The argument names, sorted, ``in_channels`` and ``num_classes`` included.

    Raises:
        UsageError: `name` is not registered.
    """
    cfg = default_cfg(name)
    fixed = FIXED_BY_FAMILY.get(cfg.dataset, ())  # what the depth-named builders set
    passed = inspect.signature(PASSED_TO.get(cfg.build, DenseNetBC)).parameters
    names = set(inspect.signature(cfg.build).parameters) | {p for p in passed if p not in fixed}
    return sorted((names - {'kwargs'}) | {'in_channels', 'num_classes'})


def model_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` completed with the name's fixed arguments and default channels/classes.

    Args:
        name: a registry name.
        kwargs: the caller's constructor arguments.

    Returns:
        The full constructor arguments.

    Raises:
        UsageError: `name` is not registered, or takes no argument of that name.
    """
    cfg = default_cfg(name)
    allowed = constructor_args(name)
    if unknown := sorted(set(kwargs) - set(allowed)):
        raise UsageError(f'{name} takes no argument {", ".join(unknown)}; it takes '
                         f'{", ".join(allowed)}')
    return {**dict(cfg.kwargs), 'in_channels': cfg.channels, 'num_classes': cfg.num_classes,
            **kwargs}


def get_model(name: str, **kwargs: Any) -> CheckedClassifier:
    """Build the registered model `name`, e.g. ``get_model('densenet_bc_100', in_channels=1)``.

    Every deferred shape is fixed (one forward pass of zeros at the smallest
    side), so parameters can be counted and loaded at once.

    Args:
        name: a registry name (`list_models`).
        **kwargs: constructor arguments; they override the defaults (`ModelCfg`).

    Returns:
        The model, initialised.

    Raises:
        UsageError: an unknown name or argument (the message lists the choices).
    """
    full = model_kwargs(name, kwargs)
    model = default_cfg(name).build(**full)
    model.registry_name, model.registry_kwargs = name, full
    # The Xavier draws depend on shapes only, so fixing them at the smallest side
    # gives the same values as at any other.
    fix_shapes(model.net, model.min_input_size(), full['in_channels'])
    return model
