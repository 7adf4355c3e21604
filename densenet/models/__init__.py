"""Every model by name: the book's DenseNet, DenseNet-BC and the paper's variants, the
registry, parameter files with their metadata, and the shipped weights."""
from densenet.models.params import load_model, load_parameters
from densenet.models.pretrained import pretrained
from densenet.models.registry import default_cfg, get_model, list_models
from densenet.models.variants import (
    DenseNet,
    DenseNetBC,
    densenet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet_bc,
    load_gluon_zoo_parameters,
)

__all__ = ['DenseNet', 'DenseNetBC', 'densenet', 'densenet121', 'densenet161', 'densenet169',
           'densenet201', 'densenet_bc', 'load_gluon_zoo_parameters', 'get_model',
           'list_models', 'default_cfg', 'load_model', 'load_parameters', 'pretrained']
