"""The library's DenseNets in PyTorch, layer for layer, for benchmarks only: the book's model
and DenseNet-BC (`BUILDERS`, by registry name).

The book's model: the same stem (7x7/2 conv with bias, BN, ReLU, 3x3/2 max pool),
dense blocks of BN-ReLU-3x3 conv (with bias), transitions of BN-ReLU-1x1 conv-2x2
avg pool that halve the running channel count, and the BN-ReLU-global pool-linear
head. Each dense block concatenates every layer's output onto its input, as the
MXNet blocks do.
"""
import torch
from torch import nn


def conv_block(in_channels, num_channels):
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(),
                         nn.Conv2d(in_channels, num_channels, 3, padding=1))


class DenseBlock(nn.Module):
    def __init__(self, num_convs, in_channels, num_channels):
        super().__init__()
        self.net = nn.ModuleList(conv_block(in_channels + i * num_channels, num_channels)
                                 for i in range(num_convs))

    def forward(self, X):
        for blk in self.net:
            X = torch.cat((X, blk(X)), dim=1)
        return X


def transition_block(in_channels, num_channels):
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(),
                         nn.Conv2d(in_channels, num_channels, 1), nn.AvgPool2d(2, 2))


def book_densenet(num_channels=64, growth_rate=32, arch=(4, 4, 4, 4), num_classes=10,
                  in_channels=1):
    layers = [nn.Conv2d(in_channels, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64),
              nn.ReLU(), nn.MaxPool2d(3, 2, padding=1)]
    width = 64  # the stem's real width; num_channels only drives the book's count
    for i, num_convs in enumerate(arch):
        layers.append(DenseBlock(num_convs, width, growth_rate))
        width += num_convs * growth_rate
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:
            num_channels //= 2
            layers.append(transition_block(width, num_channels))
            width = num_channels
    layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


def bottleneck_layer(in_channels, growth_rate, bn_size=4):
    """DenseNet-BC's layer: BN-ReLU-1x1 conv to bn_size*k, BN-ReLU-3x3 conv to k, no biases."""
    width = bn_size * growth_rate
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(),
                         nn.Conv2d(in_channels, width, 1, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, growth_rate, 3, padding=1, bias=False))


class BCBlock(DenseBlock):
    """A dense block of bottleneck layers, each output concatenated onto its input."""

    def __init__(self, num_layers, in_channels, growth_rate):
        nn.Module.__init__(self)
        self.net = nn.ModuleList(bottleneck_layer(in_channels + i * growth_rate, growth_rate)
                                 for i in range(num_layers))


def densenet_bc(num_init_features, growth_rate, block_config, stem='imagenet',
                compression=0.5, in_channels=3, num_classes=1000):
    """densenet.models.variants.DenseNetBC in PyTorch: the same stem, blocks, transitions
    (BN-ReLU-1x1 conv without bias-2x2 avg pool) and head, layer for layer."""
    if stem == 'imagenet':
        layers = [nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False),
                  nn.BatchNorm2d(num_init_features), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1)]
    else:
        layers = [nn.Conv2d(in_channels, num_init_features, 3, padding=1, bias=False)]
    width = num_init_features
    for i, num_layers in enumerate(block_config):
        layers.append(BCBlock(num_layers, width, growth_rate))
        width += num_layers * growth_rate
        if i != len(block_config) - 1:
            out = int(width * compression)
            layers.append(nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(),
                                        nn.Conv2d(width, out, 1, bias=False),
                                        nn.AvgPool2d(2, 2)))
            width = out
    layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


#: The registry's models that have a PyTorch build here: name -> builder(in_channels,
#: num_classes), the same architecture as densenet.get_model(name).
BUILDERS = {
    'book': lambda c, n: book_densenet(in_channels=c, num_classes=n),
    'densenet_bc_100': lambda c, n: densenet_bc(24, 12, (16, 16, 16), stem='cifar',
                                                in_channels=c, num_classes=n),
    'densenet121': lambda c, n: densenet_bc(64, 32, (6, 12, 24, 16), in_channels=c,
                                            num_classes=n),
}


def build(name, in_channels, num_classes):
    """The PyTorch model of registry name `name` (a key of BUILDERS)."""
    return BUILDERS[name](in_channels, num_classes)
