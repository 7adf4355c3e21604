"""The chapter's code: `conv_block`, `DenseBlock`, `transition_block` and `DenseNet`.

This package imports nothing else of densenet but the MXNet-internals shim
(`densenet.system.mxcompat`) and the names of MXNet's types (`densenet.system.hints`);
the rest of the package builds on it.
"""
from densenet.core.blocks import DenseBlock, conv_block, transition_block
from densenet.core.classifier import CheckedClassifier, min_input_size
from densenet.core.densenet import DenseNet

__all__ = ['conv_block', 'DenseBlock', 'transition_block', 'DenseNet', 'CheckedClassifier',
           'min_input_size']
