"""Names for MXNet's values in type annotations.

MXNet 1.9.1 ships no type information, so to a type checker every MXNet value
is ``Any``; these names say in the annotations what the value is. Where an MXNet
class is public (``nn.HybridBlock``, ``gluon.Parameter``, ``mx.Context``) the
annotations name it directly.
"""
from types import ModuleType
from typing import Any

#: An ``mxnet.numpy.ndarray``, or a legacy ``mxnet.nd.NDArray`` where a function says so.
Array = Any
#: What a HybridBlock computes on: an `Array`, or a numpy-mode ``Symbol`` while it is traced.
ArrayOrSymbol = Any
#: ``hybrid_forward``'s operator namespace: the ``mxnet.ndarray`` module, or ``mxnet.symbol``
#: while the block is traced.
OpNamespace = ModuleType
