"""Feature reuse, measured as Huang et al. (2017) draw it in their Figure 5.

Inside a dense block every layer sees the concatenation of the block's input
and of the new features of every layer before it. Each of these is a *source*:
source 0 is the block's input (the stem's or the previous transition's output),
source ``s >= 1`` the features layer ``s`` adds. The *targets* are the block's
layers, then what reads the block's whole output: the transition after it or,
after the last block, the classifier (which sits behind BatchNorm, ReLU and the
global average pool, all of which keep each channel where it is).

Entry ``(s, t)`` of a block's matrix is the mean absolute weight that target
``t`` gives source ``s``: the L1 norm of the target's first weighted layer (the
3x3 convolution of the book's layer, the 1x1 bottleneck convolution of
DenseNet-BC, the transition's 1x1 convolution, the classifier's Dense weight)
over the input channels that came from source ``s``, summed over everything
else and divided by the number of those channels. Biases and BatchNorm scales
are left out, as in the paper.

Rows are the sources ``0..L`` and columns the targets (layer ``1..L``, then the
transition or classifier), so column ``j`` (0-based) is layer ``j + 1``. Layer
``l`` (1-based) sees sources ``0..l-1``: the entry is defined for ``s <= j``
and NaN below the diagonal (``s > j``, a source made after the target). The last
column sees every source.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterator, Sequence

import numpy as onp
from mxnet.gluon import nn

from densenet.core.blocks import DenseBlock
from densenet.data.shapes import fix_shapes
from densenet.errors import UsageError
from densenet.models.classifier import CheckedClassifier, min_input_size
from densenet.modes.block_mode import network
from densenet.system.files import atomic_text, pyplot, save_figure
from densenet.system.mxcompat import leaves

#: The file names `write_feature_reuse` writes into its folder.
FIGURE, TABLE = 'feature-reuse.png', 'feature-reuse.csv'


@dataclasses.dataclass(frozen=True)
class BlockReuse:
    """The feature-reuse matrix of one dense block.

    Attributes:
        block: the block's number, from 1.
        weights: (sources, targets): the mean absolute weight per input channel that
            each target gives each source; NaN where the target cannot see the source.
        sources: the row labels: ``'input'``, then ``'layer 1'`` .. ``'layer L'``.
        targets: the column labels: ``'layer 1'`` .. ``'layer L'``, then
            ``'transition'`` or ``'classifier'``.
        channels: each source's input channels in the concatenation, as
            (first, end) with `end` excluded.
    """
    block: int
    weights: onp.ndarray
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    channels: tuple[tuple[int, int], ...]


def _units(block: nn.Block) -> Iterator[nn.Block]:
    """The dense blocks and the other leaf layers of `block`, in the order they run."""
    if isinstance(block, DenseBlock):
        yield block
    elif isinstance(block, (nn.Sequential, nn.HybridSequential)):
        for child in block:
            yield from _units(child)
    else:
        yield from leaves(block)


def _weighted(layers: Sequence[nn.Block]) -> list[nn.Block]:
    return [layer for layer in layers if isinstance(layer, (nn.Conv2D, nn.Dense))]


def _per_channel(layer: nn.Block) -> onp.ndarray:
    """The L1 norm of `layer`'s weight for each input channel (over outputs and kernel)."""
    w = onp.abs(layer.weight.list_data()[0].asnumpy())
    return w.swapaxes(0, 1).reshape(w.shape[1], -1).sum(axis=1)


def _block_reuse(number: int, block: DenseBlock, following: Sequence[nn.Block]) -> BlockReuse:
    """Block `number`'s matrix; its exit is the first weighted layer of `following` (the
    units up to the next block)."""
    if not (exits := _weighted(following)):
        raise UsageError(f'dense block {number} is followed by no convolution or Dense '
                         'layer before the next block')
    weighted = [_weighted(list(leaves(layer))) for layer in block.net]
    firsts = [layers[0] for layers in weighted]
    # Source s's channels end where the concatenation before target s + 1 ends.
    bounds = list(itertools.accumulate((layers[-1].weight.shape[0] for layers in weighted),
                                       initial=firsts[0].weight.shape[1]))
    channels = tuple(zip([0, *bounds[:-1]], bounds, strict=True))
    L = len(firsts)
    weights = onp.full((L + 1, L + 1), onp.nan)
    for t, layer in enumerate([*firsts, exits[0]]):
        if layer.weight.shape[1] != bounds[t]:
            raise UsageError(
                f'dense block {number}: target {t + 1} takes {layer.weight.shape[1]} input '
                f'channels, but the concatenation before it has {bounds[t]}: the network is '
                'not the dense blocks and transitions this analysis reads')
        norms = _per_channel(layer)
        weights[:t + 1, t] = [norms[slice(*c)].mean() for c in channels[:t + 1]]
    layer_names = tuple(f'layer {i}' for i in range(1, L + 1))
    exit_name = 'classifier' if isinstance(exits[0], nn.Dense) else 'transition'
    return BlockReuse(number, weights, ('input', *layer_names), (*layer_names, exit_name),
                      channels)


def feature_reuse(model: CheckedClassifier | nn.Block) -> list[BlockReuse]:
    """The feature-reuse matrix of every dense block of `model` (the paper's Figure 5).

    The layers are found from the network's structure: each `DenseBlock`, and after
    it the first convolution or Dense layer (the transition's convolution, or the
    classifier). Works for the book's `DenseNet`, `DenseNetBC` and every DenseNet of
    the registry. A model whose shapes are still deferred runs one forward pass of
    zeros at its smallest input side first (the weights' values do not change).

    Args:
        model: a model (with a ``net``) or its network.

    Returns:
        One `BlockReuse` per dense block, in order.

    Raises:
        UsageError: the network has no dense block (another kind of network), a block
            is not followed by a convolution or Dense layer, or the channel counts do not
            add up as the blocks' concatenation does.
    """
    net = network(model)
    if any(0 in p.shape or -1 in p.shape for p in net.collect_params().values()):
        fix_shapes(net, min_input_size(net))
    units = list(_units(net))
    if not (blocks := [i for i, unit in enumerate(units) if isinstance(unit, DenseBlock)]):
        raise UsageError('the network has no DenseBlock: feature reuse is measured on a '
                         'DenseNet')
    return [_block_reuse(number, units[i], units[i + 1:(blocks + [len(units)])[number]])
            for number, i in enumerate(blocks, start=1)]


def _spread(w: onp.ndarray) -> float:
    """How evenly `w` is spread: (sum w)^2 / (n sum w^2), 1 when even, 1/n on one entry."""
    return float(w.sum() ** 2 / (len(w) * (w ** 2).sum())) if (w ** 2).sum() > 0 else math.nan


@dataclasses.dataclass(frozen=True)
class BlockSummary:
    """The numbers of one dense block that speak to the paper's four observations.

    A *column* is what one target gives its sources (see `BlockReuse`); a layer
    with one source (the first) counts in no per-layer number.

    Attributes:
        block: the block's number, from 1.
        exit: ``'transition'`` or ``'classifier'``: the target after the block.
        layers: the number of layers.
        layer_spread: the mean over the layers with two sources or more of their
            column's spread: (sum w)^2 / (n sum w^2) over the n sources, 1 when the
            weight is even, 1/n when it is all on one source.
        exit_spread: the same for the exit's column.
        exit_input_share: the share of the exit's column on the block's input.
        even_share: what that share is when the weight is even: 1 / (layers + 1).
        input_least: the number of those layers whose least-weighted source is the
            block's input.
        compared: the number of layers with two sources or more.
        input_ratio: the mean over those layers of the weight on the block's input
            divided by the mean weight on their other sources.
        late_ratio: the exit's mean weight on the layers past the block's middle
            (sources ``s > L/2``) divided by its mean on the sources up to it.
    """
    block: int
    exit: str
    layers: int
    layer_spread: float
    exit_spread: float
    exit_input_share: float
    even_share: float
    input_least: int
    compared: int
    input_ratio: float
    late_ratio: float


def summarize_block(reuse: BlockReuse) -> BlockSummary:
    """The observation numbers of one block's matrix.

    Args:
        reuse: the block's matrix.

    Returns:
        Its `BlockSummary`.
    """
    W = reuse.weights
    L = W.shape[0] - 1
    columns = [W[:t + 1, t] for t in range(1, L)]  # the layers with two sources or more
    exit_col = W[:, L]
    late = onp.arange(L + 1) > L / 2
    return BlockSummary(
        block=reuse.block, exit=reuse.targets[-1], layers=L,
        layer_spread=float(onp.mean([_spread(c) for c in columns])) if columns else math.nan,
        exit_spread=_spread(exit_col),
        exit_input_share=float(exit_col[0] / exit_col.sum()),
        even_share=1 / (L + 1),
        input_least=sum(int(onp.argmin(c) == 0) for c in columns),
        compared=len(columns),
        input_ratio=(float(onp.mean([c[0] / c[1:].mean() for c in columns]))
                     if columns else math.nan),
        late_ratio=float(exit_col[late].mean() / exit_col[~late].mean()))


def _row(values: Sequence[float]) -> str:
    return ', '.join('-' if math.isnan(v) else f'{v:.2f}' for v in values)


@dataclasses.dataclass(frozen=True)
class ReuseSummary:
    """The paper's four observations on feature reuse, measured on one model.

    Attributes:
        blocks: one `BlockSummary` per dense block, in order.
    """
    blocks: tuple[BlockSummary, ...]

    def lines(self) -> list[str]:
        """The summary as printable lines, one per observation (plus a heading).

        Returns:
            The lines.
        """
        b = self.blocks
        trans = [s for s in b if s.exit == 'transition']
        head = [s for s in b if s.exit == 'classifier']
        later = ', '.join(f'{s.input_least}/{s.compared}' for s in b)
        return [
            'feature reuse (Huang et al. 2017, Figure 5), blocks '
            f'{", ".join(str(s.block) for s in b)}; spread: 1 = even over every source, '
            '1/n = all on one',
            '1. layers spread their weight over many inputs: mean spread '
            f'{_row([s.layer_spread for s in b])}',
            f'2. transitions spread their weight across the block: spread '
            f'{_row([s.exit_spread for s in trans])}; share on the block input '
            f'{_row([s.exit_input_share for s in trans])} (even: '
            f'{_row([s.even_share for s in trans])})',
            f'3. layers give the block input (a transition output from block 2 on) the least '
            f'weight: least-weighted source for {later} layers; input / other sources '
            f'{_row([s.input_ratio for s in b])}',
            '4. the classifier concentrates on the final feature maps: mean weight on the '
            'later half of the last block / the earlier half '
            f'{_row([s.late_ratio for s in head])} (transitions: '
            f'{_row([s.late_ratio for s in trans])})',
        ]


def summarize(reuse: Sequence[BlockReuse]) -> ReuseSummary:
    """The paper's four observations measured on the matrices `feature_reuse` gives.

    1. every layer spreads its weight over many inputs (`BlockSummary.layer_spread`);
    2. the transitions spread theirs across the whole block (`exit_spread`,
       `exit_input_share` against `even_share`);
    3. layers of the second and third block give the transition's output, the block
       input, the least weight (`input_least` of `compared`, `input_ratio`);
    4. the classifier concentrates on the final feature maps (`late_ratio` of the
       last block, against the transitions').

    Args:
        reuse: the blocks' matrices.

    Returns:
        The `ReuseSummary`.
    """
    return ReuseSummary(tuple(summarize_block(r) for r in reuse))


def _ticks(labels: Sequence[str]) -> list[int]:
    picked = list(range(0, len(labels), max(1, math.ceil(len(labels) / 10))))
    return picked if picked[-1] == len(labels) - 1 else [*picked, len(labels) - 1]


def plot_feature_reuse(reuse: Sequence[BlockReuse], path: str | os.PathLike[str],
                       normalize: bool = True) -> None:
    """Write the matrices as heat maps, one per block, as a PNG (the paper's Figure 5).

    Sources run down the y axis, targets across the x axis (the last column is
    the transition, T, or the classifier, C); cells a target cannot see are blank.

    Args:
        reuse: the blocks' matrices (`feature_reuse`).
        path: the PNG file.
        normalize: divide each target's column by its largest entry, so that every
            column runs up to 1 (the paper's colour scale); else the raw values.

    Raises:
        DiskFull: the disk filled up.
    """
    fig, axes = pyplot().subplots(1, len(reuse), figsize=(1.2 + 3.2 * len(reuse), 3.6),
                             squeeze=False, layout='constrained')
    top = 1.0 if normalize else float(max(onp.nanmax(r.weights) for r in reuse))
    for ax, r in zip(axes[0], reuse, strict=True):
        W = r.weights / onp.nanmax(r.weights, axis=0) if normalize else r.weights
        im = ax.imshow(onp.ma.masked_invalid(W), cmap='viridis', vmin=0, vmax=top,
                       aspect='auto', interpolation='nearest')
        xs = [t.replace('layer ', '') for t in r.targets[:-1]] + [r.targets[-1][0].upper()]
        ys = ['in'] + [s.replace('layer ', '') for s in r.sources[1:]]
        ax.set_xticks(_ticks(xs), [xs[i] for i in _ticks(xs)])
        ax.set_yticks(_ticks(ys), [ys[i] for i in _ticks(ys)])
        ax.set_title(f'dense block {r.block}')
        ax.set_xlabel('target layer')
    axes[0][0].set_ylabel('source layer')
    fig.colorbar(im, ax=list(axes[0]),
                 label='|weight| / column max' if normalize else 'mean |weight|')
    save_figure(fig, path)


def write_feature_reuse_csv(reuse: Sequence[BlockReuse], path: str | os.PathLike[str]) -> None:
    """Write every defined entry as a CSV row: block, source, target, value.

    `source` is 0 for the block input and ``s`` for layer ``s``; `target` is
    ``l`` for layer ``l`` and ``L + 1`` for the transition or classifier after a
    block of ``L`` layers. Entries a target cannot see have no row.

    Args:
        reuse: the blocks' matrices (`feature_reuse`).
        path: the CSV file.

    Raises:
        DiskFull: the disk filled up.
    """
    rows = [f'{r.block},{s},{t + 1},{r.weights[s, t]:.9g}\n'
            for r in reuse for t in range(r.weights.shape[1]) for s in range(t + 1)]
    atomic_text(path, 'block,source,target,value\n' + ''.join(rows))


def write_feature_reuse(model: CheckedClassifier | nn.Block, folder: str | os.PathLike[str],
                        ) -> tuple[list[BlockReuse], ReuseSummary]:
    """Measure `model`'s feature reuse and write the figure and the table into `folder`.

    Writes ``feature-reuse.png`` (`plot_feature_reuse`) and ``feature-reuse.csv``
    (`write_feature_reuse_csv`).

    Args:
        model: a model (with a ``net``) or its network.
        folder: the output folder (made if missing).

    Returns:
        The matrices and their `ReuseSummary`.

    Raises:
        UsageError: not a DenseNet (see `feature_reuse`).
        DiskFull: the disk filled up.
    """
    reuse = feature_reuse(model)
    plot_feature_reuse(reuse, os.path.join(folder, FIGURE))
    write_feature_reuse_csv(reuse, os.path.join(folder, TABLE))
    return reuse, summarize(reuse)
