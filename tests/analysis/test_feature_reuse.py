"""Feature reuse (the paper's Figure 5): the matrices, their summary, the figure, the table
and `densenet analyze`."""
import csv
import math
import os

import numpy as onp
import pytest
from mxnet import np
from mxnet.gluon import nn
from PIL import Image

from densenet import DenseNet, DenseNetBC, get_model
from densenet.analysis import (
    BlockReuse,
    feature_reuse,
    plot_feature_reuse,
    summarize,
    summarize_block,
    write_feature_reuse,
    write_feature_reuse_csv,
)
from densenet.cli import main
from densenet.errors import UsageError


def tiny_book(arch=(2, 2)):
    """The book's DenseNet with k=4, shapes fixed by one forward pass (1 channel, 32 px)."""
    model = DenseNet(arch=arch, growth_rate=4)
    model.net(np.zeros((1, 1, 32, 32)))
    return model


def a(block, source, target):
    """The constant that hand-set weights give (block, source, target), all distinct."""
    return 100 * block + 10 * target + source + 1


def set_by_hand(layer, block, target, slices):
    """Give input channel c of `layer`'s weight the value a(...) from its source's slice,
    times 1 on even channels and -3 on odd ones (so the mean |w| of a slice is 2 a), and
    a large bias, which must not count."""
    w = onp.zeros(layer.weight.shape, dtype='float32')
    for source, (lo, hi) in enumerate(slices):
        for c in range(lo, hi):
            w[:, c] = a(block, source, target) * (1 if c % 2 == 0 else -3)
    layer.weight.set_data(np.array(w))
    if layer.bias is not None:
        layer.bias.set_data(np.full(layer.bias.shape, 1000.0))


def test_hand_set_weights_give_the_hand_computed_matrix():
    model = tiny_book()
    block1, trans, block2, dense = model.net[1], model.net[2], model.net[3], model.net[-1]
    # Block 1: the stem's 64 channels, then 4 per layer; the transition halves 72 to 36.
    # Block 2: 36, then 4 per layer; the classifier reads the 44 channels.
    s1 = [(0, 64), (64, 68), (68, 72)]
    s2 = [(0, 36), (36, 40), (40, 44)]
    set_by_hand(block1.net[0][2], 1, 1, s1[:1])
    set_by_hand(block1.net[1][2], 1, 2, s1[:2])
    set_by_hand(trans[2], 1, 3, s1)
    set_by_hand(block2.net[0][2], 2, 1, s2[:1])
    set_by_hand(block2.net[1][2], 2, 2, s2[:2])
    set_by_hand(dense, 2, 3, s2)
    # The L1 norm per input channel sums over the outputs and the kernel: a layer's 3x3
    # conv has 4 outputs (36 weights per channel), the transition 36 outputs of 1x1 (36),
    # the classifier 10 outputs (10). The mean |w| of a slice is 2 a.
    per_channel = {(1, 1): 36, (1, 2): 36, (1, 3): 36, (2, 1): 36, (2, 2): 36, (2, 3): 10}
    nan = math.nan
    visible = onp.array([[1, 1, 1], [nan, 1, 1], [nan, nan, 1]])
    reuse = feature_reuse(model)
    assert len(reuse) == 2
    for b, (r, slices) in enumerate(zip(reuse, [s1, s2], strict=True), start=1):
        expected = onp.array([[per_channel[b, t] * 2 * a(b, s, t) for t in (1, 2, 3)]
                              for s in range(3)]) * visible
        onp.testing.assert_allclose(r.weights, expected, rtol=1e-6)
        assert onp.array_equal(onp.isnan(r.weights), onp.isnan(visible))
        assert r.channels == tuple(slices)
        assert r.sources == ('input', 'layer 1', 'layer 2')
    assert reuse[0].targets == ('layer 1', 'layer 2', 'transition')
    assert reuse[1].targets == ('layer 1', 'layer 2', 'classifier')


def test_deferred_shapes_are_fixed_and_a_network_without_blocks_is_refused():
    model = DenseNet(arch=(2, 3), growth_rate=4)  # the stem's channels still unknown
    reuse = feature_reuse(model)
    assert [r.weights.shape for r in reuse] == [(3, 3), (4, 4)]
    assert model.stem_weight().shape[1] == 1  # the book's Fashion-MNIST channel
    plain = nn.HybridSequential()
    plain.add(nn.Conv2D(4, 3, in_channels=1), nn.Dense(2, in_units=4))
    plain.initialize()
    with pytest.raises(UsageError, match='no DenseBlock'):
        feature_reuse(plain)


def test_bottleneck_models_read_the_1x1_convolution():
    model = DenseNetBC(num_init_features=8, growth_rate=4, block_config=(2, 3), bn_size=4,
                       num_classes=5, in_channels=3)  # the ImageNet layout, small
    model.net(np.zeros((1, 3, 32, 32)))
    reuse = feature_reuse(model)
    # Block 1: 8 + 4 + 4 = 16 channels, compressed to 8 for block 2: 8 + 3 * 4 = 20.
    assert reuse[0].channels == ((0, 8), (8, 12), (12, 16))
    assert reuse[1].channels == ((0, 8), (8, 12), (12, 16), (16, 20))
    conv = model.net[1].net[1][2]  # block 1, layer 2: its 1x1 bottleneck conv (16 outputs)
    assert conv.weight.shape == (16, 12, 1, 1)
    w = onp.abs(conv.weight.data().asnumpy())
    assert reuse[0].weights[1, 1] == pytest.approx(w[:, 8:12].sum() / 4, rel=1e-6)
    assert reuse[1].weights[0, 3] == pytest.approx(
        onp.abs(model.net[-1].weight.data().asnumpy())[:, :8].sum() / 8, rel=1e-6)


def test_summary_numbers_of_a_hand_made_matrix():
    nan = math.nan
    W = onp.array([[1.0, 2.0, 1.0], [nan, 4.0, 1.0], [nan, nan, 2.0]])
    reuse = BlockReuse(2, W, ('input', 'layer 1', 'layer 2'),
                       ('layer 1', 'layer 2', 'classifier'), ((0, 4), (4, 6), (6, 8)))
    s = summarize_block(reuse)
    # Layer 2's column (2, 4): (2 + 4)^2 / (2 * (4 + 16)) = 0.9; the input is least-weighted,
    # at half the other source's weight. The classifier's (1, 1, 2): 16 / (3 * 6); a quarter
    # of it on the input (even: a third); the later half (layer 2) 2 against 1.
    assert (s.block, s.exit, s.layers, s.compared, s.input_least) == (2, 'classifier', 2, 1, 1)
    assert s.layer_spread == pytest.approx(0.9)
    assert s.exit_spread == pytest.approx(16 / 18)
    assert (s.exit_input_share, s.even_share) == (pytest.approx(0.25), pytest.approx(1 / 3))
    assert s.input_ratio == pytest.approx(0.5)
    assert s.late_ratio == pytest.approx(2.0)
    lines = summarize([reuse]).lines()
    assert len(lines) == 5 and [line[:2] for line in lines[1:]] == ['1.', '2.', '3.', '4.']
    assert 'mean spread 0.90' in lines[1]
    assert 'for 1/1 layers; input / other sources 0.50' in lines[3]
    assert 'the earlier half 2.00' in lines[4]


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('make', [
    lambda: tiny_book(arch=(3, 2, 2)),
    lambda: get_model('densenet_bc_100', depth=16, growth_rate=4, in_channels=1),
], ids=['book', 'bc'])
def test_figure_and_table_are_written(make, tmp_path):
    model = make()
    reuse, summary = write_feature_reuse(model, tmp_path / 'out')
    assert sorted(os.listdir(tmp_path / 'out')) == ['feature-reuse.csv', 'feature-reuse.png']
    with Image.open(tmp_path / 'out' / 'feature-reuse.png') as im:
        assert im.format == 'PNG' and im.size[0] > 3 * im.size[1] / 2  # blocks side by side
    rows = read_rows(tmp_path / 'out' / 'feature-reuse.csv')
    # A block of L layers has (L + 1)(L + 2) / 2 visible cells.
    layers = [r.weights.shape[0] - 1 for r in reuse]
    assert len(rows) == sum((L + 1) * (L + 2) // 2 for L in layers)
    assert list(rows[0]) == ['block', 'source', 'target', 'value']
    for row in rows:
        r = reuse[int(row['block']) - 1]
        s, t = int(row['source']), int(row['target'])
        assert 0 <= s < t <= r.weights.shape[1]
        assert float(row['value']) == pytest.approx(r.weights[s, t - 1], rel=1e-7)
    assert [b.block for b in summary.blocks] == list(range(1, len(layers) + 1))
    assert [b.exit for b in summary.blocks][-1] == 'classifier'
    plot_feature_reuse(reuse, tmp_path / 'raw.png', normalize=False)
    assert os.path.getsize(tmp_path / 'raw.png') > 1000


def test_a_full_disk_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    from densenet.errors import DiskFull
    reuse = feature_reuse(tiny_book())
    path = tmp_path / 'feature-reuse.csv'
    path.write_text('before\n')

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr('densenet.system.files.os.replace', full)
    with pytest.raises(DiskFull, match='feature-reuse.csv: the disk is full'):
        write_feature_reuse_csv(reuse, path)
    assert path.read_text() == 'before\n'
    assert os.listdir(tmp_path) == ['feature-reuse.csv']  # no temporary file left


def target_inputs(model, X, block, targets, perturb=None, frozen=None):
    """The inputs of `targets` (blocks of `model.net`) for the batch X, as numpy, and the
    outputs of the dense block `block`'s layers.

    With `frozen` (those outputs from an earlier pass), each layer of `block` gives its
    recorded output, and the source `perturb` (0: the block's input, s: layer s) is
    shifted by 100; the rest of the network runs as it is."""
    handles, seen, outputs = [], {}, []
    for t, target in enumerate(targets):
        def capture(_, args, t=t):
            seen[t] = args[0].asnumpy()
        handles.append(target.register_forward_pre_hook(capture))
    for j, layer in enumerate(block.net, start=1):
        def hook(_, args, out, j=j):
            if frozen is None:
                outputs.append(out.asnumpy())
            else:
                out[:] = np.array(frozen[j - 1] + (100 if j == perturb else 0))
        handles.append(layer.register_forward_hook(hook))
    if perturb == 0:
        def shift(_, args):
            args[0][:] += 100
        handles.append(block.register_forward_pre_hook(shift))
    try:
        model.net(X)
    finally:
        for h in handles:
            h.detach()
    return [seen[t] for t in range(len(targets))], outputs


def test_channel_slices_are_the_blocks_concatenation():
    """Shift one source's output inside the real forward pass (every other layer's output
    held as it was): the channels of a target's input that change are exactly the ones
    `feature_reuse` attributes to that source, for every target and source of both blocks,
    the classifier (behind BatchNorm, ReLU and the pool) included."""
    model = tiny_book(arch=(3, 2))
    reuse = feature_reuse(model)
    X = np.array(onp.random.RandomState(0).uniform(0, 1, (1, 1, 32, 32)).astype('float32'))
    blocks = [(model.net[1], [*model.net[1].net, model.net[2]]),
              (model.net[3], [*model.net[3].net, model.net[-1]])]
    checked = 0
    for r, (block, targets) in zip(reuse, blocks, strict=True):
        base, recorded = target_inputs(model, X, block, targets)
        for s in range(len(targets)):
            moved, _ = target_inputs(model, X, block, targets, perturb=s, frozen=recorded)
            for t in range(len(targets)):
                diff = onp.abs(moved[t] - base[t]).reshape(1, base[t].shape[1], -1)
                changed = onp.flatnonzero(diff.max(axis=(0, 2)) > 1)
                # A source made after the target (s > t) changes none of its input.
                assert list(changed) == (list(range(*r.channels[s])) if s <= t else []), \
                    (r.block, t, s)
                checked += s <= t
    assert checked == 10 + 6  # block 1: 1 + 2 + 3 + 4 pairs; block 2: 1 + 2 + 3


def test_analyze_command_writes_both_files_for_the_shipped_weights(tmp_path, capsys):
    out = tmp_path / 'analysis'
    assert main(['analyze', '--out', str(out)]) == 0
    assert sorted(os.listdir(out)) == ['feature-reuse.csv', 'feature-reuse.png']
    assert len(read_rows(out / 'feature-reuse.csv')) == 4 * 15  # the book: 4 blocks of 4
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith('feature reuse (Huang et al. 2017, Figure 5), blocks 1, 2, 3, 4')
    assert [line[:2] for line in printed[1:5]] == ['1.', '2.', '3.', '4.']
    assert printed[5:] == [str(out / 'feature-reuse.png'), str(out / 'feature-reuse.csv')]
    (tmp_path / 'file').write_text('')
    assert main(['analyze', '--out', str(tmp_path / 'file')]) == 2
    assert main(['analyze', '--model', 'book', '--out', str(out)]) == 2
    assert 'give --params too' in capsys.readouterr().err
