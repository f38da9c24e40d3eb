"""How many ledger commits a DuckLake policy store takes per second: ``python -m
benchmarks.lake_commits URL [--writers 1 3] [--seconds 20] [--items 20]``.

For each writer count, that many processes (each with its own connection, as separate
workers would be) ingest batches into a fresh store at ``URL`` (``ducklake:sqlite:<file>``
or ``ducklake:postgres:<conninfo>?data_path=<folder>``; for each run the catalog must be
new: a SQLite file that does not exist yet, an empty Postgres database): every writer its own
batches of ``--items`` items with two call sites each, one ``ingest_batch`` (one transaction,
one snapshot) after another, for ``--seconds``. Prints, per writer count, the commits per
second of all writers together, the commits retried after losing to another writer's, and
checks afterwards that every committed batch is in the ledger once (0 duplicated, 0 missing
decision keys); exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from policy_store import IngestBatch, PolicyStore
from storage.records import DecisionRecord, ResultRow

SITES = ("c1", "c2")


def _batch(writer: int, n: int, items: int) -> IngestBatch:
    rows = [ResultRow(item_id=f"i{i}", status="ok", answer=i % 2 == 0, error=None, features=[],
                      decisions=[DecisionRecord(call_site=s, function="exists", backend="small",
                                                propensity=0.5, calls=1, flops=10.0, params=1.0,
                                                wall_ms=1.0, price=0.001) for s in SITES])
            for i in range(items)]
    labels: dict[str, str | bool] = {f"i{i}": i % 3 == 0 for i in range(items)}
    return IngestBatch("bench", "learned", f"w{writer}-b{n:05d}", 1, "prog", rows, labels,
                       answer_type="bool")


def _writer(url: str, writer: int, start_at: float, seconds: float, items: int) -> None:
    """One writer process: ingest its own batches from ``start_at`` for ``seconds``; prints
    {"commits", "retried"} as JSON."""
    store = PolicyStore(url)
    store.init()
    time.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds
    commits = 0
    while time.monotonic() < end:
        store.ingest_batch(_batch(writer, commits, items))
        commits += 1
    print(json.dumps({"commits": commits, "retried": store.conflicts_retried}))


def measure(url: str, writers: int, seconds: float, items: int) -> dict[str, float]:
    """Run ``writers`` processes against a fresh store at ``url``; commits/s and checks."""
    PolicyStore(url).init()
    start_at = time.time() + 3.0  # every process attached before the clock starts
    procs = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.lake_commits", url, "--as-writer", str(w),
         "--start-at", str(start_at), "--seconds", str(seconds), "--items", str(items)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        for w in range(writers)]
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise SystemExit(f"a writer failed (exit {proc.returncode})")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    commits = sum(int(o["commits"]) for o in outs)
    store = PolicyStore(url)
    _, rows = store.query("SELECT COUNT(*), COUNT(DISTINCT (batch, item_id, call_site)) "
                          "FROM decisions WHERE stream = 'bench'")
    total, distinct = rows[0]
    return {"writers": writers, "commits": commits, "commits_per_s": commits / seconds,
            "retried": sum(int(o["retried"]) for o in outs),
            "duplicated": total - distinct, "missing": commits * items * len(SITES) - distinct}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="a new DuckLake store per writer count: {n} in it is "
                                    "replaced by the writer count")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--as-writer", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_writer is not None:
        _writer(args.url, args.as_writer, args.start_at, args.seconds, args.items)
        return 0
    bad = False
    print(f"{'writers':>7} {'commits':>8} {'commits/s':>10} {'retried':>8} {'duplicated':>11} "
          f"{'missing':>8}")
    for n in args.writers:
        r = measure(args.url.replace("{n}", str(n)), n, args.seconds, args.items)
        print(f"{n:>7} {r['commits']:>8} {r['commits_per_s']:>10.1f} {r['retried']:>8} "
              f"{r['duplicated']:>11} {r['missing']:>8}")
        bad |= bool(r["duplicated"] or r["missing"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
