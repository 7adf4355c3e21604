"""Other ways to compute the book's values: oneDNN's concatenation, memory-efficient recompute.

A mode changes how a `DenseBlock` computes, never what (block_mode.py): the
modes are subclasses of the book's blocks that a block is switched to in place.
The memory-efficient fast path trains through MXNet's recomputing graph
executor (mirror.py), and so does the CPU's fast path of a network whose channels
are not whole oneDNN blocks, on a trace with zero channels inserted (padded.py).
"""
from densenet.modes.block_mode import (
    BlockMode,
    concat_mode,
    dense_blocks,
    fast_concat_mode,
    mode_of,
    prepare_model,
    set_concat_mode,
    set_memory_efficient,
)

__all__ = ['BlockMode', 'concat_mode', 'dense_blocks', 'fast_concat_mode', 'mode_of',
           'prepare_model', 'set_concat_mode', 'set_memory_efficient']
