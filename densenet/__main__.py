"""`python -m densenet ...` runs the same command line as `densenet ...`."""
import sys

from .cli import main

sys.exit(main())
