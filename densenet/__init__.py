"""DenseNet as *Dive into Deep Learning* builds it, for MXNet/Gluon."""
from . import runtime

# Before mxnet loads: the only process-level changes the package makes, listed
# in runtime.py, the README and `densenet info`; DENSENET_RUNTIME=off skips them.
runtime.configure()

# pylint: disable=wrong-import-position
from .blocks import DenseBlock, conv_block, transition_block
from .model import DenseNet, min_input_size
from .modes import set_concat_mode, set_memory_efficient
from .variants import (DenseNetBC, densenet, densenet121, densenet161, densenet169,
                       densenet201, densenet_bc, load_gluon_zoo_parameters)
from .registry import default_cfg, get_model, list_models
from .checkpoints import load_model, load_parameters
from .pretrained import pretrained

__all__ = ['conv_block', 'DenseBlock', 'transition_block', 'DenseNet', 'min_input_size',
           'set_concat_mode', 'set_memory_efficient', 'DenseNetBC', 'densenet',
           'densenet121', 'densenet161', 'densenet169', 'densenet201', 'densenet_bc',
           'load_gluon_zoo_parameters', 'get_model', 'list_models', 'default_cfg',
           'load_model', 'load_parameters', 'pretrained']

__version__ = '0.1.0'
