"""What the chapter claims about DenseNet, measured on a model.

`feature_reuse` gives, for each dense block, how much weight each layer, and
the transition or classifier after the block, puts on the features of every
earlier layer (Huang et al. 2017, Figure 5); `summarize` reads the paper's four
observations off those matrices. `memory_by_depth` gives the activation memory
each layer adds in training, with and without the memory-efficient mode, and
`complexity` the parameters and forward multiply-adds of any registered model.
"""
from densenet.analysis.complexity import Complexity, complexity
from densenet.analysis.feature_reuse import (
    BlockReuse,
    BlockSummary,
    ReuseSummary,
    feature_reuse,
    plot_feature_reuse,
    summarize,
    summarize_block,
    write_feature_reuse,
    write_feature_reuse_csv,
)
from densenet.analysis.memory import LayerMemory, memory_by_depth, plot_memory_by_depth, totals

__all__ = ['BlockReuse', 'BlockSummary', 'ReuseSummary', 'feature_reuse', 'summarize',
           'summarize_block', 'plot_feature_reuse', 'write_feature_reuse_csv',
           'write_feature_reuse', 'Complexity', 'complexity', 'LayerMemory',
           'memory_by_depth', 'plot_memory_by_depth', 'totals']
