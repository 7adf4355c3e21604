"""The book's ResNet-18 (``d2l.resnet18``) as a baseline that every tool takes.

``d2l.resnet18(num_classes)`` returns an ``nn.Sequential`` of ``d2l.Residual``
blocks, which compute imperatively only (``npx.relu`` in ``forward``), so it
can be neither hybridized nor exported. `D2LResNet18` builds d2l's network,
puts each of its layers, unchanged, into HybridBlocks that compute what
``d2l.Residual.forward`` computes (`hybridizable`), and wraps that network as a
`CheckedClassifier`, like the DenseNet models. The saved parameter names are
those of d2l's own network (``3.0.conv1.weight``...), so its files load
either way.
"""
from __future__ import annotations

from d2l import mxnet as d2l
from mxnet import init
from mxnet.gluon import nn

from densenet.models.classifier import CheckedClassifier
from densenet.system.hints import ArrayOrSymbol, OpNamespace

#: The channels of d2l.resnet18's last stage: the features entering its Dense layer.
RESNET18_FEATURES = 512


class HybridResidual(nn.HybridBlock):
    """``d2l.Residual``'s computation, hybridizable, on that block's own layers.

    ``relu(bn2(conv2(relu(bn1(conv1(X))))) + X')``, where ``X'`` is ``conv3(X)``
    (the 1x1 shortcut) when the block has one and ``X`` otherwise.

    Args:
        residual: the d2l block whose layers (``conv1``, ``conv2``, ``conv3``, ``bn1``,
            ``bn2``) it takes over, under the same names.
    """

    def __init__(self, residual: d2l.Residual) -> None:
        super().__init__()
        # Registered in d2l.Residual's order, so parameters list in the same order.
        for name in ('conv1', 'conv2', 'conv3', 'bn1', 'bn2'):
            setattr(self, name, getattr(residual, name))

    def hybrid_forward(self, F: OpNamespace, X: ArrayOrSymbol) -> ArrayOrSymbol:
        # npx.activation is npx.relu's operator for nn.Activation('relu'): the same
        # values, and one that every exporter knows.
        Y = F.npx.activation(self.bn1(self.conv1(X)), act_type='relu')
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.npx.activation(Y + X, act_type='relu')


def hybridizable(block: nn.Block) -> nn.HybridBlock:
    """`block` with its d2l.Residual blocks and Sequential containers made hybridizable.

    Args:
        block: a layer, a ``d2l.Residual`` or an ``nn.Sequential`` of them.

    Returns:
        The same layers in HybridBlocks: each ``Sequential`` a ``HybridSequential``,
        each ``d2l.Residual`` a `HybridResidual`, the other layers themselves.

    Raises:
        TypeError: a block that is none of these.
    """
    if isinstance(block, d2l.Residual):
        return HybridResidual(block)
    if isinstance(block, nn.Sequential):
        seq = nn.HybridSequential()
        seq.add(*(hybridizable(child) for child in block))
        return seq
    if isinstance(block, nn.HybridBlock):
        return block
    raise TypeError(f'{type(block).__name__} is not hybridizable')


class D2LResNet18(CheckedClassifier):
    """d2l's ResNet-18 (``d2l.resnet18``) as a `d2l.Classifier`, the DenseNet's baseline.

    The network is ``d2l.resnet18(num_classes)``'s (a 3x3 stem
    with 64 channels, BatchNorm and ReLU, no max pool; four stages of two residual
    blocks, 64, 128, 256 and 512 channels, the last three halving the side; global
    average pooling and a Dense layer), its layers in hybridizable containers
    (`hybridizable`), initialised with Xavier as the book's DenseNet is; its stem
    learns the input channels from the first batch.

    Args:
        num_classes: outputs of the final Dense layer.
        lr: the learning rate `d2l.Trainer` uses (`configure_optimizers`).
    """

    def __init__(self, num_classes: int = 10, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = hybridizable(d2l.resnet18(num_classes))
        self.net.initialize(init.Xavier())
        self.num_features = RESNET18_FEATURES  # width entering the final Dense
