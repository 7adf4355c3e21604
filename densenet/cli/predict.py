"""``densenet predict``: the class and its probability for each image file."""
from __future__ import annotations

import argparse
from typing import Any

from mxnet import npx

from densenet.cli.common import add_params_flags, load_trained
from densenet.data.batches import to_tensor
from densenet.data.images import read_image
from densenet.data.inputs import read_for_model


def add_parser(sub: Any) -> None:
    p = sub.add_parser('predict', help='class and probability for image files')
    add_params_flags(p)
    p.add_argument('--device', default='auto')
    p.add_argument('images', nargs='+', help='PNG/JPEG files (for the Fashion-MNIST models '
                                             'ideally 28x28 grayscale)')


def run(args: argparse.Namespace) -> int:
    for path in args.images:  # every file checked before the model loads
        read_image(path)
    model, meta, ctxs = load_trained(args, args.device)
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
