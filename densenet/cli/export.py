"""``densenet export``: a trained model as MXNet's symbol + params, ONNX, or OpenVINO's IR."""
from __future__ import annotations

import argparse

import densenet.cli.common as common
from densenet.deploy.export import FORMATS, export
from densenet.models.preprocess import Preprocess
from densenet.train.run_folder import Run


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('export', help='MXNet symbol + params, ONNX or OpenVINO IR, from trained '
                                      'params')
    common.add_params_flags(p)
    p.add_argument('--format', choices=list(FORMATS), default='mxnet',
                   help="openvino: .xml + .bin, converted from the ONNX export "
                        "(pip install 'densenet[openvino]')")
    p.add_argument('--out', required=True, help='output folder')


def run(args: argparse.Namespace) -> int:
    Run(args.out).check_path()  # a folder, or one that can be made
    model, meta, _ = common.load_trained(args, 'cpu')
    for path in export(model, args.out, args.format, input_shape=common.input_shape(meta),
                       preprocess=Preprocess.from_meta(meta)):
        print(path)
    return 0
