"""Other ways to compute the book's values: oneDNN's concatenation, memory-efficient recompute.

A mode changes how a `DenseBlock` computes, never what (block_mode.py); the
memory-efficient fast path trains through MXNet's recomputing graph executor
(mirror.py). Importing this package adds that executor to
`CheckedClassifier.training_paths`, the core's one extension point for it.
"""
from densenet.core.classifier import CheckedClassifier
from densenet.modes.block_mode import (
    BlockMode,
    concat_mode,
    dense_blocks,
    fast_concat_mode,
    memory_efficient_path,
    mode_of,
    prepare_model,
    set_concat_mode,
    set_memory_efficient,
)

if memory_efficient_path not in CheckedClassifier.training_paths:
    CheckedClassifier.training_paths.append(memory_efficient_path)

__all__ = ['BlockMode', 'concat_mode', 'dense_blocks', 'fast_concat_mode', 'mode_of',
           'prepare_model', 'set_concat_mode', 'set_memory_efficient']
