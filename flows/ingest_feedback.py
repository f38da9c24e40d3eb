"""The ingest_feedback flow: labels in, ledger rows and a new policy version out.

It is the only writer of the DuckDB policy store; run one at a time (the deployment's
concurrency limit enforces it).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows._feedback import FeedbackSummary, ingest_batch, pending_feedback
from flows._runtime import policy_store_for, registry_for, settings_for, store_for


def _run_name() -> str:
    params = flow_run.parameters
    return f"ingest_feedback/{params['stream']}/{params.get('batch') or 'pending'}"


@flow(name="ingest_feedback", flow_run_name=_run_name, log_prints=False)
def ingest_feedback(stream: str, batch: str | None = None, policy: str = "learned",
                    storage_url: str | None = None, db_path: str | None = None) -> list[FeedbackSummary]:
    """Ingest labels for one batch, or for every batch with results and unlearned labels.

    Args:
        stream: the stream id.
        batch: one batch id; ``None`` ingests every pending batch in order.
        policy: the policy whose results are ingested and whose learner is updated.
        storage_url: object store URL; default from FMP_STORAGE_URL or ``.fmp/objects``.
        db_path: DuckDB policy store file; default ``.fmp/fmp.duckdb``.

    Returns:
        One summary per ingested batch.
    """
    logger = get_run_logger()
    settings = settings_for(storage_url, db_path)
    store = store_for(settings)
    registry = registry_for(settings.catalog)
    db = policy_store_for(settings)
    todo = [batch] if batch else pending_feedback(store, db, stream, policy)
    summaries = []
    for b in todo:
        summary = ingest_batch(settings, store, registry, db, stream, b, policy)
        for error in summary.errors:
            logger.warning(error)
        logger.info("%s/%s policy %s: %d labelled of %d, new version %s", stream, b, policy,
                    summary.labelled, summary.items, summary.new_version)
        summaries.append(summary)
    return summaries
