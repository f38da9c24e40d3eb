"""The discover_batches flow: start one stream_batch run per new batch found in the store.

One schedule (see prefect.yaml) watches every registered stream (``storage.registry``: a
stream is registered when it is created or published); a run for one stream is started by
hand with ``stream``. Each run lists the streams' complete batches (those with a manifest)
and starts the ``stream_batch/stream-batch`` deployment for each one the policy has no
results for. The run's idempotency key is
``<stream>/<policy>/<batch>``, so a batch gets one run however often discovery sees it
before that run finishes. A run that failed, crashed or was cancelled gets a successor
(key ``...#2``, ``...#3``) on a later discovery, up to ``MAX_ATTEMPTS`` runs per batch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows._runtime import settings_for, store_for
from flows.runs import FLOW_OPTIONS, run_tags, tag_flow_run
from policies.specs import DEFAULT_POLICY
from storage import batches
from storage.registry import registered_streams

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

#: The deployment discovery starts, as ``<flow name>/<deployment name>``.
STREAM_BATCH_DEPLOYMENT = "stream_batch/stream-batch"
#: Runs per batch before discovery gives up on it (then rerun it from the UI or the CLI).
MAX_ATTEMPTS = 3
_GAVE_UP = {"FAILED", "CRASHED", "CANCELLED"}


def _run_name() -> str:
    stream = flow_run.parameters.get("stream")
    return f"discover/{stream}" if stream else "discover/all streams"


def new_batches(stream: str, policy: str, storage_url: str | None = None) -> list[str]:
    """Complete batches of ``stream`` that ``policy`` has no results for, oldest first."""
    store = store_for(settings_for(storage_url))
    done = set(batches.list_results(store, stream, policy))
    return [b for b in batches.list_batches(store, stream) if b not in done]


@flow(name="discover_batches", flow_run_name=_run_name, **FLOW_OPTIONS)
def discover_batches(stream: str | None = None, policy: str = DEFAULT_POLICY, max_runs: int = 10,
                     deployment: str = STREAM_BATCH_DEPLOYMENT,
                     storage_url: str | None = None) -> list[str]:
    """Start a stream_batch run for each new batch of a stream, or of every registered stream.

    Args:
        stream: the stream id to watch (``streams/<stream>/`` in the object store); empty
            watches every registered stream (``fmp stream list``).
        policy: the policy whose unprocessed batches get runs.
        max_runs: at most this many runs per discovery; the rest wait for the next one.
        deployment: the stream_batch deployment to start, ``<flow>/<deployment>``.
        storage_url: object store URL; default from FMP_STORAGE_URL on the worker.

    Returns:
        The names of the flow runs started or found for the new batches.
    """
    logger = get_run_logger()
    store = store_for(settings_for(storage_url))
    streams = [stream] if stream else registered_streams(store)
    if not streams:
        logger.info("no registered stream in %s", store.url)
    names: list[str] = []
    tags: set[str] = set()
    for name in streams:
        todo = new_batches(name, policy, storage_url)
        if not todo:
            logger.info("stream %s: no new batch for policy %s", name, policy)
            continue
        labels = run_tags(name, policy, batches.read_stream_info(store, name).query_id)
        tags.update(labels)
        names += _start_runs(name, todo[:max_runs - len(names)], policy, deployment, storage_url, labels)
        if len(names) >= max_runs:
            break
    if tags:
        tag_flow_run(tags)
    return names


def _start_runs(stream: str, todo: list[str], policy: str, deployment: str, storage_url: str | None,
                labels: list[str]) -> list[str]:
    """Start (or find) the stream_batch run of each batch in ``todo``; returns their names."""
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    names = []
    for batch in todo:
        params = {"stream": stream, "batch": batch, "policy": policy}
        if storage_url:
            params["storage_url"] = storage_url
        for attempt in range(1, MAX_ATTEMPTS + 1):
            key = f"{stream}/{policy}/{batch}" + (f"#{attempt}" if attempt > 1 else "")
            # prefect's async_dispatch types the call as FlowRun | Coroutine; from sync code it is the run
            run: FlowRun = run_deployment(  # type: ignore[assignment]
                deployment, parameters=params, timeout=0, as_subflow=False,
                flow_run_name=f"stream_batch/{stream}/{batch}", tags=labels, idempotency_key=key)
            state = run.state.type.value if run.state else "UNKNOWN"
            if state not in _GAVE_UP:
                break
        logger.log(logging.WARNING if state in _GAVE_UP else logging.INFO,
                   "%s/%s: flow run %s is %s (attempt %d of %d)", stream, batch, run.name,
                   state, attempt, MAX_ATTEMPTS)
        names.append(run.name)
    return names
