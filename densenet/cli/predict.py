"""``densenet predict``: the class and its probability for each image file, on MXNet, ONNX
Runtime or OpenVINO, in fp32, bf16 or int8."""
from __future__ import annotations

import argparse

import numpy as onp
from mxnet import np, npx

import densenet.cli.common as common
from densenet.data import check_sources
from densenet.data.images import read_image
from densenet.models.preprocess import Preprocess

#: images per forward pass (the files are read and printed a batch at a time)
BATCH = 64


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('predict', help='class and probability for image files')
    common.add_params_flags(p)
    p.add_argument('--device', default='auto')
    common.add_engine_flags(p, auto_precision=True)
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files (int8: the '
                                      'calibration images of a Fashion-MNIST model)')
    p.add_argument('--no-convert', action='store_true',
                   help="skip the photo conversion of a Fashion-MNIST model (trim a uniform "
                        "background, negate a light one, fit into 28x28), which is made "
                        "only where an image is not already 28x28 on a dark background")
    p.add_argument('images', nargs='+', help='PNG/JPEG/... files of any size and mode')


def run(args: argparse.Namespace) -> int:
    common.check_engine_flags(args)
    args.data = None
    check_sources(args.data, args.data_dir)
    for path in args.images:  # every file checked before the model loads
        read_image(path)
    trained, meta, ctxs = common.load_trained(args, common.device_for(args))
    batch = min(len(args.images), BATCH)
    auto, named = args.precision == 'auto', args.engine
    common.choose_engine(args, trained, meta, ctxs, len(args.images), batch)
    found = None
    if auto and args.precision == 'int8':  # auto's INT8 only with calibration images at hand
        found = common.offline_calibration(meta, args.data_dir)
        if found is None:
            args.precision, args.engine = 'auto', named
            common.choose_engine(args, trained, meta, ctxs, len(args.images), batch, ('int8',))

    def calibration() -> onp.ndarray:
        return found if found is not None else common.calibration(meta, args.data_dir)
    model = common.on_engine(args, trained, meta, ctxs, calibration)
    pre = Preprocess.from_meta(meta)
    for start in range(0, len(args.images), batch):
        paths = args.images[start:start + batch]
        X, notes = pre(paths, convert=not args.no_convert)
        probs = npx.softmax(model(np.array(X, ctx=ctxs[0]))).asnumpy()
        for path, p, note in zip(paths, probs, notes, strict=True):
            c = int(p.argmax())
            print(f'{path}: {pre.classes[c]} ({p[c]:.3f}) [{args.precision} on {args.engine}]'
                  + _note(pre, note, args.no_convert))
    return 0


def _note(pre: Preprocess, notes: list[str], no_convert: bool) -> str:
    """What was done to an image before the model saw it, as the end of its line."""
    if not notes:
        return ''
    if pre.convert and not no_convert and any(n.startswith('fit ') for n in notes):
        return (f'  (made like Fashion-MNIST from a photo: {", ".join(notes)}; '
                '--no-convert skips this)')
    return f'  (note: {", ".join(notes)})'
