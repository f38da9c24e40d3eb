"""discover_batches: one stream_batch run per new batch, idempotent, retried after a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import batches
from storage.url import open_store

from test_flows import _publish

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(prefect_harness: None) -> str:
    """A stream_batch deployment on a process pool no worker serves (runs stay Scheduled)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from flows.stream_batch import stream_batch

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name="discover-test", type="process"))
        except ObjectAlreadyExists:
            pass
    deployment = stream_batch.to_deployment(name="discover-test", work_pool_name="discover-test")
    deployment.apply()  # type: ignore[union-attr]  # called synchronously: a value, not a coroutine
    return "stream_batch/discover-test"


def _runs(stream: str) -> dict[str, list]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"stream:{stream}"])))
    by_name: dict[str, list] = {}
    for run in runs:
        if run.name.startswith("stream_batch/"):  # the discover runs carry the tags too
            by_name.setdefault(run.name, []).append(run)
    return by_name


def test_one_run_per_new_batch_however_often_discovery_runs(deployment: str, tmp_path: Path) -> None:
    from flows.discover import discover_batches

    store = open_store(str(tmp_path))
    for batch in ("b0001", "b0002", "b0003"):
        _publish(store, "d1", batch)
    batches.write_results(store, "d1", "fmp", "b0001", [], policy_version=0, program_id="p")
    first = discover_batches(stream="d1", deployment=deployment, storage_url=str(tmp_path))
    again = discover_batches(stream="d1", deployment=deployment, storage_url=str(tmp_path))
    assert first == again == ["stream_batch/d1/b0002", "stream_batch/d1/b0003"]
    runs = _runs("d1")
    assert sorted(runs) == ["stream_batch/d1/b0002", "stream_batch/d1/b0003"]
    run = runs["stream_batch/d1/b0002"][0]
    assert len(runs["stream_batch/d1/b0002"]) == 1 and run.state.type.value == "SCHEDULED"
    assert run.parameters == {"stream": "d1", "batch": "b0002", "policy": "fmp",
                              "storage_url": str(tmp_path)}
    assert {"fmp", "stream:d1", "policy:fmp", "query:red_circle"} <= set(run.tags)


def test_a_failed_run_gets_a_successor_until_the_attempts_run_out(deployment: str, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Failed

    from flows.discover import MAX_ATTEMPTS, discover_batches

    _publish(open_store(str(tmp_path)), "d2", "b0001")
    for attempt in range(1, MAX_ATTEMPTS + 2):
        discover_batches(stream="d2", deployment=deployment, storage_url=str(tmp_path))
        runs = _runs("d2")["stream_batch/d2/b0001"]
        assert len(runs) == min(attempt, MAX_ATTEMPTS)
        with get_client(sync_client=True) as client:
            for run in runs:
                client.set_flow_run_state(run.id, Failed(), force=True)
    assert discover_batches(stream="d2", deployment=deployment, storage_url=str(tmp_path)) == \
        ["stream_batch/d2/b0001"]
    assert len(_runs("d2")["stream_batch/d2/b0001"]) == MAX_ATTEMPTS


def test_nothing_new_starts_nothing(deployment: str, tmp_path: Path) -> None:
    from flows.discover import discover_batches

    assert discover_batches(stream="empty", deployment=deployment, storage_url=str(tmp_path)) == []
