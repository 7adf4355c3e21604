"""Memory by depth (the chapter's "Cons"): per-layer activation memory from the traced
shapes, in the standard and the memory-efficient mode, and its figure."""
import pytest
from mxnet import np

from densenet import DenseNet, get_model
from densenet.analysis.memory import memory_by_depth, plot_memory_by_depth, totals

MB = 2 ** 20


def tiny():
    """The book's DenseNet with 2 blocks of 2 layers, k=4, transition width 8."""
    model = DenseNet(num_channels=8, growth_rate=4, arch=(2, 2), num_classes=3)
    model.net(np.zeros((1, 1, 32, 32)))
    return model


def values(n, *terms):
    """MB of float32 tensors: `terms` are (channels, side) pairs, for a batch of n."""
    return sum(n * c * s * s for c, s in terms) * 4 / MB


def test_per_layer_figures_of_a_tiny_model_match_the_hand_computed_shapes():
    """32x32, batch 2: the stem makes 16x16 (conv, 64 channels) then 8x8 (max pool);
    block 1 grows 64 -> 68 -> 72 channels at 8x8; the transition gives 8 channels at 4x4;
    block 2 grows 8 -> 12 -> 16; the head pools 16 channels."""
    rows = memory_by_depth(tiny(), side=32, batch_size=2)
    assert [r.name for r in rows] == [
        'stem conv', 'stem batchnorm', 'stem relu', 'stem max pool',
        'block 1 layer 1', 'block 1 layer 2', 'transition 1',
        'block 2 layer 1', 'block 2 layer 2', 'head']
    assert [r.output_shape for r in rows] == [
        (2, 64, 16, 16), (2, 64, 16, 16), (2, 64, 16, 16), (2, 64, 8, 8),
        (2, 68, 8, 8), (2, 72, 8, 8), (2, 8, 4, 4), (2, 12, 4, 4), (2, 16, 4, 4), (2, 3)]
    standard = [
        values(2, (64, 16)),                       # conv output: BatchNorm's backward reads it
        0,                                         # BatchNorm output: only ReLU reads it
        values(2, (64, 16)),                       # ReLU output
        values(2, (64, 8)),                        # max pool output
        values(2, (64, 8), (4, 8), (68, 8)),       # ReLU, new features, concatenation
        values(2, (68, 8), (4, 8), (72, 8)),
        values(2, (72, 8), (8, 8), (8, 4)),        # ReLU, 1x1 conv output, avg pool output
        values(2, (8, 4), (4, 4), (12, 4)),
        values(2, (12, 4), (4, 4), (16, 4)),
        values(2, (16, 4), (16, 1)),               # ReLU, global pool (logits not counted)
    ]
    efficient = standard[:4] + [
        values(2, (4, 8)),                         # only the new features
        values(2, (4, 8), (72, 8)),                # ... and the block's output, once
        standard[6],
        values(2, (4, 4)),
        values(2, (4, 4), (16, 4)),
        standard[9],
    ]
    assert [r.standard_mb for r in rows] == pytest.approx(standard)
    assert [r.efficient_mb for r in rows] == pytest.approx(efficient)
    assert rows[4].kept == ('relu', 'conv', 'concat') and rows[1].kept == ()
    assert totals(rows) == pytest.approx((sum(standard), sum(efficient)))
    assert rows[5].standard_total_mb == pytest.approx(sum(standard[:6]))


def test_memory_efficient_keeps_less_and_grows_linearly_inside_a_block():
    rows = memory_by_depth(get_model('book'), side=96, batch_size=128)
    standard, efficient = totals(rows)
    assert efficient < standard
    block = [r for r in rows if r.stage == 'block 1']
    steps = [b.standard_mb - a.standard_mb for a, b in zip(block, block[1:], strict=False)]
    assert steps == pytest.approx([steps[0]] * 3) and steps[0] > 0  # linear in the depth
    assert len({r.efficient_mb for r in block[:-1]}) == 1           # constant per layer
    transition = next(r for r in rows if r.stage == 'transition 1')
    assert rows[transition.index + 1].standard_mb < block[-1].standard_mb  # the drop


def test_a_network_without_dense_blocks_is_refused():
    with pytest.raises(ValueError, match='no dense block'):
        memory_by_depth(get_model('d2l_resnet18'), side=32)


def test_the_plot_is_written(tmp_path):
    path = tmp_path / 'memory.png'
    plot_memory_by_depth(memory_by_depth(tiny(), side=32, batch_size=2), path, 'tiny')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert [p.name for p in tmp_path.iterdir()] == ['memory.png']  # no temporary file left
