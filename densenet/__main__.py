"""`python -m densenet ...` runs the same command line as `densenet ...`."""
import sys

from densenet.cli.main import main

sys.exit(main())
