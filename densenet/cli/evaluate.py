"""``densenet evaluate``: accuracy, per-class accuracy and the confusion matrix of a trained
model, in fp32, bf16 or int8 on MXNet, ONNX Runtime or OpenVINO, optionally flip-averaged."""
from __future__ import annotations

import argparse
import os

import numpy as onp

import densenet.cli.common as common
from densenet.data import check_sources
from densenet.deploy.inference import calibration_images
from densenet.models.tta import FlipAverage
from densenet.train.evaluate import confusion_matrix, evaluate, plot_confusion
from densenet.train.options import positive_int
from densenet.train.run_folder import CONFUSION


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('evaluate', help='test accuracy, per-class accuracy, confusion matrix')
    common.add_params_flags(p)
    p.add_argument('--batch-size', type=positive_int, default=256)
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files')
    p.add_argument('--data', help='an image folder: evaluate on its val split (the one the '
                                  'run held out, when it trained on this folder)')
    p.add_argument('--limit', type=positive_int,
                   help='score N images spread evenly over the split (the ones densenet train '
                        '--val-limit N validated on); default: all')
    p.add_argument('--device', default='auto')
    p.add_argument('--out', help='confusion-matrix PNG (default: confusion.png beside the params; '
                                 'for the shipped model, in the current folder)')
    common.add_engine_flags(p)
    p.add_argument('--tta', action='store_true',
                   help="average each image's logits with its mirror image's (test-time "
                        'augmentation; twice the time)')


def run(args: argparse.Namespace) -> int:
    common.check_engine_flags(args)
    check_sources(args.data, args.data_dir)
    trained, meta, ctxs = common.load_trained(args, common.device_for(args))
    data = common.eval_data(meta, args.batch_size, args.data, args.data_dir, args.limit)
    passes = 2 if args.tta else 1
    how = common.choose_engine(args, trained, meta, ctxs, passes * len(data.val_arrays[1]),
                               args.batch_size)
    fp32_preds = None
    # Another engine or precision that was asked for is scored against the package's own
    # fp32 predictions; fp32 that auto moved to another engine is not (it would cost a pass).
    if args.precision != 'fp32' or not (how or args.engine == 'mxnet'):
        _, fp32_acc, fp32_preds = evaluate(trained, data.val_dataloader(), ctxs)
    model = common.on_engine(args, trained, meta, ctxs, lambda: calibration_images(data))
    if args.tta:
        model = FlipAverage(model)
    loss, acc, preds = evaluate(model, data.val_dataloader(), ctxs)
    labels = onp.asarray(data.val_arrays[1])
    names = [str(c) for c in meta['classes']]
    confusion = confusion_matrix(labels, preds, len(names))
    on = f'{args.precision} on {args.engine}'
    print(f'test accuracy {acc:.4f} (loss {loss:.4f}, {len(labels)} images, {on}'
          + (', flip-averaged' if args.tta else '') + (f'; {how}' if how else '') + ')')
    if fp32_preds is not None:
        print(f'fp32 accuracy {fp32_acc:.4f}; {on} - fp32 = '
              f'{100 * (acc - fp32_acc):+.2f} points; top-1 agreement with fp32 '
              f'{(preds == fp32_preds).mean():.4f}')
    width = max(len(n) for n in names)
    for name, hits, total in zip(names, confusion.diagonal(), confusion.sum(axis=1), strict=True):
        print(f'  {name:<{width}} ' + (f'{hits / total:.4f}' if total else '-'))
    # Beside the params; the shipped model's in the current folder, not in the package.
    folder = '' if args.shipped else os.path.dirname(os.path.abspath(args.params))
    out = args.out or os.path.join(folder, CONFUSION)
    plot_confusion(confusion, names, out)
    print(f'confusion matrix: {out}')
    return 0
