"""``python -m benchmarks.evaluate``: see ``benchmarks.evaluate.cli``."""

import sys

from benchmarks.evaluate.cli import main

sys.exit(main())
