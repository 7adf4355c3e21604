"""DenseNet as *Dive into Deep Learning* builds it, for MXNet/Gluon."""
from . import runtime

runtime.configure_threads()  # before mxnet is imported; see runtime.py

# pylint: disable=wrong-import-position
from .blocks import DenseBlock, conv_block, set_concat_mode, transition_block
from .model import DenseNet, min_input_size

__all__ = ['conv_block', 'DenseBlock', 'transition_block', 'DenseNet',
           'min_input_size', 'set_concat_mode']
__version__ = '0.1.0'
