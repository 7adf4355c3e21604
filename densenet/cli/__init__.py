"""``densenet train|evaluate|predict|export|features|launch|info``: the command line."""
from densenet.cli.main import COMMANDS, build_parser, main

__all__ = ['COMMANDS', 'build_parser', 'main']
