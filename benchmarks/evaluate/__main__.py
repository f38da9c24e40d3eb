"""``python -m benchmarks.evaluate``: see ``benchmarks.evaluate.cli``."""

import sys

from benchmarks.evaluate.cli import main

if __name__ == "__main__":  # not in --jobs worker processes, which import this module again
    sys.exit(main())
