"""The errors the command line turns into one line on stderr (no mxnet import here)."""


class UsageError(ValueError):
    """A bad value, path or file given by the user: one line on stderr, exit status 2.

    A ValueError, so that library callers catch it as before; the command line
    treats only these (and `Diverged`) as expected, so any other exception keeps
    its traceback and exits with status 1.
    """


class Diverged(RuntimeError):
    """Training produced a non-finite or exploding loss, or non-finite weights: exit status 1."""
