"""The book's DenseNet (d2l, section 8.7): a d2l.Classifier built from the blocks."""
from __future__ import annotations

from collections.abc import Sequence

from d2l import mxnet as d2l
from mxnet import init
from mxnet.gluon import nn

from densenet.core.blocks import DenseBlock, transition_block


class DenseNet(d2l.Classifier):
    """DenseNet as d2l builds it: stem, dense blocks with transitions, head.

    A `d2l.Classifier`; `densenet.DenseNet` is this model with input and label
    checks (`densenet.models.classifier`). Kept from the book on purpose: the
    stem always has 64 channels whatever `num_channels` is (`num_channels` only
    seeds the running channel count that sets the transition widths), and the
    default ``lr=0.1`` although the book trains with ``DenseNet(lr=0.01)``.

    Args:
        num_channels: the channel count that the transition widths start from.
        growth_rate: the channels each dense layer adds.
        arch: the number of layers of each dense block.
        lr: the learning rate `d2l.Trainer` uses (`configure_optimizers`).
        num_classes: outputs of the final Dense layer.
    """

    def b1(self) -> nn.HybridSequential:
        """The book's stem: 7x7 convolution with 64 channels, BatchNorm, ReLU, 3x3 max pool.

        Returns:
            The stem as a `nn.HybridSequential`.
        """
        net = nn.HybridSequential()
        net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
                nn.BatchNorm(), nn.Activation('relu'),
                nn.MaxPool2D(pool_size=3, strides=2, padding=1))
        return net

    def __init__(self, num_channels: int = 64, growth_rate: int = 32,
                 arch: Sequence[int] = (4, 4, 4, 4), lr: float = 0.1,
                 num_classes: int = 10) -> None:
        super(DenseNet, self).__init__()  # noqa: UP008  (the book's line)
        self.save_hyperparameters()
        self.net = nn.HybridSequential()
        self.net.add(self.b1())
        for i, num_convs in enumerate(arch):
            self.net.add(DenseBlock(num_convs, growth_rate))
            # The number of output channels in the previous dense block
            num_channels += num_convs * growth_rate
            # A transition layer that halves the number of channels is added
            # between the dense blocks
            if i != len(arch) - 1:
                num_channels //= 2
                self.net.add(transition_block(num_channels))
        self.net.add(nn.BatchNorm(), nn.Activation('relu'),
                     nn.GlobalAvgPool2D(), nn.Dense(num_classes))
        self.net.initialize(init.Xavier())
        self.num_features = num_channels  # width entering the final Dense
