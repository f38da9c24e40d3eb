"""The demo: publish seeded streams, run every batch through the real flows, print savings.

``python -m flows.demo [--s3]`` (what ``make demo`` runs). With ``--s3`` the same demo runs
against a moto S3 server it starts on loopback, through boto3.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from benchmarks.publish import StreamPlan, publish_stream
from benchmarks.queries import DEMO_QUERIES
from flows._runtime import in_process_runs, policy_store_for, quiet_teardown, settings_for, store_for
from flows.ingest_feedback import ingest_feedback
from flows.runs import FLOW_OPTIONS
from flows.stream_batch import stream_batch
from policies.specs import FIXED_LEARNERS, policy_spec
from policy_store.report import PolicyTable, format_table, policy_table, write_report

DEMO_POLICIES = ("confirmed", "learned", "cheapest", "largest", "monolithic")


def _run_name() -> str:
    params = flow_run.parameters
    return f"run_demo/{params.get('n_batches', 6)} batches x {params.get('batch_size', 40)} items"


@flow(name="run_demo", flow_run_name=_run_name, **FLOW_OPTIONS)
def run_demo(n_batches: int = 6, batch_size: int = 40, positive_rate: float = 0.1, seed: int = 0,
             policies: tuple[str, ...] = DEMO_POLICIES, storage_url: str | None = None,
             db_path: str | None = None) -> PolicyTable:
    """Publish one stream per demo query, then run every batch under every policy.

    A learning policy gets its feedback after each batch, before its next batch runs (the
    online loop). Fixed policies learn nothing, so their labels are ingested once per stream
    at the end — the same ledger rows with fewer flow runs.

    Returns:
        The savings table: per policy accuracy, F1, cost (FLOPs) and savings vs monolithic.
    """
    settings = settings_for(storage_url, db_path)
    store = store_for(settings)
    db = policy_store_for(settings)
    plan = StreamPlan(n_batches=n_batches, batch_size=batch_size, positive_rate=positive_rate, seed=seed)
    streams = {}
    for query in DEMO_QUERIES:
        streams[query.query_id] = publish_stream(store, query.query_id, query, plan)
        _say(f"published {query.query_id}: {n_batches} batches × {batch_size} items")
    params = {"storage_url": settings.store_url, "db_path": str(settings.database)}
    learning = [p for p in policies if policy_spec(p).learner not in FIXED_LEARNERS]
    for index in range(n_batches):
        start = time.perf_counter()
        for stream, batch_ids in streams.items():
            for policy in policies:
                stream_batch(stream=stream, batch=batch_ids[index], policy=policy, **params)
                if policy in learning:
                    ingest_feedback(stream=stream, batch=batch_ids[index], policy=policy, **params)
        _say(f"batch {index + 1}/{n_batches}: {len(streams)} streams × {len(policies)} policies "
             f"in {time.perf_counter() - start:.0f} s")
    for stream in streams:
        for policy in set(policies) - set(learning):
            ingest_feedback(stream=stream, batch=None, policy=policy, **params)
    table = policy_table(db, list(streams))
    write_report(settings.home / "report.json", table)
    return table


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s3", action="store_true", help="use a moto S3 server on loopback")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the previous demo's .fmp state")
    args = parser.parse_args(argv)
    settings = settings_for()
    if not args.keep:
        shutil.rmtree(settings.home / "objects", ignore_errors=True)
        settings.database.unlink(missing_ok=True)
    with ExitStack() as stack:
        stack.enter_context(in_process_runs())  # the demo's flow runs run in this process
        url = None
        if args.s3:
            from storage.moto import MotoServer
            from storage.s3 import S3Store

            server = stack.enter_context(MotoServer())
            url = f"s3://fmp-demo/demo?endpoint_url={server.endpoint_url}"
            store = store_for(settings_for(url))
            assert isinstance(store, S3Store)  # an s3:// URL opens an S3Store
            store.ensure_bucket()
        table = run_demo(n_batches=args.batches, batch_size=args.batch_size, storage_url=url)
    print()
    print(format_table(table))
    print(f"\nwritten to {Path(settings.home) / 'report.json'}; the ledger is in {settings.database}")
    quiet_teardown()
    return 0



if __name__ == "__main__":
    sys.exit(main())
