"""DenseNet-BC and the paper's other configurations, from the book's blocks.

The ImageNet models match the Gluon model zoo's (`densenet121/161/169/201`)
layer for layer, so the zoo's parameter files load into them
(`load_gluon_zoo_parameters`). The CIFAR models follow the paper's Table 2.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import mxnet as mx
from mxnet import init
from mxnet.gluon import nn

from densenet.core import densenet as book
from densenet.core.blocks import DenseBlock, transition_block
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier
from densenet.modes import set_memory_efficient
from densenet.system.mxcompat import load_arrays, load_init

# name: (initial features, growth rate, layers per block), as in the paper's
# Table 1 and the Gluon model zoo.
IMAGENET_CONFIGS: dict[int, tuple[int, int, tuple[int, ...]]] = {
    121: (64, 32, (6, 12, 24, 16)),
    161: (96, 48, (6, 12, 36, 24)),
    169: (64, 32, (6, 12, 32, 32)),
    201: (64, 32, (6, 12, 48, 32)),
}


class DenseNet(CheckedClassifier, book.DenseNet):
    """The book's DenseNet (`densenet.core.DenseNet`, same arguments, layers and values),
    with the input and label checks of `CheckedClassifier`."""


def _bn_relu_convs(dropout: float, *convs: tuple[int, int]) -> nn.HybridSequential:
    """BN -> ReLU -> conv (no bias, same padding) per (channels, kernel) pair [-> dropout]."""
    blk = nn.HybridSequential()
    for channels, kernel in convs:
        blk.add(nn.BatchNorm(), nn.Activation('relu'),
                nn.Conv2D(channels, kernel_size=kernel, padding=kernel // 2, use_bias=False))
    if dropout:
        blk.add(nn.Dropout(dropout))
    return blk


def bottleneck_layer(growth_rate: int, bn_size: int = 4,
                     dropout: float = 0.0) -> nn.HybridSequential:
    """DenseNet-BC's layer: BN -> ReLU -> 1x1 conv to bn_size*k -> BN -> ReLU -> 3x3 conv to k.

    No biases; dropout after each convolution when asked.

    Args:
        growth_rate: k, the channels the layer adds.
        bn_size: the 1x1 convolution's width as a multiple of k.
        dropout: the dropout rate (0: none).

    Returns:
        The layer as a `nn.HybridSequential`.
    """
    return _bn_relu_convs(dropout, (bn_size * growth_rate, 1), (growth_rate, 3))


def plain_layer(growth_rate: int, dropout: float = 0.0) -> nn.HybridSequential:
    """The paper's basic layer: BN -> ReLU -> 3x3 conv (no bias) [-> dropout].

    Args:
        growth_rate: the channels the layer adds.
        dropout: the dropout rate (0: none).

    Returns:
        The layer as a `nn.HybridSequential`.
    """
    return _bn_relu_convs(dropout, (growth_rate, 3))


class DenseNetBC(CheckedClassifier):
    """DenseNet(-BC): stem, dense blocks, compressing transitions, head.

    A `d2l.Classifier` built from the book's `DenseBlock` and `transition_block`,
    with the input and label checks of `CheckedClassifier`.

    Args:
        num_init_features: the stem's output channels.
        growth_rate: k, the channels each dense layer adds.
        block_config: the number of layers of each dense block.
        bottleneck: use the BC layer (1x1 then 3x3 conv) rather than the plain one.
        bn_size: the bottleneck's width as a multiple of k.
        compression: theta: each transition's width is ``floor(theta * channels)``.
        dropout: the dropout rate after each convolution (0: none).
        num_classes: outputs of the final Dense layer.
        in_channels: input channels.
        stem: 'imagenet' (7x7/2 conv and 3x3/2 max pool) or 'cifar' (one 3x3 conv).
        lr: the learning rate `d2l.Trainer` uses.
        memory_efficient: recompute each dense layer in backward (`densenet.modes`).

    Raises:
        ValueError: an unknown `stem`, or `compression` outside (0, 1].
    """

    def __init__(self, num_init_features: int = 64, growth_rate: int = 32,
                 block_config: Sequence[int] = (6, 12, 24, 16), bottleneck: bool = True,
                 bn_size: int = 4, compression: float = 0.5, dropout: float = 0.0,
                 num_classes: int = 1000, in_channels: int = 3, stem: str = 'imagenet',
                 lr: float = 0.1, memory_efficient: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        if stem not in ('imagenet', 'cifar'):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if not 0 < compression <= 1:
            raise ValueError(f'compression must be in (0, 1], got {compression}')
        self.net = nn.HybridSequential()
        if stem == 'imagenet':
            b1 = nn.HybridSequential()
            b1.add(nn.Conv2D(num_init_features, kernel_size=7, strides=2, padding=3,
                             use_bias=False, in_channels=in_channels),
                   nn.BatchNorm(), nn.Activation('relu'),
                   nn.MaxPool2D(pool_size=3, strides=2, padding=1))
        else:
            b1 = nn.Conv2D(num_init_features, kernel_size=3, padding=1, use_bias=False,
                           in_channels=in_channels)
        self.net.add(b1)
        layer = (functools.partial(bottleneck_layer, bn_size=bn_size, dropout=dropout)
                 if bottleneck else functools.partial(plain_layer, dropout=dropout))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            self.net.add(DenseBlock(num_layers, growth_rate, layer=layer))
            channels += num_layers * growth_rate
            if i != len(block_config) - 1:
                channels = int(channels * compression)
                self.net.add(transition_block(channels, use_bias=False))
        self.net.add(nn.BatchNorm(), nn.Activation('relu'),
                     nn.GlobalAvgPool2D(), nn.Dense(num_classes))
        self.net.initialize(init.Xavier())
        self.num_features = channels
        if memory_efficient:
            self.set_memory_efficient(True)

    def set_memory_efficient(self, flag: bool = True) -> DenseNetBC:
        """Recompute each dense layer in backward instead of keeping its outputs.

        See `densenet.modes.set_memory_efficient`.

        Args:
            flag: on (True) or off.

        Returns:
            The model.
        """
        return set_memory_efficient(self, flag)


def transitions(net: nn.HybridSequential) -> list[nn.HybridSequential]:
    """The transition blocks of a DenseNet's network: the blocks that follow a dense block.

    Args:
        net: a model's ``.net``.

    Returns:
        The transitions, in order.
    """
    return [child for before, child in zip(net, list(net)[1:], strict=False)
            if isinstance(before, DenseBlock) and isinstance(child, nn.HybridSequential)]


class TransitionPoolDenseNet(DenseNet):
    """The book's DenseNet with another pooling in its transitions (the chapter's exercise 1).

    `DenseNet` built as the book builds it, then each transition's 2x2 average
    pool replaced, in its place, by `transition_pool`'s (the pooling layer exactly as
    ``transition_block(..., pool=transition_pool)`` builds it): the same layers,
    parameters, initial values and saved names otherwise. ``hparams`` records `transition_pool`, so
    ``type(model)(**model.hparams)`` builds the same model again.

    Args:
        transition_pool: 'max' (or 'avg', which computes what `DenseNet` does).
        num_channels: the channel count that the transition widths start from.
        growth_rate: the channels each dense layer adds.
        arch: the number of layers of each dense block.
        lr: the learning rate `d2l.Trainer` uses.
        num_classes: outputs of the final Dense layer.

    Raises:
        UsageError: `transition_pool` is neither 'avg' nor 'max'.
    """

    def __init__(self, transition_pool: str = 'max', num_channels: int = 64,
                 growth_rate: int = 32, arch: Sequence[int] = (4, 4, 4, 4), lr: float = 0.1,
                 num_classes: int = 10) -> None:
        if transition_pool not in ('avg', 'max'):  # what transition_block's `pool` takes
            raise UsageError(f"transition_pool must be 'avg' or 'max', got {transition_pool!r}")
        super().__init__(num_channels=num_channels, growth_rate=growth_rate, arch=arch,
                         lr=lr, num_classes=num_classes)
        for transition in transitions(self.net):
            pool = transition_block(1, pool=transition_pool)[-1]
            transition.register_child(pool, str(len(transition) - 1))  # same name, same place
        self.transition_pool = self.hparams['transition_pool'] = transition_pool


def densenet_imagenet(depth: int, num_classes: int = 1000, in_channels: int = 3,
                      **kwargs: Any) -> DenseNetBC:
    """DenseNet-BC-`depth` for ImageNet-size inputs, as the Gluon model zoo builds it.

    Args:
        depth: 121, 161, 169 or 201.
        num_classes: outputs of the final Dense layer.
        in_channels: input channels.
        **kwargs: further `DenseNetBC` arguments.

    Returns:
        The model.

    Raises:
        ValueError: another depth.
    """
    if depth not in IMAGENET_CONFIGS:
        raise ValueError(f'no ImageNet DenseNet of depth {depth}; '
                         f'choose one of {sorted(IMAGENET_CONFIGS)}')
    return DenseNetBC(*IMAGENET_CONFIGS[depth], num_classes=num_classes,
                      in_channels=in_channels, **kwargs)


def densenet121(**kwargs: Any) -> DenseNetBC:
    """DenseNet-BC-121 (k=32, blocks 6, 12, 24, 16), the Gluon model zoo's layout.

    Args:
        **kwargs: `densenet_imagenet` arguments (num_classes, in_channels, ...).

    Returns:
        The model.
    """
    return densenet_imagenet(121, **kwargs)


def densenet161(**kwargs: Any) -> DenseNetBC:
    """DenseNet-BC-161 (k=48, blocks 6, 12, 36, 24), the Gluon model zoo's layout.

    Args:
        **kwargs: `densenet_imagenet` arguments (num_classes, in_channels, ...).

    Returns:
        The model.
    """
    return densenet_imagenet(161, **kwargs)


def densenet169(**kwargs: Any) -> DenseNetBC:
    """DenseNet-BC-169 (k=32, blocks 6, 12, 32, 32), the Gluon model zoo's layout.

    Args:
        **kwargs: `densenet_imagenet` arguments (num_classes, in_channels, ...).

    Returns:
        The model.
    """
    return densenet_imagenet(169, **kwargs)


def densenet201(**kwargs: Any) -> DenseNetBC:
    """DenseNet-BC-201 (k=32, blocks 6, 12, 48, 32), the Gluon model zoo's layout.

    Args:
        **kwargs: `densenet_imagenet` arguments (num_classes, in_channels, ...).

    Returns:
        The model.
    """
    return densenet_imagenet(201, **kwargs)


def _cifar(depth: int, growth_rate: int, bottleneck: bool, compression: float,
           num_classes: int, in_channels: int, **kwargs: Any) -> DenseNetBC:
    per_block, rest = divmod(depth - 4, 6 if bottleneck else 3)
    if rest or per_block < 1:
        raise ValueError(f'depth {depth} does not fit 3 blocks: use depth = '
                         f'{"6" if bottleneck else "3"}n + 4 (e.g. 100 or 40)')
    init_features = 2 * growth_rate if bottleneck else 16
    return DenseNetBC(init_features, growth_rate, (per_block,) * 3, bottleneck=bottleneck,
                      compression=compression, num_classes=num_classes,
                      in_channels=in_channels, stem='cifar', **kwargs)


def densenet_bc(depth: int = 100, growth_rate: int = 12, num_classes: int = 10,
                in_channels: int = 3, **kwargs: Any) -> DenseNetBC:
    """The paper's CIFAR DenseNet-BC: 3 blocks of bottleneck layers, theta = 0.5.

    Args:
        depth: the layer count, 6n + 4 (100 gives 16 layers per block).
        growth_rate: k.
        num_classes: outputs of the final Dense layer.
        in_channels: input channels.
        **kwargs: further `DenseNetBC` arguments.

    Returns:
        The model.

    Raises:
        ValueError: a depth that is not 6n + 4.
    """
    return _cifar(depth, growth_rate, True, 0.5, num_classes, in_channels, **kwargs)


def densenet(depth: int = 40, growth_rate: int = 12, num_classes: int = 10,
             in_channels: int = 3, **kwargs: Any) -> DenseNetBC:
    """The paper's plain CIFAR DenseNet: 3 blocks of 3x3 layers, no compression.

    Args:
        depth: the layer count, 3n + 4 (40 gives 12 layers per block).
        growth_rate: k.
        num_classes: outputs of the final Dense layer.
        in_channels: input channels.
        **kwargs: further `DenseNetBC` arguments.

    Returns:
        The model.

    Raises:
        ValueError: a depth that is not 3n + 4.
    """
    return _cifar(depth, growth_rate, False, 1.0, num_classes, in_channels, **kwargs)


def load_gluon_zoo_parameters(model: CheckedClassifier, path: str,
                              ctx: mx.Context | list[mx.Context] | None = None,
                              ) -> CheckedClassifier:
    """Load a file saved from ``gluon.model_zoo.vision.densenetN`` into `model`.

    The zoo and this library build the same layers in the same order, so the
    parameters are matched by position and checked by shape.

    Args:
        model: a DenseNet-121/161/169/201 of this library.
        path: the zoo's params file.
        ctx: the devices to load onto (default: the model's).

    Returns:
        The model.

    Raises:
        ValueError: the file holds no named parameters, another number of them, or
            a parameter of another shape (another depth, channel or class count).
    """
    saved = load_arrays(path)  # zoo files hold legacy arrays
    if not isinstance(saved, dict):
        raise ValueError(f'{path} holds no named parameters; save the zoo model with '
                         'net.save_parameters(path)')
    saved = [(k.split(':', 1)[-1], v) for k, v in saved.items()]
    ours = list(model.net.collect_params().items())
    if len(saved) != len(ours):
        raise ValueError(f'{path} holds {len(saved)} parameters, this model has {len(ours)}: '
                         'load it into the model of the same depth (densenet121/161/169/201) '
                         'with num_classes matching the file')
    for (zoo_name, value), (name, param) in zip(saved, ours, strict=True):
        if min(param.shape) > 0 and tuple(value.shape) != param.shape:  # a known shape
            raise ValueError(f'{path}: parameter {zoo_name} has shape {value.shape}, but {name} '
                             f'here is {param.shape}: the file is from another DenseNet '
                             'depth, input channel count or class count')
    ctx = ctx or model.net.collect_params().list_ctx()
    for (_, value), (_, param) in zip(saved, ours, strict=True):
        load_init(param, value.as_np_ndarray(), ctx)
    return model
