"""`TrainConfig`: everything that defines a training run, each option defined once.

The defaults are the book's recipe. Each field's `Option` (options.py) holds
its flag, type, allowed range and help; the parser of ``densenet train``, the
per-option checks and the reference table are all derived from these fields.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import os
from typing import Any, TypeVar

from densenet.data import TRAIN_SIZE, check_sources
from densenet.errors import UsageError
from densenet.models.registry import model_kwargs
from densenet.system import runtime
from densenet.train.options import (
    EXTENSION_OPTIONS,
    check_ranges,
    default_of,
    option,
    positive_int,
)
from densenet.train.planning import parse_duration
from densenet.train.recipes import RECIPES
from densenet.train.run_folder import Run

KVSTORES = ('local', 'device', 'dist_sync', 'dist_device_sync')
T = TypeVar('T')


def extension_defaults() -> dict[str, object]:
    """The registered extensions' options at their defaults.

    Returns:
        {option: default}.
    """
    return {name: default_of(field) for name, field in EXTENSION_OPTIONS.items()}


def parse_budget(text: str) -> float:
    """``--budget``: a duration in seconds.

    Args:
        text: '60m', '1h30m', '900s', a number of seconds, or 'off' (no budget).

    Returns:
        The seconds (0 for 'off').

    Raises:
        argparse.ArgumentTypeError: text that is not a duration.
    """
    if text.strip().lower() in ('off', 'none'):
        return 0.0
    try:
        return parse_duration(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_model_arg(text: str) -> tuple[str, object]:
    """``--model-arg``: one constructor argument.

    Args:
        text: KEY=VALUE, VALUE a Python literal (12, 0.5, (6, 12, 24)) or else a string.

    Returns:
        (key, value).

    Raises:
        argparse.ArgumentTypeError: text without '='.
    """
    key, sep, value = text.partition('=')
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f'{text!r} is not KEY=VALUE, e.g. growth_rate=24')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; the defaults are the book's recipe.

    Each field is one option, defined once with `densenet.train.options.option`:
    its flag, type, check, default, help and group. The command line's
    ``densenet train`` flags, their validation and the reference docs' table
    follow from the fields.
    """

    recipe: str = option(
        'book', group='recipe', choices=tuple(sorted(RECIPES)),
        help="named defaults: book is the d2l chapter's recipe; fast-cpu trains at 64x64 "
             'with momentum, weight decay, a cosine schedule, augmentation and label '
             'smoothing, scores with flip averaging and plans itself into a 60-minute '
             'budget; the flags below override them')

    # The model.
    model: str = option(
        'book', group='model',
        help='the model to train (default book); densenet.list_models() lists them')
    model_args: dict[str, object] = option(
        factory=dict, group='model', kind='append', parse=parse_model_arg, metavar='KEY=VALUE',
        flag='--model-arg',
        help='a constructor argument of --model, e.g. depth=40, growth_rate=24 or '
             'transition_pool=max (repeat for more)')
    init: str | None = option(
        None, group='model', check=os.path.isfile,
        error='{flag} {value}: no such file; give a .params file of the same architecture',
        help="start from this params file (same architecture; this library's or a Gluon "
             'model-zoo file); a different class count gets a new classifier')
    freeze_features: bool = option(
        False, group='model', kind='switch',
        help='train only the classifier (with --init: fine-tune the head)')

    # The data.
    data: str | None = option(
        None, group='data',
        help='an image folder to train on instead of Fashion-MNIST: one sub-folder of '
             'images per class, or train/ and val/ laid out that way')
    channels: int | None = option(
        None, group='data', parse=int, choices=(1, 3),
        help='--data: train on grayscale (1) or RGB (3) images; default: 1 if every image '
             'is grayscale')
    val_split: float = option(
        0.2, group='data', parse=float, within='(0, 1)',
        help='--data without val/: share of each class held out (default 0.2)')
    skip_bad_images: bool = option(
        False, group='data', kind='switch',
        help='--data: skip unreadable image files (counted) instead of stopping')
    data_dir: str | None = option(
        None, group='data', help='folder with the four Fashion-MNIST IDX files')
    limit: int | None = option(
        None, group='data', parse=positive_int, within='[1, inf)',
        help='use the first N training images')
    holdout: int = option(
        0, group='data', parse=int, within=f'[0, {TRAIN_SIZE})',
        error='{flag} must be between 0 and ' + str(TRAIN_SIZE - 1) + ' images, got {value}',
        help='validate on the last N training images instead of the test split (to choose '
             'settings without it); train on the rest')
    val_limit: int | None = option(
        None, group='data', parse=positive_int, within='[1, inf)',
        help='validate on N images spread evenly over the validation split (quicker '
             'epochs; densenet evaluate --limit N scores the same ones); default: all')
    resize: int = option(
        96, group='data', parse=positive_int, within='[1, inf)',
        help='square image side (book: 96)')
    batch_size: int = option(
        128, group='data', parse=positive_int, within='[1, inf)', help='images per step')

    # Optimisation.
    lr: float = option(
        0.01, group='optimisation', parse=float, within='(0, inf)',
        error='{flag} must be a positive finite number, got {value}',
        help='learning rate (the peak of a cosine schedule)')
    momentum: float = option(
        0.0, group='optimisation', parse=float, within='[0, 1)',
        help="SGD's momentum (book: 0)")
    seed: int = option(
        0, group='optimisation', parse=int, within=f'[0, {2**32})',
        error='{flag} must be between 0 and 2**32 - 1, got {value}',
        help='seed of the initialisation, the shuffling and the augmentation')

    # Schedule and budget.
    epochs: int = option(
        10, group='schedule and budget', parse=positive_int, within='[1, inf)',
        help='epochs (with --budget: the most it may plan)')
    schedule: str = option(
        'constant', group='schedule and budget', choices=('constant', 'cosine'),
        help='the learning rate: constant, or cosine (per step, to 0 at the end)')
    budget: float | None = option(
        None, group='schedule and budget', parse=parse_budget, within='[0, inf)',
        error='{flag} must be a duration, got {value} s',
        help='wall time for the whole run, e.g. 60m, 1h30m, 900s (off: none): the run times '
             'itself and plans its steps, and the learning-rate schedule, to end inside it')
    progressive: int = option(
        0, group='schedule and budget', parse=int, metavar='SIDE',
        help='progressive resizing: train the first epochs at this smaller side, the rest '
             '(and every evaluation) at --resize (0: off)')
    progressive_until: float = option(
        0.5, group='schedule and budget', parse=float, metavar='SHARE', within='(0, 1)',
        error='{flag} must be a share of the epochs between 0 and 1, e.g. 0.5; got {value}',
        help='share of the epochs trained at the --progressive side (default 0.5)')

    # Regularisation.
    wd: float = option(
        0.0, group='regularisation', parse=float, within='[0, inf)',
        error='{flag} must be a finite number >= 0, got {value}', help='weight decay')
    label_smoothing: float = option(
        0.0, group='regularisation', parse=float, within='[0, 1)',
        help='share of the target spread over all classes (book: 0)')
    augment: bool = option(
        False, group='regularisation', kind='toggle',
        help='random flips and 2-pixel shifts of training images')
    erase: float = option(
        0.0, group='regularisation', parse=float, metavar='P', within='[0, 1]',
        error='{flag} must be a probability in [0, 1] (0: off), e.g. 0.5; got {value}',
        help='random erasing: a random rectangle (2-40% of the image) of this share of the '
             'training images is filled with random pixels (0: off)')

    # Evaluation.
    precise_bn: str = option(
        'auto', group='evaluation', choices=('auto', 'always', 'off'),
        help='before each validation, re-estimate the BatchNorm statistics from training '
             'images: auto when inference mode trails training mode on them by more than '
             '10 points (a warning with off), or always')
    tta: bool = option(
        False, group='evaluation', kind='toggle',
        help="also score the final model (and its average) with each image's logits "
             'averaged over it and its mirror image (summary.json)')

    # The run folder.
    out: str = option('runs/densenet', group='run folder', help='output folder')
    resume: bool = option(
        False, group='run folder', kind='switch',
        help='continue the run in --out after its last completed epoch')
    overwrite: bool = option(
        False, group='run folder', kind='switch',
        help='replace the run already in --out (without it, or --resume, a folder that '
             'holds a run is refused)')

    # Devices, the compute path and scale-out.
    device: str = option('auto', group='devices and scale-out',
                         help='auto, cpu, gpu, gpu:0,1')
    kvstore: str = option(
        'device', group='devices and scale-out', choices=KVSTORES,
        help='gradient aggregation (default device); dist_* inside `densenet launch`')
    hybridize: bool = option(
        True, group='devices and scale-out', kind='toggle',
        help='fast hybridized graph (default); --no-hybridize runs the book-literal '
             'imperative code')
    memory_efficient: bool = option(
        False, group='devices and scale-out', kind='switch',
        help="recompute each dense layer's concatenation and BN/ReLU in backward: less "
             "memory, more time (fast path: MXNet's graph executor; with --no-hybridize: "
             'imperative)')

    extras: dict[str, object] = dataclasses.field(default_factory=extension_defaults)

    def __getattr__(self, name: str) -> object:
        """The value of a registered extension's option (`Extension.options`).

        Raises:
            AttributeError: no such option.
        """
        extras = self.__dict__.get('extras', {})
        if name not in extras:
            raise AttributeError(f'TrainConfig has no option {name!r}')
        return extras[name]

    def value(self, name: str, kind: type[T]) -> T:
        """A registered extension's option, as the type its extension reads it as.

        Args:
            name: the option.
            kind: its type.

        Returns:
            The value.

        Raises:
            TypeError: a value of another type.
        """
        value = self.extras[name]
        if not isinstance(value, kind):
            raise TypeError(f'option {name} is {value!r}, not a {kind.__name__}')
        return value

    def as_dict(self) -> dict[str, object]:
        """Every option's value, as summary.json and the checkpoint record them.

        Returns:
            {option: value}.
        """
        values = dataclasses.asdict(self)
        values.update(values.pop('extras'))
        return values

    @classmethod
    def from_recipe(cls, recipe: str = 'book', **overrides: Any) -> TrainConfig:
        """The configuration of a recipe, with `overrides` applied.

        Args:
            recipe: a name in `densenet.train.recipes.RECIPES`.
            **overrides: option values (the extensions' too); None values are left to
                the recipe.

        Returns:
            The configuration (not yet validated).

        Raises:
            UsageError: an unknown recipe.
        """
        if recipe not in RECIPES:
            raise UsageError(f'no recipe {recipe!r}; choose one of {", ".join(sorted(RECIPES))}')
        values = dict(RECIPES[recipe], recipe=recipe)
        values.update({k: v for k, v in overrides.items() if v is not None})
        extras = {k: values.pop(k) for k in list(values) if k in EXTENSION_OPTIONS}
        return cls(**values, extras={**extension_defaults(), **extras})

    def validate(self, min_size: int | None = None) -> None:
        """Check the values, alone and together, before anything is built or written.

        Args:
            min_size: the model's smallest input side, checked once the model is built.

        Raises:
            UsageError: naming the flag and the fix, for a value no run can use.
        """
        check_ranges(self)
        model_kwargs(self.model, self.model_args)  # a UsageError naming the choices
        # The checks that involve more than one option.
        if self.data and self.holdout:
            raise UsageError('--holdout picks Fashion-MNIST training images; with --data, '
                             'hold images out with --val-split (or a val/ folder)')
        if min_size is not None and self.resize < min_size:
            raise UsageError(f'--resize {self.resize} is below the model\'s minimum input '
                             f'size {min_size}; use --resize {min_size} or more (the book uses 96)')
        if self.progressive and not 0 < self.progressive < self.resize:
            raise UsageError(f'--progressive {self.progressive} must be a side smaller than '
                             f'--resize {self.resize} (0: off), e.g. --progressive '
                             f'{max(self.resize * 3 // 4, 1)}')
        if min_size is not None and self.progressive and self.progressive < min_size:
            raise UsageError(f'--progressive {self.progressive} is below the model\'s minimum '
                             f'input size {min_size}; use --progressive {min_size} or more')
        dist = self.kvstore.startswith('dist')
        if self.budget and dist:
            raise UsageError('--budget plans each process\'s steps from its own speed, and the '
                             'workers of a dist kvstore must take the same steps: give --epochs '
                             '(and --budget off with --recipe fast-cpu)')
        if self.resume and dist:
            raise UsageError('--resume is not supported with a dist kvstore: restart the run')
        if self.resume and self.overwrite:
            raise UsageError('--resume continues the run in --out, --overwrite replaces it: '
                             'choose one')
        if os.environ.get('DMLC_ROLE') == 'worker' and not dist:
            raise UsageError('this is a worker of `densenet launch`, but it trains without a '
                             'dist kvstore, so every worker would train alone on all the data '
                             'and write the same --out: add --kvstore dist_sync')
        runtime.devices(self.device)
        Run(self.out).check_path()
        check_sources(self.data, self.data_dir)
