"""``benchmarks.cluster`` with 3 workers, one of them killed (``kill -9``, with the flow-run
process under it) while it runs a batch: the batch is submitted again and run by another
worker, and the ledger's keys show nothing lost and nothing doubled. About 2-3 minutes on 2
cores (Postgres, a Prefect server on it, moto, 3 workers); ``make cluster-demo`` runs the
1/2/3-worker comparison."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.cluster import SCRIPTED_CATALOG, Options, postgres_bin, report, run
from policy_store import PolicyStoreError
from policy_store.lake import extension_path

pytestmark = pytest.mark.faults


@pytest.fixture
def root() -> Iterator[Path]:
    """A folder Postgres' user (``nobody`` when the tests run as root) can reach: pytest's
    own temporary folders are private to their user."""
    folder = Path(tempfile.mkdtemp(prefix="fmp-cluster-"))
    folder.chmod(0o755)
    yield folder / "cluster"
    shutil.rmtree(folder, ignore_errors=True)


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(root: Path) -> None:
    if postgres_bin() is None:
        pytest.skip("no Postgres binaries (initdb, postgres) in /usr/lib/postgresql/15/bin or on PATH")
    try:
        for name in ("ducklake", "postgres_scanner"):
            extension_path(name)
    except PolicyStoreError as exc:
        pytest.skip(f"DuckLake store: {exc}")
    lines: list[str] = []
    options = Options(streams=4, batches=1, batch_size=80, catalog=SCRIPTED_CATALOG)  # orchestration only
    rounds = run(root, [3], options, kill=True, echo=lines.append)
    print("\n".join(lines) + report(rounds))
    (r,) = rounds
    # a worker was killed while its flow run computed a batch, before that batch's results ...
    assert r.killed is not None, "no batch run was seen running long enough to kill its worker"
    assert not r.killed.results_before, f"the kill came after {r.killed.batch}'s results were written"
    # ... so the batch was submitted again and another worker ran it
    assert any(line.startswith(f"{r.killed.batch} (its process") for line in r.resubmitted), r.resubmitted
    assert r.runs == 4 + 4 + len(r.resubmitted)
    # the ledger has every item and every (stream, batch, item, call site) key once
    assert (r.lost, r.doubled, r.broken_links) == (0, 0, 0), r.details
    assert r.totals["items"] == r.items == 320
    assert r.versions == 4  # one per stream's one batch, each a chain of its own
