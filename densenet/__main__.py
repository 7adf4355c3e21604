"""`python -m densenet ...` runs the same command line as `densenet ...`."""
import sys

from densenet.cli import main

sys.exit(main())
