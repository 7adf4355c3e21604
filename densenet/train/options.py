"""One definition per option: a dataclass field whose metadata says how it is parsed,
checked and documented.

``option(default, help=..., group=...)`` makes the field; `add_arguments` derives
the command-line flags (in argument groups) from the fields, `check_ranges` the
per-option checks, and `reference_rows` the table the documentation prints.
An extension defines its options beside it (`Extension.options`); registering it
adds them to `EXTENSION_OPTIONS`, which every function here includes.
Checks that involve two options at once stay with the configuration
(`TrainConfig.validate`).
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from densenet.errors import UsageError

#: The argument groups of ``densenet train --help``, in the order shown.
GROUPS = {
    'recipe': 'named defaults that the flags below override',
    'model': 'the network and where its weights start',
    'data': 'Fashion-MNIST or an image folder, and how it is fed',
    'optimisation': 'SGD and the loss',
    'schedule and budget': 'how long the run is and how the learning rate moves',
    'regularisation': 'augmentation, label smoothing, weight averaging',
    'evaluation': 'how the final model is scored',
    'run folder': 'where the run is written, resumed or replaced',
    'devices and scale-out': 'devices, the compute path and the parameter server',
}


@dataclasses.dataclass(frozen=True)
class Option:
    """How one configuration field appears on the command line and what values it takes.

    Attributes:
        help: What the option does (no measured figures: those belong in the docs).
        group: Its argument group (a key of `GROUPS`).
        parse: The argparse ``type``; its errors are argparse's one-line errors.
        choices: The allowed values, if they are a fixed list (checked as `check` is).
        within: The allowed range as an interval, e.g. ``'[0, 1)'`` or ``'(0, inf)'``.
        check: A predicate on the value; False raises UsageError(`error`).
        error: The message for a value outside `within`, refused by `check` or not in
            `choices`, formatted with ``flag`` and ``value`` (default: the range or the
            values allowed).
        kind: ``'value'`` (takes an argument), ``'switch'`` (``--x`` sets True),
            ``'toggle'`` (``--x`` / ``--no-x``) or ``'append'`` (repeatable).
        metavar: The argument's name in ``--help``.
        hidden: Accepted but left out of ``--help`` (internal plumbing).
        flag: The flag, when it is not the field's name with dashes.
    """
    help: str
    group: str
    parse: Callable[[str], object] | None = None
    choices: Sequence[object] | None = None
    within: str = ''
    check: Callable[[Any], bool] | None = None
    error: str = ''
    kind: str = 'value'
    metavar: str | None = None
    hidden: bool = False
    flag: str | None = None


def option(default: object = None, *, factory: Callable[[], object] | None = None,
           **spec: Any) -> Any:
    """A dataclass field with its `Option` in the metadata.

    Args:
        default: the default value.
        factory: makes a mutable default instead.
        **spec: the `Option`'s fields (help, group, parse, check, error, ...).

    Returns:
        The `dataclasses.field`.
    """
    meta = {'option': Option(**spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(name: str, spec: Option) -> str:
    """The command-line flag of field `name` (``batch_size`` -> ``--batch-size``).

    Args:
        name: the field's name.
        spec: its `Option`, which may name the flag itself.

    Returns:
        The flag.
    """
    return spec.flag or '--' + name.replace('_', '-')


#: The argparse action of each `Option.kind`.
ACTIONS: dict[str, str | type[argparse.Action]] = {
    'value': 'store', 'switch': 'store_true', 'toggle': argparse.BooleanOptionalAction,
    'append': 'append'}

#: The options of the registered extensions (`densenet.train.extensions.base.register`).
EXTENSION_OPTIONS: dict[str, dataclasses.Field[object]] = {}


def options(config_cls: type) -> Iterator[tuple[str, dataclasses.Field[object], Option]]:
    """Every field of `config_cls` that has an `Option`, then the extensions' options.

    Args:
        config_cls: a dataclass such as `TrainConfig`.

    Yields:
        (name, field, Option).
    """
    fields = [(f.name, f) for f in dataclasses.fields(config_cls)]
    for name, field in fields + list(EXTENSION_OPTIONS.items()):
        spec = field.metadata.get('option')
        if spec is not None:
            yield name, field, spec


def default_of(field: dataclasses.Field[object]) -> object:
    """The field's default value (a fresh one for a factory default).

    Args:
        field: a dataclass field.

    Returns:
        The default.
    """
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def add_arguments(parser: argparse.ArgumentParser, config_cls: type,
                  choices: dict[str, Sequence[str]] | None = None) -> None:
    """Add a flag for every command-line option of `config_cls` to `parser`, in `GROUPS`.

    Every flag defaults to None, so that a value not given on the command line
    is taken from the recipe and then from the field's default.

    Args:
        parser: the sub-command's parser.
        config_cls: a dataclass such as `TrainConfig`.
        choices: lists known only at run time (the registered model names), by field.
    """
    groups = {name: parser.add_argument_group(name, about) for name, about in GROUPS.items()}
    for name, _, spec in options(config_cls):
        kwargs: dict[str, Any] = {'dest': name, 'default': None, 'action': ACTIONS[spec.kind],
                                  'help': (argparse.SUPPRESS if spec.hidden
                                           else spec.help.replace('%', '%%'))}
        if spec.kind in ('value', 'append'):  # those that take an argument
            listed = (choices or {}).get(name, spec.choices)
            kwargs.update(type=spec.parse, metavar=spec.metavar,
                          choices=None if listed is None else list(listed))
        groups[spec.group].add_argument(flag_of(name, spec), **kwargs)


def in_interval(value: float, within: str) -> bool:
    """Whether `value` lies in the interval `within` (``'[0, 1)'``: 0 <= value < 1).

    Args:
        value: the value.
        within: the interval: ``[`` or ``(``, the bounds (``inf`` allowed), ``]`` or ``)``.

    Returns:
        Whether it lies inside (never for NaN).
    """
    low, high = (float(bound) for bound in within[1:-1].split(','))
    above = low <= value if within[0] == '[' else low < value
    return above and (value <= high if within[-1] == ']' else value < high)


def range_error(within: str) -> str:
    """The standard message for a value outside `within`, as `Option.error` writes it.

    Args:
        within: the interval.

    Returns:
        The message, with ``{flag}`` and ``{value}`` to fill in.
    """
    low, high = within[1:-1].split(', ')
    allowed = f'at least {low}' if within[0] + high == '[inf' else f'in {within}'
    return '{flag} must be ' + allowed + ', got {value}'


def check_ranges(cfg: object) -> None:
    """Check every value against its option's `within`, `check` or `choices`.

    Args:
        cfg: a configuration.

    Raises:
        UsageError: the option's message, for the first value its check refuses.
    """
    for name, _, spec in options(type(cfg)):
        value, listed = getattr(cfg, name), spec.choices
        if value is None or (in_interval(value, spec.within) if spec.within else
                             spec.check(value) if spec.check else
                             listed is None or value in listed):
            continue
        error = spec.error or (range_error(spec.within) if spec.within else
                               '{flag} must be one of ' + ', '.join(map(str, listed or ()))
                               + ', got {value!r}')
        raise UsageError(error.format(flag=flag_of(name, spec), value=value))


def reference_rows(config_cls: type) -> list[tuple[str, str, str, str]]:
    """Every command-line option of `config_cls`, for the reference docs' table.

    Args:
        config_cls: a dataclass such as `TrainConfig`.

    Returns:
        (flag, group, default, help) per option that is not hidden.
    """
    rows = [(flag_of(name, spec), spec.group, repr(default_of(field)), spec.help)
            for name, field, spec in options(config_cls) if not spec.hidden]
    return sorted(rows, key=lambda row: list(GROUPS).index(row[1]))


# Reusable checks and argparse types.

def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1.

    Args:
        text: the flag's value.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: not an integer, or below 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value
