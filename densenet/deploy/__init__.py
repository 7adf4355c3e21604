"""Trained models into service: INT8/BF16/fp32 inference (inference), export to MXNet's
symbol format, ONNX and OpenVINO (export), and one model on MXNet, ONNX Runtime or
OpenVINO (engines, `engine`), each a `Predictor`."""
from densenet.deploy.engines import ENGINES, engine
from densenet.deploy.inference import Predictor

__all__ = ['ENGINES', 'Predictor', 'engine']
