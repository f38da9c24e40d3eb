"""The stream_batch flow: one batch of one stream through its program, routed by a policy."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger

from flows._batch import BatchSummary, next_batch, process_batch
from flows._runtime import limit_model_threads, registry_for, settings_for, store_for
from flows.artifacts import publish_batch_artifact
from flows.runs import FLOW_OPTIONS, batches_label, rename_flow_run, run_tags, tag_flow_run
from flows.secrets import with_api_keys
from modules.tasks import prefect_round_runner
from policies.specs import DEFAULT_POLICY
from storage import batches
from storage.records import ResultRow


# No ``flow_run_name``: the engine would rename the run with a request of its own before the
# body starts. Runs that a deployment creates carry the name already (``flows.discover``,
# ``flows.run_names``); the others get it with their tags, in one request made while the
# batch starts.
@flow(name="stream_batch", **FLOW_OPTIONS)
def stream_batch(stream: str, batch: str | None = None, policy: str = DEFAULT_POLICY,
                 storage_url: str | None = None, db_path: str | None = None) -> BatchSummary | None:
    """Answer every item of a batch and write answers, decisions and costs to storage.

    The run is tagged ``stream:``, ``policy:`` and ``query:``; it publishes the table
    artifact ``batch-<stream>-<policy>`` (items, answers, cost by backend, decisions
    per call site).

    Args:
        stream: the stream id (``streams/<stream>/`` in the object store).
        batch: the batch id; ``None`` takes the oldest batch this policy has not processed.
        policy: which policy routes the call sites (learned, cheapest, largest, random, monolithic).
        storage_url: object store URL; default from FMP_STORAGE_URL or ``.fmp/objects``.
        db_path: DuckDB policy store file (read only here); default ``.fmp/fmp.duckdb``.

    Returns:
        A summary of the batch, or None when no unprocessed batch is waiting.
    """
    logger = get_run_logger()
    settings = settings_for(storage_url, db_path)
    limit_model_threads(settings.model_threads)
    store = store_for(settings)
    registry = with_api_keys(registry_for(settings.catalog))  # keys from Prefect Secret blocks
    if batch is None:
        batch = next_batch(store, stream, policy)
        # the name said "next" until now: say which batch this run answers
        rename_flow_run(f"stream_batch/{stream}/{batch or batches_label([])}")
        if batch is None:
            logger.info("stream %s: no unprocessed batch for policy %s", stream, policy)
            return None
    labels = run_tags(stream, policy, batches.read_stream_info(store, stream).query_id)
    # The task runs carry no tags: around every tagged task run Prefect asks the server for
    # the tags' concurrency slots (a new API client and a request, 50-75 ms here), more than
    # most groups compute. The flow run carries the tags; its task runs are listed under it.
    # Tagging (and naming) it is one request to the server, made while the batch starts.
    def post_artifact(written: BatchSummary, rows: list[ResultRow]) -> None:
        publish_batch_artifact(stream, batch, policy, written.policy_version, rows)

    with ThreadPoolExecutor(1, thread_name_prefix="tag") as pool:
        tagged = pool.submit(contextvars.copy_context().run, tag_flow_run, labels,
                             f"stream_batch/{stream}/{batch}")
        summary = process_batch(
            settings, store, registry, stream, batch, policy, prefect_round_runner(registry),
            written=post_artifact)
        tagged.result()
    for error in summary.errors:
        logger.warning(error)
    logger.info("%s/%s policy %s v%d: %d items, %d failed", stream, batch, policy,
                summary.policy_version, summary.items, summary.failed)
    return summary
