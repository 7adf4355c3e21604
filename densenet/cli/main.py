"""``densenet train|evaluate|predict|export|features|launch|info``: the command line."""
import argparse
import dataclasses
import json
import os
import sys

from densenet.system import runtime
from densenet.errors import Diverged, UsageError

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


def _budget(text):
    """--budget: seconds from '60m', '1h30m', '900s'; 'off' is 0 (no budget)."""
    if text.strip().lower() in ('off', 'none'):
        return 0.0
    from densenet.train.planning import parse_duration
    try:
        return parse_duration(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_train(sub):
    from densenet.train.loop import RECIPES
    p = sub.add_parser('train', help='train a DenseNet (default: the book\'s) on Fashion-MNIST '
                                     'or an image folder')
    _add_model_flags(p, 'the model to train (default book); densenet.list_models() lists them')
    p.add_argument('--data', help='an image folder to train on instead of Fashion-MNIST: one '
                                  'sub-folder of images per class, or train/ and val/ laid '
                                  'out that way')
    p.add_argument('--channels', type=int, choices=[1, 3],
                   help='--data: train on grayscale (1) or RGB (3) images; default: 1 if every '
                        'image is grayscale')
    p.add_argument('--val-split', type=float,
                   help='--data without val/: share of each class held out (default 0.2)')
    p.add_argument('--skip-bad-images', action='store_true', default=None,
                   help='--data: skip unreadable image files (counted) instead of stopping')
    p.add_argument('--init', help='start from this params file (same architecture; this '
                                  'library\'s or a Gluon model-zoo file); a different class '
                                  'count gets a new classifier')
    p.add_argument('--freeze-features', action='store_true', default=None,
                   help='train only the classifier (with --init: fine-tune the head)')
    p.add_argument('--recipe', choices=sorted(RECIPES), default='book',
                   help='named defaults (book: the d2l chapter\'s recipe; fast-cpu: '
                        '94.0-94.3%% in 23 epochs at 64x64, 37-66 min on 2-core CPUs, '
                        '94.4%% flip-averaged (--tta), with --budget 60m, so that a slower '
                        'CPU plans fewer: 19 epochs, 94.1%% on a slower EPYC); flags below '
                        'override them')
    p.add_argument('--epochs', type=_positive_int,
                   help='epochs (with --budget: the most it may plan)')
    p.add_argument('--budget', type=_budget,
                   help='wall time for the whole run, e.g. 60m, 1h30m, 900s (fast-cpu: 60m; '
                        'off: none): the run times itself and plans its steps, and the '
                        'learning-rate schedule, to end inside it')
    p.add_argument('--batch-size', type=_positive_int)
    p.add_argument('--resize', type=_positive_int, help='square image side (book: 96)')
    p.add_argument('--progressive', type=int, metavar='SIDE',
                   help='progressive resizing: train the first epochs at this smaller side, '
                        'the rest (and every evaluation) at --resize (0: off)')
    p.add_argument('--progressive-until', type=float, metavar='SHARE',
                   help='share of the epochs trained at the --progressive side (default 0.5)')
    p.add_argument('--lr', type=_positive_float)
    p.add_argument('--momentum', type=float)
    p.add_argument('--wd', type=float, help='weight decay')
    p.add_argument('--label-smoothing', type=float,
                   help='share of the target spread over all classes (book: 0)')
    p.add_argument('--schedule', choices=['constant', 'cosine'])
    p.add_argument('--augment', action=argparse.BooleanOptionalAction, default=None,
                   help='random flips and 2-pixel shifts of training images')
    p.add_argument('--erase', type=float, metavar='P',
                   help='random erasing: a random rectangle (2-40%% of the image) of this '
                        'share of the training images is filled with random pixels (0: off)')
    p.add_argument('--ema', type=float, metavar='DECAY',
                   help='also keep a moving average of the weights with this decay (e.g. '
                        '0.999; 0: none), scored every epoch and saved as ema.params')
    p.add_argument('--tta', action=argparse.BooleanOptionalAction, default=None,
                   help='also score the final model (and its average) with each image\'s '
                        'logits averaged over it and its mirror image (summary.json)')
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
                   help='recompute each dense layer\'s concatenation and BN/ReLU in backward: '
                        'less memory, more time (fast path: MXNet\'s graph executor; with '
                        '--no-hybridize: imperative)')
    p.add_argument('--rank-params', help=argparse.SUPPRESS)
    p.add_argument('--hybridize', action=argparse.BooleanOptionalAction, default=True,
                   help='fast hybridized graph (default); --no-hybridize runs the '
                        'book-literal imperative code')


def _model_arg(text):
    """KEY=VALUE with VALUE a Python literal (12, 0.5, (6, 12, 24)) or else a string."""
    import ast
    key, sep, value = text.partition('=')
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f'{text!r} is not KEY=VALUE, e.g. growth_rate=24')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _add_model_flags(p, help_text):
    from densenet.models.registry import list_models
    p.add_argument('--model', choices=list_models(), help=help_text)
    p.add_argument('--model-arg', type=_model_arg, action='append', default=None,
                   metavar='KEY=VALUE', help='a constructor argument of --model, e.g. '
                   'depth=40 or growth_rate=24 (repeat for more)')


def _add_params_flags(p):
    p.add_argument('--params', help='a .params file from densenet train (default: the shipped '
                                    'book model trained on Fashion-MNIST)')
    _add_model_flags(p, 'the architecture of a bare params file without metadata '
                        '(default: what its .params.json or summary.json says, else book)')
    p.add_argument('--resize', type=_positive_int,
                   help='image side (default: the one the model was trained at)')


def _add_evaluate(sub):
    p = sub.add_parser('evaluate', help='test accuracy, per-class accuracy, confusion matrix')
    _add_params_flags(p)
    p.add_argument('--batch-size', type=_positive_int, default=256)
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files')
    p.add_argument('--data', help='an image folder: evaluate on its val split (the one the '
                                  'run held out, when it trained on this folder)')
    p.add_argument('--device', default='auto')
    p.add_argument('--out', help='confusion-matrix PNG (default: confusion.png beside the params; '
                                 'for the shipped model, in the current folder)')
    p.add_argument('--precision', choices=['fp32', 'bf16', 'int8'], default='fp32',
                   help='bf16/int8: oneDNN CPU inference (int8 calibrated on 512 '
                        'training images)')
    p.add_argument('--tta', action='store_true',
                   help='average each image\'s logits with its mirror image\'s (test-time '
                        'augmentation; twice the time)')


def _add_predict(sub):
    p = sub.add_parser('predict', help='class and probability for image files')
    _add_params_flags(p)
    p.add_argument('--device', default='auto')
    p.add_argument('images', nargs='+', help='PNG/JPEG files (for the Fashion-MNIST models '
                                             'ideally 28x28 grayscale)')


def _add_export(sub):
    p = sub.add_parser('export', help='MXNet symbol + params, or ONNX, from trained params')
    _add_params_flags(p)
    p.add_argument('--format', choices=['mxnet', 'onnx'], default='mxnet')
    p.add_argument('--out', required=True, help='output folder')


def _add_features(sub):
    p = sub.add_parser('features', help='embeddings (the pooled features that enter the '
                                        'classifier) and labels of a dataset, as .npz')
    _add_params_flags(p)
    p.add_argument('--data', help='an image folder (default: Fashion-MNIST)')
    p.add_argument('--data-dir', help='folder with the Fashion-MNIST IDX files')
    p.add_argument('--split', choices=['train', 'val', 'all'], default='val',
                   help='which images (Fashion-MNIST val = its test split)')
    p.add_argument('--batch-size', type=_positive_int, default=256)
    p.add_argument('--device', default='auto')
    p.add_argument('--out', required=True, help='the .npz file to write')


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
    _add_features(sub)
    _add_launch(sub)
    _add_info(sub)
    return parser


def train_config(args):
    from densenet.train.loop import RECIPES, TrainConfig
    if args.gpus:
        args.device = 'gpu:' + args.gpus
    values = dict(RECIPES[args.recipe], recipe=args.recipe)
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None and field.name not in ('recipe', 'model_args'):
            values[field.name] = given
    if args.model_arg:
        values['model_args'] = dict(args.model_arg)
    return TrainConfig(**values)


def cmd_train(args):
    from densenet.train.loop import fit
    cfg = train_config(args)
    cfg.validate()  # all but the model's minimum size, which fit checks first
    summary = fit(cfg)
    if summary is None:  # a dist worker other than rank 0
        print('worker done')
        return 0
    extra = ''.join(f', {k[6:]} {summary[k]:.4f}' for k in
                    ('final_ema_val_acc', 'final_val_acc_tta', 'final_ema_val_acc_tta')
                    if k in summary)
    print(f'final val acc {summary["final_val_acc"]:.4f}, best {summary["best_val_acc"]:.4f}'
          f'{extra}, {summary["wall_s"]:.0f} s; outputs in {cfg.out}')
    return 0


def load_trained(args, device='auto'):
    """(model on the fast path, its metadata, contexts) for --params (default: the shipped
    weights), rebuilt from its metadata or as --model for a bare file."""
    from densenet.models.params import load_model
    from densenet.modes import prepare_model
    ctxs = runtime.devices(device)
    if args.params is None:
        if args.model is not None:
            raise UsageError('--model names the architecture of a --params file: give '
                             '--params too (without it the shipped book model is used)')
        from densenet.models.pretrained import pretrained_path
        args.params, args.shipped = pretrained_path('book', 'fashion-mnist'), True
    elif not os.path.isfile(args.params):
        raise UsageError(f'--params {args.params}: no such file')
    model, meta = load_model(args.params, args.model,
                             dict(args.model_arg) if args.model_arg else None)
    meta = dict(meta, input_size=args.resize or meta['input_size'])
    if meta['input_size'] < model.min_input_size():
        raise UsageError(f'--resize {meta["input_size"]} is below the minimum input size '
                         f'{model.min_input_size()}')
    return prepare_model(model, ctxs, hybridize=True), meta, ctxs


def _input_shape(meta):
    side = meta['input_size']
    return (1, meta['channels'], side, side)


def check_data_flags(args):
    """--data and --data-dir checked before any model loads."""
    if args.data and args.data_dir:
        raise UsageError('--data (an image folder) and --data-dir (Fashion-MNIST) name two '
                         'datasets: give one')
    if args.data_dir:
        from densenet.data.fashion_mnist import check_data_dir
        check_data_dir(args.data_dir)
    if args.data:
        from densenet.data.image_folder import check_folder
        check_folder(args.data)


def eval_data(args, meta, batch_size):
    """The labelled images to score: --data's (or the run's own) folder, else Fashion-MNIST's
    test split, at the model's side and channels."""
    folder = getattr(args, 'data', None)
    if folder:
        from densenet.data.image_folder import ImageFolder
        run_data = meta.get('data') or {}
        same = run_data.get('root') and os.path.abspath(folder) == run_data['root']
        data = ImageFolder(folder, batch_size=batch_size, resize=meta['input_size'],
                           channels=meta['channels'],
                           val_split=run_data.get('val_split', 0.2) if same else 0.2,
                           seed=run_data.get('seed', 0) if same else 0)
        if list(data.classes) != list(meta['classes']):
            raise UsageError(f'--data {folder} has the classes {", ".join(data.classes)}, the '
                             f'model was trained on {", ".join(map(str, meta["classes"]))}: give '
                             'a folder with the same class folders')
        return data
    if meta['channels'] != 1 or len(meta['classes']) != 10:
        raise UsageError(f'this model takes {meta["channels"]}-channel images of '
                         f'{len(meta["classes"])} classes, not Fashion-MNIST: give --data with '
                         'a folder of its classes')
    from densenet.data.fashion_mnist import FashionMNIST
    side = meta['input_size']
    return FashionMNIST(batch_size=batch_size, resize=(side, side), root=args.data_dir)


def cmd_evaluate(args):
    import numpy as onp
    from densenet.train.loop import evaluate
    from densenet.system.machine import unsupported
    why = unsupported(args.precision, runtime.capabilities())
    if why:
        raise UsageError(f'--precision {args.precision}: {why}')
    check_data_flags(args)
    model, meta, ctxs = load_trained(args, 'cpu' if args.precision != 'fp32' else args.device)
    data = eval_data(args, meta, args.batch_size)
    fp32_preds = None
    if args.precision != 'fp32':
        from densenet.deploy.inference import calibration_images, inference_model
        _, fp32_acc, fp32_preds = evaluate(model, data.val_dataloader(), ctxs)
        model = inference_model(model, args.precision, calibration_images(data),
                                input_shape=_input_shape(meta))
    if args.tta:
        from densenet.models.tta import FlipAverage
        model = FlipAverage(model)
    loss, acc, preds = evaluate(model, data.val_dataloader(), ctxs)
    labels = onp.asarray(data.val_arrays[1])
    names = [str(c) for c in meta['classes']]
    confusion = onp.zeros((len(names), len(names)), dtype=onp.int64)
    onp.add.at(confusion, (labels, preds), 1)
    print(f'test accuracy {acc:.4f} (loss {loss:.4f}, {len(labels)} images, '
          f'{args.precision}' + (', flip-averaged' if args.tta else '') + ')')
    if fp32_preds is not None:
        print(f'fp32 accuracy {fp32_acc:.4f}; {args.precision} - fp32 = '
              f'{100 * (acc - fp32_acc):+.2f} points; top-1 agreement with fp32 '
              f'{(preds == fp32_preds).mean():.4f}')
    width = max(len(n) for n in names)
    for c, name in enumerate(names):
        total = confusion[c].sum()
        print(f'  {name:<{width}} ' + (f'{confusion[c, c] / total:.4f}' if total else '-'))
    out = args.out or ('confusion.png' if getattr(args, 'shipped', False)  # not in the package
                       else os.path.join(os.path.dirname(os.path.abspath(args.params)),
                                         'confusion.png'))
    plot_confusion(confusion, names, out)
    print(f'confusion matrix: {out}')
    return 0


def plot_confusion(confusion, names, path):
    from densenet.system.files import pyplot, save_figure
    n = len(names)
    size = max(5.5, 0.45 * n + 2)
    fig, ax = pyplot().subplots(figsize=(size + 1, size))
    im = ax.imshow(confusion, cmap='Blues')
    ax.set_xticks(range(n), names, rotation=45, ha='right')
    ax.set_yticks(range(n), names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, confusion[i, j], ha='center', va='center', fontsize=7,
                        color='white' if confusion[i, j] > confusion.max() / 2 else 'black')
    fig.colorbar(im)
    fig.tight_layout()
    save_figure(fig, path)


def load_image(path):
    """A file as a 28x28 uint8 grayscale array (full range kept), and notes on conversions."""
    import numpy as onp
    from PIL import Image
    from densenet.data.images import read_image  # its ImageError is a UsageError
    gray, notes = read_image(path)
    if gray.shape != (28, 28):
        notes.append(f'resized {gray.shape[1]}x{gray.shape[0]} to 28x28')
        gray = onp.asarray(Image.fromarray(gray).resize((28, 28), Image.BILINEAR))
    return gray, notes


def read_for(meta, path):
    """An image file as the model's training data looked: Fashion-MNIST models see 28x28
    grayscale first (as their data was); folder models the file at its own size."""
    if meta.get('dataset') == 'fashion-mnist':
        return load_image(path)
    from densenet.data.images import read_image
    return read_image(path, meta['channels'])


def cmd_predict(args):
    from mxnet import npx
    from densenet.data.batches import to_tensor
    from densenet.data.images import read_image
    for path in args.images:  # every file checked before the model loads
        read_image(path)
    model, meta, ctxs = load_trained(args, args.device)
    images = [read_for(meta, p) for p in args.images]
    side = meta['input_size']
    names = [str(c) for c in meta['classes']]
    for path, (image, notes) in zip(args.images, images):
        X = to_tensor(image[None], (side, side))
        p = npx.softmax(model(X.as_in_context(ctxs[0])), axis=1).asnumpy()[0]
        c = int(p.argmax())
        note = f'  (note: {", ".join(notes)})' if notes else ''
        print(f'{path}: {names[c]} ({p[c]:.3f}){note}')
    return 0


def cmd_export(args):
    from densenet.deploy.export import export
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f'--out {args.out} is a file, not a folder: choose a folder')
    model, meta, _ = load_trained(args, 'cpu')
    for path in export(model, args.out, args.format, input_shape=_input_shape(meta)):
        print(path)
    return 0


def cmd_features(args):
    import numpy as onp
    from densenet.system.files import atomic_write
    if not args.out.endswith('.npz'):
        raise UsageError(f'--out {args.out}: give a file name ending in .npz')
    check_data_flags(args)
    model, meta, ctxs = load_trained(args, args.device)
    data = eval_data(args, meta, args.batch_size)
    splits = ['train', 'val'] if args.split == 'all' else [args.split]
    feats, labels, which = [], [], []
    for split in splits:
        loader = data.get_dataloader(train=False) if split == 'val' else _plain_train(data)
        for X, y in loader:
            feats.append(model.forward_features(X.as_in_context(ctxs[0])).asnumpy())
            labels.append(y.asnumpy())
            which += [split] * len(y)
    arrays = {'features': onp.concatenate(feats), 'labels': onp.concatenate(labels),
              'split': onp.array(which), 'classes': onp.array([str(c) for c in meta['classes']])}
    paths = getattr(data, 'paths', None)
    if paths is not None:
        index = {'train': data.train_index, 'val': data.val_index}
        arrays['paths'] = onp.array([paths[i] for s in splits for i in index[s]])
    def write(tmp):
        with open(tmp, 'wb') as f:  # a file object: savez would add .npz to a temporary name
            onp.savez(f, **arrays)
    atomic_write(args.out, write)
    print(f'{args.out}: features {arrays["features"].shape}, labels '
          f'{arrays["labels"].shape}, splits {", ".join(splits)}')
    return 0


def _plain_train(data):
    """The training images in order, without shuffling or augmentation."""
    from densenet.data.batches import BatchLoader
    images, labels = data.train_arrays
    side = data.side if hasattr(data, 'side') else data.resize[0]
    return BatchLoader(images, labels, data.batch_size, (side, side))


def cmd_launch(args):
    from densenet.system.launch import launch, multi_machine_help
    command = args.worker_command
    command = command[1:] if command[:1] == ['--'] else command
    if not command:
        raise UsageError('no command to launch: densenet launch -n 2 -s 1 -- '
                         'densenet train --kvstore dist_sync ...')
    print(multi_machine_help(args.num_workers, args.num_servers, command), flush=True)
    return launch(command, args.num_workers, args.num_servers)


def cmd_info(args):
    from densenet.system.machine import summary_line
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
            'predict': cmd_predict, 'export': cmd_export, 'features': cmd_features,
            'info': cmd_info}


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
