"""The memory-efficient fast path: the traced graph, run by MXNet's graph executor,
recomputes the dense layers in backward.

MXNet 1.9.1's Gluon CachedOp (``hybridize()``) never recomputes anything; its
legacy graph executor does, for nodes marked ``__force_mirroring__``: it copies
them into the backward pass ("mirrors"), where they run again just before their
gradients need them, and the forward copies' memory is reused. A memory-efficient
DenseBlock traced as a symbol (modes.py) joins each layer's input from the
block input and the earlier layers' new features in one concatenation, so that a
recomputed concatenation needs nothing recomputed before it, and marks every
node of the layer but its convolutions (the concatenation, BatchNorm, ReLU).

`train_forward` runs a training batch through such an executor bound to the
model's own parameter and running-statistics arrays, wrapped as one autograd
operation whose inputs are the batch and the parameters: autograd adds the
executor's gradients to those of any other use of the parameters in the same
step, and the loss, ``backward()`` and ``gluon.Trainer`` see the usual arrays,
so the training loop is the same code on every path. The fast path of a
network whose channels are not whole oneDNN blocks trains the same way, on its
padded trace (padded.py), whose padded BatchNorms' running statistics are the
executor's own arrays, filled from the model's before each step and copied back
after its backward pass (where MXNet's BatchNorm updates them).
"""
from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterable

import mxnet as mx
import numpy as onp
from mxnet import autograd
from mxnet.gluon import nn

from densenet.modes.padded import PaddedStat, trace_padded
from densenet.system.hints import Array
from densenet.system.mxcompat import block_cache, forget_block_cache, set_node_attr

# Not recomputed: convolutions. A recomputed one would let its backward use the
# recomputed input instead of keeping it, but MXNet gives its unused output no
# write request, which the native kernels (float64, GPU) refuse and oneDNN's
# writes anyway (README, Performance: what that would have saved).
KEEP_OPS = ('Convolution',)


def mark_recomputed(Y: mx.sym.Symbol, inputs: Iterable[mx.sym.Symbol]) -> mx.sym.Symbol:
    """Mark the operator nodes between `inputs` and `Y`, but those of `KEEP_OPS`, for
    recomputation in backward.

    Args:
        Y: the output symbol.
        inputs: the symbols where the marking stops.

    Returns:
        `Y`, its nodes marked.
    """
    seen = {s.name for s in inputs}  # the marking stops there
    todo = [Y]
    while todo:
        s = todo.pop()
        if s.name in seen or s.get_children() is None:
            continue
        seen.add(s.name)
        if json.loads(s.tojson())['nodes'][-1]['op'] not in KEEP_OPS:  # the head's operator
            set_node_attr(s, force_mirroring='True')
        todo.extend(s.get_children())
    return Y


class GraphExecutors:
    """One bound executor per (context, batch shape, dtype) for a network's parameters.

    Args:
        net: the network, traced once here as one legacy symbol whose input is 'data'.
        padded: trace it with `trace_padded` (its parameters' shapes must be known).

    Raises:
        ValueError: the network has more than one output, or the traced graph has
            inputs that are not the network's parameters.
        Unpaddable: `padded`, and the network has a layer the padded trace cannot spread.
    """

    def __init__(self, net: nn.HybridBlock, padded: bool = False) -> None:
        # MXNet announces at every bind that its oneDNN graph fusion is active, which it
        # is not for a graph with gradients; unless the user asked for the message.
        os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
        self.net = net
        data = mx.sym.var('data').as_np_ndarray()
        out, self.stats = trace_padded(net, data) if padded else (net(data), {})
        if isinstance(out, (list, tuple)):
            raise ValueError('the memory-efficient fast path trains networks with one output')
        self.sym = out.as_nd_ndarray()
        self.params = {p.name: p for p in net.collect_params().values()}
        self.arg_names = [n for n in self.sym.list_arguments() if n != 'data']
        self.aux_names = self.sym.list_auxiliary_states()
        if missing := [n for n in self.arg_names + self.aux_names
                       if n not in self.params and n not in self.stats]:
            raise ValueError(f'the traced graph has inputs that are not parameters of the '
                             f'network: {missing[:3]}')
        # (context, shape, dtype) -> (executor, the arrays and the gradient requests it
        # was bound to)
        self._executors: dict[tuple[mx.Context, tuple[int, ...], onp.dtype],
                              tuple[mx.executor.Executor, list[Array], list[str]]] = {}
        # (name, context, dtype) -> the padded trace's own running statistic there
        self._own: dict[tuple[str, mx.Context, onp.dtype], mx.nd.NDArray] = {}
        # context -> the recorded step whose backward has not run yet
        self._pending: dict[mx.Context, weakref.ref[_GraphStep]] = {}

    def busy(self, X: Array) -> bool:
        """Whether an executor on `X`'s device holds a recorded forward pass whose backward
        has not run: a second pass through it, or through another executor sharing its
        memory (every batch shape on a device does), would overwrite what that backward
        needs.

        Args:
            X: the batch.

        Returns:
            True while such a pass is alive.
        """
        step = self._pending.get(X.ctx)
        return step is not None and (s := step()) is not None and s.ex is not None

    def claim(self, X: Array, step: _GraphStep) -> None:
        """Note that `step` holds the executors on `X`'s device until its backward."""
        self._pending[X.ctx] = weakref.ref(step)

    def _stat_array(self, stat: PaddedStat, ctx: mx.Context) -> mx.nd.NDArray:
        """The executor's array of a padded running statistic on `ctx`."""
        dtype = stat.param.dtype
        key = (stat.name, ctx, onp.dtype(dtype))
        if key not in self._own:
            self._own[key] = mx.nd.zeros(stat.shape, ctx=ctx, dtype=dtype)
        return self._own[key]

    def load_stats(self, ex: mx.executor.Executor) -> None:
        """Fill the executor's padded running statistics from the model's (padded.py)."""
        for name, stat in self.stats.items():
            stat.load(ex.aux_dict[name])

    def store_stats(self, ex: mx.executor.Executor) -> None:
        """Copy the executor's padded running statistics back into the model's."""
        for name, stat in self.stats.items():
            stat.store(ex.aux_dict[name])

    def executor(self, X: Array) -> mx.executor.Executor:
        """The executor for batch `X`.

        Bound again if the parameters' arrays changed (a cast, a move to other
        devices) or a gradient request did. Its gradients are its own arrays.

        Args:
            X: the batch.

        Returns:
            The bound `mx.executor.Executor`.
        """
        ctx = X.ctx
        key = (ctx, X.shape, X.dtype)
        # the parameters' current arrays on ctx
        args = {n: self.params[n].data(ctx) for n in self.arg_names}
        reqs = {n: self.params[n].grad_req for n in self.arg_names}
        aux = {n: self.params[n].data(ctx) if n in self.params
               else self._stat_array(self.stats[n], ctx) for n in self.aux_names}
        arrays, requests = [*args.values(), *aux.values()], list(reqs.values())
        entry = self._executors.get(key)
        if entry is not None and entry[2] == requests and \
                [id(a) for a in entry[1]] == [id(a) for a in arrays]:
            return entry[0]  # bound to these very arrays (kept here: no id is reused)
        if entry is not None:  # new arrays: every executor on this device is stale
            self._executors = {k: v for k, v in self._executors.items() if k[0] != ctx}
        # Executors of other batch shapes on this device share one memory pool.
        shared = next((ex for (c, _, _), (ex, *_) in self._executors.items() if c == ctx), None)
        ex = self.sym.bind(ctx, args={**{k: v.as_nd_ndarray() for k, v in args.items()},
                                      'data': mx.nd.zeros(X.shape, ctx=ctx, dtype=X.dtype)},
                           args_grad={n: mx.nd.zeros_like(args[n].as_nd_ndarray())
                                      for n in self.trained()},
                           grad_req={**reqs, 'data': 'null'},
                           aux_states={k: v.as_nd_ndarray() for k, v in aux.items()},
                           shared_exec=shared)
        self._executors[key] = (ex, arrays, requests)
        return ex

    def trained(self) -> list[str]:
        """The graph's parameters that take gradients now, in order.

        Returns:
            Their names.
        """
        return [n for n in self.arg_names if self.params[n].grad_req != 'null']

    def planned_mb(self, X: Array) -> int:
        """The memory MXNet's planner allocates for this batch's forward and backward.

        Args:
            X: the batch.

        Returns:
            Megabytes.
        """
        return int(self.executor(X).debug_str().rsplit('Total ', 2)[-2].split()[0])


class _GraphStep(autograd.Function):
    """The executor's forward and backward as one recorded operation on the parameters
    `trained`, an anchor and the batch, in that order: MXNet 1.9.1's Function stops
    handing out gradients at the first input that takes none (the batch), and never
    adds one to a gradient kept with ``grad_req='add'`` (`train_forward` declines
    those)."""

    def __init__(self, executors: GraphExecutors, training: bool, trained: list[str]
                 ) -> None:
        super().__init__()
        self.executors, self.training, self.trained = executors, training, trained
        self.ex: mx.executor.Executor | None = None

    def forward(self, *inputs: Array) -> Array:
        X = inputs[-1]
        self.ex = self.executors.executor(X)
        self.executors.claim(X, self)
        self.executors.load_stats(self.ex)
        self.ex.arg_dict['data'][:] = X.as_nd_ndarray()
        out = self.ex.forward(is_train=self.training)[0]
        return out.copy().as_np_ndarray()  # the executor reuses its output array

    def backward(self, dY: Array) -> tuple[Array, ...]:
        ex, self.ex = self.ex, None  # MXNet keeps this Function after backward
        assert ex is not None  # forward ran first
        # BatchNorm updates the running statistics in backward, from the values it reads
        # there: the model's now, whatever other passes of this step did to them.
        self.executors.load_stats(ex)
        ex.backward([dY.as_nd_ndarray()], is_train=self.training)
        if self.training:
            self.executors.store_stats(ex)
        data = ex.arg_dict['data']
        return (*(ex.grad_dict[n] for n in self.trained), mx.nd.zeros((1,), ctx=data.ctx),
                mx.nd.zeros_like(data))


def forget_executors(net: nn.Block) -> None:
    """Drop the traced graph and executors (after a change of mode or architecture).

    Args:
        net: the network.
    """
    forget_block_cache(net, '_graph_executors')
    forget_block_cache(net, '_needs_padding')


def train_forward(net: nn.HybridBlock, X: Array, padded: bool = False) -> Array | None:
    """`net(X)` for a recorded training step, through the graph executor.

    Args:
        net: a hybridized memory-efficient network, or with `padded` one whose
            padded trace applies (padded.py).
        X: the batch.
        padded: train through the padded trace.

    Returns:
        The outputs, recorded by autograd as one operation; None where the executor
        for this batch holds a recorded pass whose backward has not run, or a
        parameter accumulates its gradient (``grad_req='add'``): the caller computes
        those otherwise.
    """
    # Autograd records an operation only when an input takes part in the graph; the
    # batch does not, so a one-element anchor does (its gradient is dropped).
    anchor = mx.np.zeros((1,), ctx=X.ctx)
    anchor.attach_grad()
    # The network's executors are made on first use (kept outside Gluon's child registry).
    executors = block_cache(net, '_graph_executors', lambda: GraphExecutors(net, padded))
    if executors.busy(X) or any(p.grad_req == 'add' for p in executors.params.values()):
        return None
    trained = executors.trained()
    params = [executors.params[n].data(X.ctx) for n in trained]
    return _GraphStep(executors, autograd.is_training(), trained)(*params, anchor, X)
