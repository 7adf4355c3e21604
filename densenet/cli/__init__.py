"""``densenet train|evaluate|predict|engines|export|features|analyze|launch|info``: the
command line.

One module per command, each a thin layer over library functions: ``add_parser``
adds its sub-command, ``run`` carries it out. Errors a user can fix are one line
on stderr (status 2 for usage, 1 for a fault such as a full disk); anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from densenet.cli import (
    analyze,
    engines,
    evaluate,
    export,
    features,
    info,
    launch,
    predict,
    train,
)
from densenet.cli.common import PROG, Parser
from densenet.errors import Fault, UsageError

_MODULES = (train, evaluate, predict, engines, export, features, analyze, launch, info)
#: command name -> the function that runs it (a parsed argparse.Namespace -> exit status)
COMMANDS: dict[str, Callable] = {m.__name__.rsplit('.', 1)[-1]: m.run for m in _MODULES}


def build_parser() -> Parser:
    """The ``densenet`` parser with every sub-command."""
    parser = Parser(prog=PROG, description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    for module in _MODULES:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv); the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    # A usage error is status 2; a fault (Diverged, DiskFull: the last complete files stay)
    # status 1; anything else is a bug: its traceback stays, status 1.
    except (UsageError, Fault, FileNotFoundError) as e:
        print(f'{PROG} {args.command}: error: {e}', file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        print(f'{PROG} {args.command}: interrupted', file=sys.stderr)
        return 130


__all__ = ['COMMANDS', 'build_parser', 'main']
