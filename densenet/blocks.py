"""The book's building blocks: conv_block, DenseBlock and transition_block.

They are Gluon HybridBlocks. Called without ``hybridize()`` they run the same
imperative operators as the d2l code (BatchNorm, ReLU, Conv2D and
``np.concatenate`` along the channel axis); hybridized, the same graph runs as
one cached symbol.
"""
import mxnet as mx
from mxnet import autograd, np, npx
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
        self.memory_efficient = False
        self.net = nn.HybridSequential()
        for _ in range(num_convs):
            self.net.add(layer(num_channels))

    def hybrid_forward(self, F, X):
        if self.memory_efficient:
            if F is not mx.nd:
                raise ValueError('memory_efficient=True recomputes layers in the backward '
                                 'pass imperatively: use the model without hybridize()')
            if autograd.is_recording():
                return self._checkpointed(X)
        for blk in self.net:
            Y = blk(X)
            # Concatenate input and output of each block along the channels
            X = concat_channels(F, X, Y, self.concat)
        return X


    def _checkpointed(self, X):
        """Keep only each layer's new features; recompute the rest in backward."""
        features = [X]
        training = autograd.is_training()
        for blk in self.net:
            features.append(_Recompute(blk, training)(*features))
        return np.concatenate(features, axis=1)


class _Recompute(autograd.Function):
    """One dense layer on the concatenation of `features`, stored only as its inputs.

    Forward runs the layer without recording; backward concatenates and runs it
    again under autograd, so the concatenation and the BatchNorm/ReLU outputs
    live only while one layer's gradient is computed (torchvision's
    memory-efficient DenseNet does the same with checkpointing).
    """

    def __init__(self, block, training):
        super().__init__()
        self.block, self.training = block, training

    def forward(self, *features):
        with autograd.train_mode() if self.training else autograd.predict_mode():
            Y = self.block(np.concatenate(features, axis=1))
        self.save_for_backward(*features)
        return Y

    def backward(self, dY):
        # MXNet calls this from its engine with legacy arrays and numpy mode off.
        with mx.util.np_shape(True), mx.util.np_array(True):
            # MXNet's BatchNorm updates its running statistics in the backward pass, so
            # they are updated once, here, as on the standard path.
            xs = [x.copy() for x in self.saved_tensors]
            # MXNet's registry keeps this Function object after backward; drop the
            # features here, or every training step leaks them.
            self.saved_tensors = ()
            for x in xs:
                x.attach_grad()
            with autograd.record(train_mode=self.training):
                Y = self.block(np.concatenate(xs, axis=1))
            Y.backward(dY.as_np_ndarray())
            return tuple(x.grad.as_nd_ndarray() for x in xs)


def set_memory_efficient(net, flag=True):
    """Turn every DenseBlock's memory-efficient mode on or off (imperative path only).

    With it, a dense block keeps each layer's new features rather than every
    concatenation and BatchNorm/ReLU output, and recomputes those in backward:
    memory grows linearly instead of quadratically with the block's depth.
    """
    from .runtime import naive_engine
    if flag and not naive_engine():
        raise RuntimeError('memory_efficient needs MXNet\'s NaiveEngine (its nested backward '
                           'races under the threaded engine): start Python with '
                           'MXNET_ENGINE_TYPE=NaiveEngine (densenet sets it on CPU-only builds '
                           'when it is imported before mxnet)')

    def visit(block):
        if isinstance(block, DenseBlock):
            if flag and any(isinstance(b, nn.Dropout) for b in _leaves(block)):
                raise ValueError('memory_efficient cannot recompute dropout layers '
                                 'identically; use dropout=0')
            block.memory_efficient = flag
    net.apply(visit)
    return net


def _leaves(block):
    children = list(block._children.values())
    if not children:
        yield block
    for child in children:
        yield from _leaves(child)


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
