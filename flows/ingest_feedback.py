"""The ingest_feedback flow: labels in, ledger rows and a new policy version out.

It is the only writer of the DuckDB policy store: every run holds the one slot of the
``fmp-store-writer`` global concurrency limit while it writes (see flows/locks.py).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows._batch import load_program
from flows._feedback import FeedbackSummary, ingest_batch, pending_feedback
from flows._runtime import (
    held_policy_store,
    limit_model_threads,
    policy_store_at,
    registry_for,
    settings_for,
    store_for,
)
from flows.artifacts import publish_feedback_artifact
from flows.feedback_report import feedback_report
from flows.locks import store_writer
from flows.report_html import publish_trend_artifact
from flows.runs import FLOW_OPTIONS, batches_label, rename_flow_run, run_tags, tag_flow_run
from policies.costs import register_costs
from policies.specs import DEFAULT_POLICY
from storage import batches
from storage.errors import StorageError
from storage.faultpoints import fault_point


# No ``flow_run_name``: the engine would rename the run with a request of its own before the
# body starts. Runs that a deployment creates carry a name already (``flows.run_names``); the
# run names itself ``ingest_feedback/<stream>/<batches>`` once it knows what it ingests, with
# its tags, in one request.
@flow(name="ingest_feedback", **FLOW_OPTIONS)
def ingest_feedback(stream: str, batch: str | None = None, policy: str = DEFAULT_POLICY,
                    storage_url: str | None = None, db_path: str | None = None) -> list[FeedbackSummary]:
    """Ingest one batch, or every batch whose results or labels changed or are unlearned.

    A batch is re-ingested when the sha256 of its results or labels differs from what its
    ledger rows were built from: a rerun batch's ledger rows are replaced to match its new
    results, late and corrected labels are written, and the learner is trained on every
    label version (item, seq) it has not learned, once (see flows/_feedback.py).

    Each ingested batch publishes the markdown artifact ``feedback-<stream>-<policy>``:
    accuracy, cost per item and savings vs monolithic so far, and the new policy version
    with how its choices moved.

    Args:
        stream: the stream id.
        batch: one batch id (ingested even when nothing changed); ``None`` ingests every
            pending batch in order.
        policy: the policy whose results are ingested and whose learner is updated.
        storage_url: object store URL; default from FMP_STORAGE_URL or ``.fmp/objects``.
        db_path: DuckDB policy store file; default ``.fmp/fmp.duckdb``.

    Returns:
        One summary per ingested batch.
    """
    logger = get_run_logger()
    settings = settings_for(storage_url, db_path)
    limit_model_threads(settings.model_threads)
    store = store_for(settings)
    registry = registry_for(settings.catalog)
    summaries: list[FeedbackSummary] = []
    fault_point("feedback-before")
    with (store_writer(database=settings.database, store=policy_store_at(settings)),
          held_policy_store(settings) as db):  # one connection
        todo = [batch] if batch else pending_feedback(store, db, stream, policy)
        name = f"ingest_feedback/{stream}/{batches_label(todo)}"  # what this run ingests
        if not todo:
            rename_flow_run(name)
            logger.info("stream %s: no batch whose results or labels changed or are unlearned "
                        "for policy %s", stream, policy)
            return summaries
        info = batches.read_stream_info(store, stream)
        tag_flow_run(run_tags(stream, policy, info.query_id), name)
        register_costs(db, registry, load_program(info, policy))
        for b in todo:
            summary = ingest_batch(settings, store, registry, db, stream, b, policy)
            for error in summary.errors:
                logger.warning(error)
            logger.info("%s/%s policy %s: %d labelled of %d items, %d learned (%d trained now: "
                        "%d new, %d corrected label versions), %d normalised, %d lines rejected%s; "
                        "results %s; new version %s", stream, b, policy, summary.labelled,
                        summary.items, summary.learned, summary.trained, summary.new_labels,
                        summary.corrected, summary.normalised, len(summary.rejected_lines),
                        f" (lines {_lines(summary.rejected_lines)})" if summary.rejected_lines else "",
                        summary.results, summary.new_version)
            summaries.append(summary)
            fault_point("feedback-inside")
            try:
                publish_feedback_artifact(feedback_report(store, registry, db, summary))
            except (StorageError, FileNotFoundError, ValueError) as exc:
                # the ledger and the new version are written; only the report is missing
                logger.warning("%s/%s: feedback artifact not published: %s", stream, b, exc)
        try:  # the chart so far, once per run: trend-<stream>-<policy>
            publish_trend_artifact(db, stream, policy)
        except ValueError as exc:  # policy_store's QueryError included
            logger.warning("%s: trend artifact not published: %s", stream, exc)
    fault_point("feedback-after")
    return summaries


def _lines(numbers: list[int], most: int = 10) -> str:
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")
