"""DenseNet as *Dive into Deep Learning* builds it, for MXNet/Gluon."""
from . import runtime

runtime.configure_threads()  # before mxnet is imported; see runtime.py
runtime.configure_engine()
runtime.enable_amx()

# pylint: disable=wrong-import-position
from .blocks import (DenseBlock, conv_block, set_concat_mode, set_memory_efficient,
                     transition_block)
from .model import DenseNet, min_input_size
from .variants import (DenseNetBC, densenet, densenet121, densenet161, densenet169,
                       densenet201, densenet_bc, load_gluon_zoo_parameters)

__all__ = ['conv_block', 'DenseBlock', 'transition_block', 'DenseNet', 'min_input_size',
           'set_concat_mode', 'set_memory_efficient', 'DenseNetBC', 'densenet',
           'densenet121', 'densenet161', 'densenet169', 'densenet201', 'densenet_bc',
           'load_gluon_zoo_parameters']

runtime.start_engine_quietly()
__version__ = '0.1.0'
