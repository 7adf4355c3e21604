"""``densenet launch``: a command run as the workers of a local MXNet parameter-server
cluster."""
from __future__ import annotations

import argparse

import densenet.cli.common as common
from densenet.errors import UsageError
from densenet.system.launch import launch, multi_machine_help
from densenet.train.options import positive_int


def add_parser(sub: common.Commands) -> None:
    p = sub.add_parser('launch', help='run a command as the workers of a local MXNet '
                                      'parameter-server cluster')
    p.add_argument('-n', '--num-workers', type=positive_int, default=2)
    p.add_argument('-s', '--num-servers', type=positive_int, default=1)
    p.add_argument('worker_command', nargs=argparse.REMAINDER, metavar='command',
                   help='after --: the worker command, e.g. densenet train --kvstore dist_sync')


def run(args: argparse.Namespace) -> int:
    command = args.worker_command
    command = command[1:] if command[:1] == ['--'] else command
    if not command:
        raise UsageError('no command to launch: densenet launch -n 2 -s 1 -- '
                         'densenet train --kvstore dist_sync ...')
    print(multi_machine_help(args.num_workers, args.num_servers, command), flush=True)
    return launch(command, args.num_workers, args.num_servers)
