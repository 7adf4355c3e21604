"""DenseNet as *Dive into Deep Learning* builds it, for MXNet/Gluon.

The packages, from the chapter up: `densenet.core` (the book's blocks and model),
`densenet.modes` (faster or leaner ways to compute the same values),
`densenet.data`, `densenet.models` (variants, registry, weights),
`densenet.train`, `densenet.deploy`, `densenet.cli`, with `densenet.system`
(the machine and MXNet's internals) beneath them all.
"""
from densenet.system import runtime

# Before mxnet loads: the only process-level changes the package makes, listed
# in runtime.py, the README and `densenet info`; DENSENET_RUNTIME=off skips them.
runtime.configure()

from densenet import data  # noqa: E402,F401  (densenet.data.FashionMNIST, ImageFolder)
from densenet.core import DenseBlock, conv_block, transition_block  # noqa: E402
from densenet.models import (  # noqa: E402
    DenseNet,
    DenseNetBC,
    default_cfg,
    densenet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet_bc,
    get_model,
    list_models,
    load_gluon_zoo_parameters,
    load_model,
    load_parameters,
    pretrained,
)
from densenet.models.classifier import min_input_size  # noqa: E402
from densenet.modes import set_concat_mode, set_memory_efficient  # noqa: E402

__all__ = ['conv_block', 'DenseBlock', 'transition_block', 'DenseNet', 'min_input_size',
           'set_concat_mode', 'set_memory_efficient', 'DenseNetBC', 'densenet',
           'densenet121', 'densenet161', 'densenet169', 'densenet201', 'densenet_bc',
           'load_gluon_zoo_parameters', 'get_model', 'list_models', 'default_cfg',
           'load_model', 'load_parameters', 'pretrained']

__version__ = '0.1.0'
