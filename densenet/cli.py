"""``densenet train|evaluate|predict|export|launch|info``: the command-line face of the library."""
import argparse
import dataclasses
import json
import os
import sys

from . import runtime
from .errors import Diverged, UsageError

PROG = 'densenet'


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be positive, got {value}')
    return value


def _add_train(sub):
    from .training import RECIPES
    p = sub.add_parser('train', help='train the book\'s DenseNet on Fashion-MNIST')
    p.add_argument('--recipe', choices=sorted(RECIPES), default='book',
                   help='named defaults (book: the d2l chapter\'s recipe; fast-cpu: '
                        '94%% in 23 epochs at 64x64, 54 min on a 2-core AMX Xeon, longer on '
                        'other CPUs: see the estimate the run prints); flags below override them')
    p.add_argument('--epochs', type=_positive_int)
    p.add_argument('--batch-size', type=_positive_int)
    p.add_argument('--resize', type=_positive_int, help='square image side (book: 96)')
    p.add_argument('--lr', type=_positive_float)
    p.add_argument('--momentum', type=float)
    p.add_argument('--wd', type=float, help='weight decay')
    p.add_argument('--label-smoothing', type=float,
                   help='share of the target spread over all classes (book: 0)')
    p.add_argument('--schedule', choices=['constant', 'cosine'])
    p.add_argument('--augment', action=argparse.BooleanOptionalAction, default=None,
                   help='random flips and 2-pixel shifts of training images')
    p.add_argument('--limit', type=_positive_int, help='use the first N training images')
    p.add_argument('--holdout', type=int,
                   help='validate on the last N training images instead of the test split '
                        '(to choose settings without it); train on the rest')
    p.add_argument('--device', default='auto', help='auto, cpu, gpu, gpu:0,1')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--data-dir', help='folder with the four Fashion-MNIST IDX files')
    p.add_argument('--out', default='runs/densenet', help='output folder')
    p.add_argument('--resume', action='store_true',
                   help='continue the run in --out after its last completed epoch')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the run already in --out (without it, or --resume, a folder '
                        'that holds a run is refused)')
    p.add_argument('--kvstore', choices=['local', 'device', 'dist_sync', 'dist_device_sync'],
                   help='gradient aggregation (default device); dist_* inside `densenet launch`')
    p.add_argument('--gpus', help='GPU ids, e.g. 0,1 (the same as --device gpu:0,1)')
    p.add_argument('--memory-efficient', action='store_true', default=None,
                   help='recompute concatenations and BN/ReLU in backward: less memory, '
                        'imperative only (with --no-hybridize)')
    p.add_argument('--rank-params', help=argparse.SUPPRESS)
    p.add_argument('--hybridize', action=argparse.BooleanOptionalAction, default=True,
                   help='fast hybridized graph (default); --no-hybridize runs the '
                        'book-literal imperative code')


def _add_evaluate(sub):
    p = sub.add_parser('evaluate', help='test accuracy, per-class accuracy, confusion matrix')
    p.add_argument('--params', required=True, help='a .params file from densenet train')
    p.add_argument('--resize', type=_positive_int,
                   help='image side (default: from summary.json beside the params, else 96)')
    p.add_argument('--batch-size', type=_positive_int, default=256)
    p.add_argument('--data-dir')
    p.add_argument('--device', default='auto')
    p.add_argument('--out', help='confusion-matrix PNG (default: confusion.png beside the params)')
    p.add_argument('--precision', choices=['fp32', 'bf16', 'int8'], default='fp32',
                   help='bf16/int8: oneDNN CPU inference (int8 calibrated on 512 '
                        'training images)')


def _add_predict(sub):
    p = sub.add_parser('predict', help='class and probability for image files')
    p.add_argument('--params', required=True)
    p.add_argument('--resize', type=_positive_int)
    p.add_argument('--device', default='auto')
    p.add_argument('images', nargs='+', help='PNG/JPEG files, ideally 28x28 grayscale')


def _add_export(sub):
    p = sub.add_parser('export', help='MXNet symbol + params, or ONNX, from trained params')
    p.add_argument('--params', required=True)
    p.add_argument('--format', choices=['mxnet', 'onnx'], default='mxnet')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--resize', type=_positive_int,
                   help='traced input side (default: from summary.json, else 96); '
                        'the ONNX batch axis stays dynamic')


def _add_launch(sub):
    p = sub.add_parser('launch', help='run a command as the workers of a local MXNet '
                                      'parameter-server cluster')
    p.add_argument('-n', '--num-workers', type=_positive_int, default=2)
    p.add_argument('-s', '--num-servers', type=_positive_int, default=1)
    p.add_argument('worker_command', nargs=argparse.REMAINDER, metavar='command',
                   help='after --: the worker command, e.g. densenet train --kvstore dist_sync')


def _add_info(sub):
    p = sub.add_parser('info', help='this machine: CPU, instruction sets, precisions, MXNet '
                                    'build, threads')
    p.add_argument('--json', action='store_true', help='the description as JSON')


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (and a pointer to --help) instead of the usage block."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def build_parser():
    parser = Parser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_launch(sub)
    _add_info(sub)
    return parser


def train_config(args):
    from .training import RECIPES, TrainConfig
    if args.gpus:
        args.device = 'gpu:' + args.gpus
    values = dict(RECIPES[args.recipe], recipe=args.recipe)
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None and field.name != 'recipe':
            values[field.name] = given
    return TrainConfig(**values)


def cmd_train(args):
    from .training import fit
    cfg = train_config(args)
    cfg.validate()  # all but the model's minimum size, which fit checks first
    summary = fit(cfg)
    if summary is None:  # a dist worker other than rank 0
        print('worker done')
        return 0
    print(f'final val acc {summary["final_val_acc"]:.4f}, best {summary["best_val_acc"]:.4f}, '
          f'{summary["wall_s"]:.0f} s; outputs in {cfg.out}')
    return 0


def _resize_for(args, model):
    """The image side to use: --resize, else summary.json's, else 96; checked against `model`."""
    side = _configured_resize(args)
    if side < model.min_input_size():
        raise UsageError(f'--resize {side} is below the minimum input size '
                         f'{model.min_input_size()}')
    return side


def _configured_resize(args):
    if args.resize:
        return args.resize
    summary = os.path.join(os.path.dirname(os.path.abspath(args.params)), 'summary.json')
    if os.path.exists(summary):
        with open(summary) as f:
            return json.load(f)['config']['resize']
    return 96


def load_trained(params, device='auto'):
    """The book's DenseNet with `params` loaded, hybridized, on `device`'s contexts."""
    if not os.path.isfile(params):
        raise UsageError(f'--params {params}: no such file')
    from mxnet import np
    from .model import DenseNet
    from .training import prepare_model
    ctxs = runtime.devices(device)
    model = DenseNet()
    model.net(np.zeros((1, 1, 96, 96)))
    try:
        model.net.load_parameters(params)
    except Exception as e:  # MXNet reports a mismatch as AssertionError or MXNetError
        raise UsageError(f'--params {params} does not fit the book\'s DenseNet (another '
                         f'architecture or not a parameter file): {_reason(e)}') from None
    from .training import all_finite
    if not all_finite(model.net):
        raise UsageError(f'--params {params} holds NaN or infinite values: the run that wrote '
                         'it diverged; use an earlier checkpoint or train again with a lower --lr')
    return prepare_model(model, ctxs, hybridize=True), ctxs


def _reason(error):
    """The informative line of an exception's message (MXNet's carry a C++ traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(('Traceback', 'File ', '[bt]',
                                                             'Stack trace'))]
    return (useful[-1] if useful else type(error).__name__)[:200]


def cmd_evaluate(args):
    import numpy as onp
    from .data import CLASSES, FashionMNIST
    from .training import evaluate
    from .machine import unsupported
    why = unsupported(args.precision, runtime.capabilities())
    if why:
        raise UsageError(f'--precision {args.precision}: {why}')
    if args.data_dir:
        from .data import check_data_dir
        check_data_dir(args.data_dir)
    model, ctxs = load_trained(args.params, 'cpu' if args.precision != 'fp32' else args.device)
    resize = _resize_for(args, model)
    data = FashionMNIST(batch_size=args.batch_size, resize=(resize, resize), root=args.data_dir)
    fp32_preds = None
    if args.precision != 'fp32':
        from .inference import calibration_images, inference_model
        _, fp32_acc, fp32_preds = evaluate(model, data.val_dataloader(), ctxs)
        model = inference_model(model, args.precision, calibration_images(data),
                                input_shape=(1, 1, resize, resize))
    loss, acc, preds = evaluate(model, data.val_dataloader(), ctxs)
    labels = data.val_arrays[1]
    confusion = onp.zeros((10, 10), dtype=onp.int64)
    onp.add.at(confusion, (labels, preds), 1)
    print(f'test accuracy {acc:.4f} (loss {loss:.4f}, {len(labels)} images, '
          f'{args.precision})')
    if fp32_preds is not None:
        print(f'fp32 accuracy {fp32_acc:.4f}; {args.precision} - fp32 = '
              f'{100 * (acc - fp32_acc):+.2f} points; top-1 agreement with fp32 '
              f'{(preds == fp32_preds).mean():.4f}')
    for c in range(10):
        print(f'  {CLASSES[c]:<12} {confusion[c, c] / confusion[c].sum():.4f}')
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.params)),
                                   'confusion.png')
    plot_confusion(confusion, CLASSES, out)
    print(f'confusion matrix: {out}')
    return 0


def plot_confusion(confusion, names, path):
    from .files import pyplot, save_figure
    fig, ax = pyplot().subplots(figsize=(6.5, 5.5))
    im = ax.imshow(confusion, cmap='Blues')
    ax.set_xticks(range(10), names, rotation=45, ha='right')
    ax.set_yticks(range(10), names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    for i in range(10):
        for j in range(10):
            ax.text(j, i, confusion[i, j], ha='center', va='center', fontsize=7,
                    color='white' if confusion[i, j] > confusion.max() / 2 else 'black')
    fig.colorbar(im)
    fig.tight_layout()
    save_figure(fig, path)


def load_image(path):
    """A file as a 28x28 uint8 grayscale array (full range kept), and notes on conversions."""
    import numpy as onp
    from PIL import Image
    from .images import read_image  # its ImageError is a UsageError
    gray, notes = read_image(path)
    if gray.shape != (28, 28):
        notes.append(f'resized {gray.shape[1]}x{gray.shape[0]} to 28x28')
        gray = onp.asarray(Image.fromarray(gray).resize((28, 28), Image.BILINEAR))
    return gray, notes


def cmd_predict(args):
    import numpy as onp
    from mxnet import npx
    from .data import CLASSES, _resize_to_tensor
    images = [load_image(p) for p in args.images]  # all checked before the model loads
    model, ctxs = load_trained(args.params, args.device)
    resize = _resize_for(args, model)
    X = _resize_to_tensor(onp.stack([im for im, _ in images]), (resize, resize))
    probs = npx.softmax(model(X.as_in_context(ctxs[0])), axis=1).asnumpy()
    for path, (_, notes), p in zip(args.images, images, probs):
        c = int(p.argmax())
        note = f'  (note: {", ".join(notes)})' if notes else ''
        print(f'{path}: {CLASSES[c]} ({p[c]:.3f}){note}')
    return 0


def cmd_export(args):
    from .export import export
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f'--out {args.out} is a file, not a folder: choose a folder')
    model, _ = load_trained(args.params, 'cpu')
    resize = _resize_for(args, model)
    for path in export(model, args.out, args.format, input_shape=(1, 1, resize, resize)):
        print(path)
    return 0


def cmd_launch(args):
    from .launch import launch, multi_machine_help
    command = args.worker_command
    command = command[1:] if command[:1] == ['--'] else command
    if not command:
        raise UsageError('no command to launch: densenet launch -n 2 -s 1 -- '
                         'densenet train --kvstore dist_sync ...')
    print(multi_machine_help(args.num_workers, args.num_servers, command), flush=True)
    return launch(command, args.num_workers, args.num_servers)


def cmd_info(args):
    from .machine import summary_line
    desc = runtime.machine()
    if args.json:
        print(json.dumps(desc, indent=1))
        return 0
    print(summary_line(desc))
    width = max(len(k) for k in desc)
    for key, value in desc.items():
        if isinstance(value, dict):
            value = ', '.join(f'{k}: {"-" if v is None else v}' for k, v in value.items())
        elif isinstance(value, list):
            value = ('; ' if any(' ' in v for v in value) else ' ').join(value) or '-'
        print(f'  {key:<{width}} {value}')
    return 0


COMMANDS = {'launch': cmd_launch, 'train': cmd_train, 'evaluate': cmd_evaluate,
            'predict': cmd_predict, 'export': cmd_export, 'info': cmd_info}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:  # anything else is a bug: its traceback stays, status 1
        print(f'{PROG} {args.command}: error: {e}', file=sys.stderr)
        return 2
    except Diverged as e:
        print(f'{PROG} {args.command}: error: {e}', file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f'{PROG} {args.command}: error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'{PROG} {args.command}: interrupted', file=sys.stderr)
        return 130
