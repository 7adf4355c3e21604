"""``densenet predict``: the class and its probability for each image file, on MXNet, ONNX
Runtime or OpenVINO, in fp32, bf16 or int8."""
from __future__ import annotations

import argparse
import os
from typing import Any

from mxnet import npx

from densenet.cli.common import (
    MXOutputs,
    add_engine_flags,
    add_params_flags,
    check_data_flags,
    check_engine_flags,
    eval_data,
    input_shape,
    load_trained,
)
from densenet.data.batches import to_tensor
from densenet.data.images import read_image
from densenet.data.inputs import read_for_model
from densenet.deploy.engines import engine
from densenet.deploy.inference import calibration_images


def add_parser(sub: Any) -> None:
    p = sub.add_parser('predict', help='class and probability for image files')
    add_params_flags(p)
    p.add_argument('--device', default='auto')
    add_engine_flags(p)
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files (int8: the '
                                      'calibration images of a Fashion-MNIST model)')
    p.add_argument('images', nargs='+', help='PNG/JPEG files (for the Fashion-MNIST models '
                                             'ideally 28x28 grayscale)')


def _calibration(args: argparse.Namespace, meta: dict[str, Any]) -> Any:
    """int8's calibration images: the training images of the run's own image folder
    (where it is still there), else Fashion-MNIST's."""
    root = (meta.get('data') or {}).get('root')
    args.data = root if root and os.path.isdir(root) else None
    check_data_flags(args)
    return calibration_images(eval_data(args, meta, 64))


def run(args: argparse.Namespace) -> int:
    check_engine_flags(args)
    args.data = None
    check_data_flags(args)
    for path in args.images:  # every file checked before the model loads
        read_image(path)
    on_mxnet_fp32 = args.engine == 'mxnet' and args.precision == 'fp32'
    model, meta, ctxs = load_trained(args, args.device if on_mxnet_fp32 else 'cpu')
    if not on_mxnet_fp32:
        calib = _calibration(args, meta) if args.precision == 'int8' else None
        model = MXOutputs(engine(model, args.engine, args.precision, calib, input_shape(meta)))
    images = [read_for_model(meta, p) for p in args.images]
    side = meta['input_size']
    names = [str(c) for c in meta['classes']]
    for path, (image, notes) in zip(args.images, images):
        X = to_tensor(image[None], (side, side))
        p = npx.softmax(model(X.as_in_context(ctxs[0])), axis=1).asnumpy()[0]
        c = int(p.argmax())
        note = f'  (note: {", ".join(notes)})' if notes else ''
        print(f'{path}: {names[c]} ({p[c]:.3f}){note}')
    return 0
