"""The book's DenseNet in PyTorch, layer for layer, for benchmarks only.

Same stem (7x7/2 conv with bias, BN, ReLU, 3x3/2 max pool), dense blocks of
BN-ReLU-3x3 conv (with bias), transitions of BN-ReLU-1x1 conv-2x2 avg pool
that halve the running channel count, and the BN-ReLU-global pool-linear head.
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
