"""The ingest_feedback_all flow: the scheduled feedback for every registered stream.

One schedule (see prefect.yaml) instead of one per stream: each run lists the registered
streams (``storage.registry``), finds the batches whose feedback is pending for each (under
the writer lock, like ``ingest_feedback``), and runs one ``ingest_feedback`` subflow per
pending batch, named ``ingest_feedback/<stream>/<batch>``. A stream without pending
feedback costs no run; a stream created after the deployment is picked up by the next run.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows._feedback import FeedbackSummary, pending_feedback
from flows._runtime import held_policy_store, policy_store_at, settings_for, store_for
from flows.ingest_feedback import ingest_feedback
from flows.locks import store_writer
from flows.runs import FLOW_OPTIONS
from policies.specs import DEFAULT_POLICY
from storage.registry import registered_streams


def pending_by_stream(policy: str, storage_url: str | None = None,
                      db_path: str | None = None) -> dict[str, list[str]]:
    """Every registered stream with pending feedback for ``policy``, with those batches."""
    settings = settings_for(storage_url, db_path)
    store = store_for(settings)
    streams = registered_streams(store)
    if not streams:
        return {}
    with (store_writer(database=settings.database, store=policy_store_at(settings)),
          held_policy_store(settings) as db):
        pending = {s: pending_feedback(store, db, s, policy) for s in streams}
    return {s: todo for s, todo in pending.items() if todo}


@flow(name="ingest_feedback_all", flow_run_name="ingest_feedback/all streams", **FLOW_OPTIONS)
def ingest_feedback_all(policy: str = DEFAULT_POLICY, storage_url: str | None = None,
                        db_path: str | None = None) -> list[FeedbackSummary]:
    """Ingest the pending feedback of every registered stream, one subflow run per batch.

    Args:
        policy: the policy whose results are ingested and whose learner is updated.
        storage_url: object store URL; default from FMP_STORAGE_URL or ``.fmp/objects``.
        db_path: DuckDB policy store file; default ``.fmp/fmp.duckdb``.

    Returns:
        One summary per ingested batch, stream by stream.

    Raises:
        RuntimeError: a stream's ingest failed (after the other streams ran); names them.
    """
    logger = get_run_logger()
    todo = pending_by_stream(policy, storage_url, db_path)
    if not todo:
        logger.info("no registered stream has pending feedback for policy %s", policy)
    summaries: list[FeedbackSummary] = []
    failed: list[str] = []
    for stream, pending in todo.items():
        for batch in pending:
            try:
                summaries += ingest_feedback(stream=stream, batch=batch, policy=policy,
                                             storage_url=storage_url, db_path=db_path)
            except Exception as exc:  # one stream's failure must not starve the others
                logger.error("%s/%s: feedback failed: %s", stream, batch, exc)
                failed.append(f"{stream}/{batch}")
    if failed:
        raise RuntimeError(f"feedback failed for {', '.join(failed)}; the other batches were ingested")
    return summaries
