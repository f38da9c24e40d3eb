"""Test-only fault points: named places where a process can be made to die as ``kill -9`` would.

``FMP_TEST_KILL_AT=<point>`` in a process's environment makes it send itself SIGKILL when it
reaches that point (no exit handler, no ``finally`` runs: the state on disk, in S3, in the
ledger and on the Prefect server is what a kill at that instant leaves). Unset, as it always is
outside the fault-injection runner (``python -m benchmarks.faults``) and its tests, a point
costs one dictionary lookup. The points:

``results-before``   a batch's results are computed; nothing of them is written yet
``results-between``  ``results.jsonl`` is written, its ``_SUCCESS`` marker is not
``results-after``    the marker is written; the run has not finished (artifacts, flow state)
``feedback-before``  a feedback run started; it has not taken the store writer lock
``feedback-inside``  inside the writer block: the first batch is ingested (ledger rows, a new
                     policy version), the lock file and the ``fmp-store-writer`` slot are held
``feedback-after``   the writer block is left; the flow run has not finished
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "FMP_TEST_KILL_AT"
POINTS = ("results-before", "results-between", "results-after",
          "feedback-before", "feedback-inside", "feedback-after")


def fault_point(name: str) -> None:
    """Die here (SIGKILL to this process) when ``FMP_TEST_KILL_AT`` names this point."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
