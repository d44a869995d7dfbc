"""``python -m mtbrain``: the same command line as ``mtbrain``."""

import sys

from mtbrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
