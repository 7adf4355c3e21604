"""The model card (docs/model-card.md's ``<!-- generated: model-card -->``), rendered from
the registry, the shipped weights' metadata and the records in docs/records/.

Per registered model: trainable parameters and multiply-adds at its default input
and at its smallest side, counted on its traced graph
(`densenet.analysis.complexity`). Per shipped weights: what they were trained on,
their input and preprocessing, the test accuracy at each precision, latency and
throughput on each CPU a record names, the file's size and SHA-256, and the command
and commit that made them. A record joins the card by naming the weights' file in
``weights``: the rows of a ``bench`` record (inference, ``model`` ``book``) fill the
speed table; the rows of any other fill the accuracy table (``precision`` other than
fp32 with ``accuracy`` and ``agreement`` in %, or ``tta``: the flip-averaged accuracy).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

Table = Callable[[list[str], list[list[Any]]], str]


def _millions(n: float) -> str:
    return f'{n / 1e6:,.2f} M'


def models_table(table: Table) -> str:
    """Every registered model: parameters, multiply-adds at its default input and smallest
    side (single image), and whether weights ship for it."""
    from densenet.analysis.complexity import complexity
    from densenet.models.pretrained import SHIPPED
    from densenet.models.registry import MODELS, get_model
    rows = []
    for cfg in MODELS.values():
        model = get_model(cfg.name)
        at_default = complexity(model, cfg.input_size, cfg.channels)
        at_smallest = complexity(model, cfg.min_input_size, cfg.channels)
        shipped = ', '.join(d for m, d in SHIPPED if m == cfg.name) or '-'
        rows.append([f'`{cfg.name}`', f'{at_default.params:,}',
                     f'{cfg.input_size}x{cfg.input_size}x{cfg.channels}',
                     _millions(at_default.macs),
                     f'{cfg.min_input_size}x{cfg.min_input_size}',
                     _millions(at_smallest.macs), shipped])
    return table(['model', 'trainable parameters', 'default input', 'multiply-adds there',
                  'smallest side', 'multiply-adds there', 'shipped weights'], rows)


Records = list[tuple[str, dict[str, Any]]]


def weights_section(model: str, dataset: str, table: Table, all_records: Records,
                    machine_name: Callable[[dict[str, Any]], str]) -> str:
    """One shipped weights' card: data, input, accuracy, speed, file and provenance."""
    from densenet.models.params import read_meta
    from densenet.models.preprocess import Preprocess
    from densenet.models.pretrained import SHIPPED, WEIGHTS_DIR
    name = SHIPPED[model, dataset]
    path = os.path.join(WEIGHTS_DIR, name)
    meta = read_meta(path)
    assert meta is not None, path
    pre = Preprocess.from_meta(meta)
    records = [(n, r) for n, r in all_records
               if os.path.basename(str(r.get('weights', ''))) == name]
    out = [f'### `{model}` on {dataset}', '',
           table(['field', 'value'], [
               ['model', f'`{meta["model"]}`, {meta["kwargs"]}'],
               ['trained on', f'{dataset}, {len(pre.classes)} classes: '
                              + ', '.join(pre.classes)],
               ['input', f'{pre.input_size}x{pre.input_size}, {pre.channels} channel(s), '
                         f'{pre.layout}; files made {pre.source_size}x{pre.source_size} '
                         f'first, resized {pre.resize}, x{pre.scale:.6g}, '
                         f'mean {pre.mean}, std {pre.std}, polarity {pre.polarity}, '
                         f'photo conversion {pre.convert}'],
               ['file', f'`densenet/models/weights/{name}`, '
                        f'{os.path.getsize(path):,} bytes'],
               ['SHA-256', f'`{meta["sha256"]}` (checked at every load)'],
               ['command', f'`{meta["command"]}`'],
               ['commit', f'`{meta["commit"]}`'],
               ['recipe, seed, epochs', f'{meta["recipe"]}, {meta["seed"]}, {meta["epoch"]}'],
               ['training time', f'{meta["train_wall_s"] / 60:.1f} min on '
                                 f'{machine_name(meta["machine"])}, '
                                 f'{meta["machine"]["cores"]} cores'],
           ]), '']
    accuracy = [['fp32', f'{100 * meta["test_accuracy"]:.2f}%', '', f'`{meta["command"]}`',
                 machine_name(meta['machine'])]]
    for _, record in records:
        if record.get('layout') == 'bench':
            continue
        for row in record['rows']:
            where = f'{machine_name(record["machine"])}, {record["date"]}'
            command = f'`{row.get("command", record["command"])}`'
            if isinstance(row.get('tta'), (int, float)):
                accuracy.append(['fp32, flip-averaged', f'{row["tta"]:.2f}%', '', command,
                                 where])
            elif row.get('precision', 'fp32') != 'fp32' and 'accuracy' in row:
                agreement = f'{row["agreement"]:.2f}%' if 'agreement' in row else ''
                accuracy.append([row['precision'], f'{row["accuracy"]:.2f}%', agreement,
                                 command, where])
    out += ['**Test accuracy** (Fashion-MNIST test split, 10,000 images):', '',
            table(['precision', 'accuracy', 'top-1 agreement with fp32', 'command',
                   'measured on'], accuracy), '']
    missing = [p for p in ('int8', 'bf16') if not any(r[0].startswith(p) for r in accuracy)]
    if missing:
        out += [f'No record of these weights in {" or ".join(missing)} yet (bf16 needs a CPU '
                'with AVX512_BF16 or AMX): `densenet evaluate --precision '
                f'{missing[0]}` measures it.', '']
    speed, batch = [], set()
    for rec_name, record in records:
        if record.get('layout') != 'bench':
            continue
        for row in record['rows']:
            if row.get('task') != 'infer' or row.get('model') != 'book':
                continue
            batch.add(row['batch_size'])
            speed.append([machine_name(record['machine']), record['date'],
                          f'{row["framework"]} {row["precision"]}', row['side'],
                          f'{row["latency_ms_bs1"]:.2f}', f'{row["img_s"]:,.0f}',
                          f'`{rec_name}`'])
    cores = sorted({r['machine']['cores'] for _, r in records if r.get('layout') == 'bench'})
    out += [f'**Speed** ({"/".join(map(str, cores))} cores; latency: one image, median; '
            f'throughput: batches of '
            f'{", ".join(map(str, sorted(batch)))}, median):', '',
            table(['CPU', 'date', 'engine and precision', 'side', 'latency (ms)',
                   'throughput (img/s)', 'record'], speed), '']
    commands = sorted({r['command'] for _, r in records if r.get('layout') == 'bench'})
    out += ['Reproduce the speed rows with ' + ', '.join(f'`{c}`' for c in commands) + '.']
    return '\n'.join(out)


def render(table: Table, records: Records,
           machine_name: Callable[[dict[str, Any]], str]) -> str:
    """The whole generated part of the model card."""
    from densenet.models.pretrained import SHIPPED
    parts = ['## Models', '', models_table(table), '', '## Shipped weights', '']
    for model, dataset in SHIPPED:
        parts += [weights_section(model, dataset, table, records, machine_name), '']
    return '\n'.join(parts)
