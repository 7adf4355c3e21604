"""The book's building blocks: conv_block, DenseBlock and transition_block.

They are Gluon HybridBlocks. Called without ``hybridize()`` they run the same
imperative operators as the d2l code (BatchNorm, ReLU, Conv2D and
``np.concatenate`` along the channel axis); hybridized, the same graph runs as
one cached symbol.
"""
from mxnet import npx
from mxnet.gluon import nn

npx.set_np()

#: How a DenseBlock joins its input and the new features. ``'numpy'`` is the
#: book's ``np.concatenate``; ``'legacy'`` routes the same values through the
#: legacy ``concat`` operator, which oneDNN implements natively on CPU and so
#: avoids a layout reorder around every concatenation (see densenet.runtime).
CONCAT_MODES = ('numpy', 'legacy')


def conv_block(num_channels):
    """BatchNorm -> ReLU -> 3x3 convolution with `num_channels` outputs."""
    blk = nn.HybridSequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=3, padding=1))
    return blk


def transition_block(num_channels, use_bias=True):
    """BatchNorm -> ReLU -> 1x1 conv to `num_channels` -> 2x2 average pool.

    The pool has stride 2, so the height and width are halved (floored for odd
    sizes, as MXNet's 'valid' pooling convention does). The book's conv has a
    bias; DenseNet-BC's (and the model zoo's) has none.
    """
    blk = nn.HybridSequential()
    blk.add(nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(num_channels, kernel_size=1, use_bias=use_bias),
            nn.AvgPool2D(pool_size=2, strides=2))
    return blk


def concat_channels(F, X, Y, mode='numpy'):
    """Concatenate X and Y along axis 1 (channels), by the chosen operator."""
    if mode == 'numpy':
        return F.np.concatenate((X, Y), axis=1)
    return F.concat(X.as_nd_ndarray(), Y.as_nd_ndarray(), dim=1).as_np_ndarray()


class DenseBlock(nn.HybridBlock):
    """`num_convs` conv blocks; each one's output is concatenated onto its input.

    With ``c`` input channels the output has ``c + num_convs * num_channels``
    channels: the block's growth rate is `num_channels`. `layer` builds each
    unit from the growth rate (the book's `conv_block`; DenseNet-BC passes its
    bottleneck layer).
    """

    def __init__(self, num_convs, num_channels, layer=conv_block):
        super().__init__()
        self.num_convs, self.num_channels = num_convs, num_channels
        self.concat = 'numpy'
        self.net = nn.HybridSequential()
        for _ in range(num_convs):
            self.net.add(layer(num_channels))

    def hybrid_forward(self, F, X):
        for blk in self.net:
            Y = blk(X)
            # Concatenate input and output of each block along the channels
            X = concat_channels(F, X, Y, self.concat)
        return X


def set_concat_mode(net, mode):
    """Switch every DenseBlock inside `net` to concatenation `mode`.

    Both modes compute identical values; a hybridized net's cached graph is
    dropped so that the next call rebuilds it with the new operator.
    """
    if mode not in CONCAT_MODES:
        raise ValueError(f'concat mode must be one of {CONCAT_MODES}, got {mode!r}')

    def visit(block):
        if isinstance(block, DenseBlock):
            block.concat = mode
        if isinstance(block, nn.HybridBlock):
            block._clear_cached_op()
    net.apply(visit)
    return net
