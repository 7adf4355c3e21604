"""Trained models into service: INT8/BF16/fp32 inference (inference) and export to MXNet's
symbol format and ONNX (export)."""
