"""The chapter's code: `conv_block`, `DenseBlock`, `transition_block` and `DenseNet`.

It imports only mxnet, d2l, numpy and the standard library; the rest of the
package builds on it.
"""
from densenet.core.blocks import DenseBlock, conv_block, transition_block
from densenet.core.densenet import DenseNet

__all__ = ['conv_block', 'DenseBlock', 'transition_block', 'DenseNet']
