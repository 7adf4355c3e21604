"""``densenet info``: this machine as the package sees it (CPU, instruction sets,
precisions, MXNet build, threads)."""
from __future__ import annotations

import argparse
import json

import densenet.cli.common as common
from densenet.system import runtime
from densenet.system.machine import summary_line


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('info', help='this machine: CPU, instruction sets, precisions, MXNet '
                                    'build, threads')
    p.add_argument('--json', action='store_true', help='the description as JSON')


def run(args: argparse.Namespace) -> int:
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
