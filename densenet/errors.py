"""The errors the command line turns into one line on stderr (no mxnet import here)."""


class UsageError(Exception):
    """A bad command-line value, path or file: one line on stderr, exit status 2."""


class Diverged(RuntimeError):
    """Training produced a non-finite or exploding loss, or non-finite weights: exit status 1."""
