"""Runs Prefect's scheduler inserts are named by fmp's trigger from the moment they exist."""

from __future__ import annotations

import asyncio
import time

import pytest

from flows.run_names import install, main

pytestmark = pytest.mark.integration


def _schedule(flow_name: str, deployment: str, parameters: dict[str, str]) -> list[str]:
    """Create a deployment with an interval schedule and let the server's own scheduling code
    insert its runs (what the scheduler service does every minute); the new runs' names."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.server import models
    from prefect.server.database import provide_database_interface

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        deployment_id = client.create_deployment(
            flow_id, deployment, parameters=parameters,
            schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=timedelta(minutes=1)))])

    async def insert() -> None:
        db = provide_database_interface()
        async with db.session_context(begin_transaction=True) as session:
            # prefect's db_injector hides that it is a coroutine function
            await models.deployments.schedule_runs(  # type: ignore[attr-defined]
                session=session, deployment_id=deployment_id)

    # The session's server writes the same SQLite file (its own scheduler may be inserting this
    # deployment's runs at this moment): a write that meets its lock fails at once with "database
    # is locked" (SQLite's busy wait does not cover a read transaction turning into a write).
    # The insert is idempotent (ON CONFLICT DO NOTHING), so it is tried again; the runs are
    # named by the trigger whichever of the two inserted them.
    from sqlalchemy.exc import OperationalError

    for attempt in range(5):
        try:
            asyncio.run(insert())
            break
        except OperationalError as exc:
            if "database is locked" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}))
    assert runs and all(r.auto_scheduled for r in runs)
    return sorted({r.name for r in runs})


def test_scheduled_runs_of_fmp_flows_are_named_as_they_are_inserted(prefect_harness, capsys) -> None:
    assert main([]) == 0
    assert "named when created (sqlite trigger" in capsys.readouterr().out
    install()  # again: replaces the trigger
    assert _schedule("discover_batches", "discover-test", {"policy": "fmp"}) == ["discover/all streams"]
    assert _schedule("discover_batches", "discover-one", {"stream": "s9"}) == ["discover/s9"]
    assert _schedule("ingest_feedback_all", "feedback-test", {}) == ["ingest_feedback/all streams"]
    assert _schedule("stream_batch", "batch-test", {"stream": "s9"}) == ["stream_batch/s9/next"]
    # other flows keep Prefect's names (one random name per run)
    other = _schedule("someone_elses_flow", "theirs", {})
    assert len(other) > 1 and not any("/" in name for name in other)


def test_an_unreachable_database_is_one_line_and_exit_1(capsys) -> None:
    assert main(["--url", "postgresql+asyncpg://nobody@127.0.0.1:1/none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run names: could not name scheduled runs")
