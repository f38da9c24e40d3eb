"""A flow run whose heartbeats stop is marked Crashed by the automation of flows/zombies.py;
one that keeps beating is left Running (against the session's real Prefect server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.faults import CRASHED_BOUND_S
from flows.zombies import CRASHED_WITHIN_S, HEARTBEAT_S, ensure_zombie_automation, zombie_automation

pytestmark = pytest.mark.faults

#: Prefect's minimum ``within`` for a proactive trigger: the test's automation waits this long.
CRASH_AFTER_S = 10.0
#: From the last heartbeat to Crashed: ``CRASH_AFTER_S``, the server's 5 s evaluation tick, the action.
BOUND_S = CRASH_AFTER_S + 5 + 10


def _heartbeat(flow_run: Any) -> None:
    """One ``prefect.flow-run.heartbeat`` event for ``flow_run``, as the flow engine sends it."""
    from prefect.events.clients import get_events_client
    from prefect.events.schemas.events import Event

    async def send() -> None:
        async with get_events_client() as events:
            await events.emit(Event(event="prefect.flow-run.heartbeat", resource={
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.name": flow_run.name}))

    asyncio.run(send())


def _state(client: Any, flow_run: Any) -> str:
    return str(client.read_flow_run(flow_run.id).state.type.value)


def test_a_run_whose_heartbeats_stop_is_crashed_and_a_beating_one_is_not(prefect_api) -> None:
    """Three runs under a test automation: ``dead`` beats once and stops, ``silent`` turns
    Running and never beats (its heartbeats lost, as when the server died as it started),
    ``beating`` beats every 4 s; the first two are marked Crashed within the bound."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    @flow(name="fmp-zombie-probe")
    def probe() -> None:
        pass

    name = f"fmp-zombie-test-{time.time_ns()}"
    with get_client(sync_client=True) as client:
        dead, beating = (client.create_flow_run(probe, name=n) for n in ("dead", "beating"))
        for run in (dead, beating):
            client.set_flow_run_state(run.id, Running())
        runs = [f"prefect.flow-run.{dead.id}", f"prefect.flow-run.{beating.id}"]
        automation, created = ensure_zombie_automation(name, CRASH_AFTER_S, runs)
        assert created
        try:
            assert ensure_zombie_automation(name, CRASH_AFTER_S, runs) == (automation, False)
            assert [a.id for a in client.read_automations_by_name(name)] == [automation]
            silent = client.create_flow_run(probe, name="silent")
            client.update_automation(automation, zombie_automation(
                name, CRASH_AFTER_S, [*runs, f"prefect.flow-run.{silent.id}"]))
            client.set_flow_run_state(silent.id, Running())
            _heartbeat(dead)
            last = time.monotonic()
            beat = last
            _heartbeat(beating)
            crashed: dict[str, float] = {}
            while len(crashed) < 2 and time.monotonic() - last < BOUND_S + 5:
                time.sleep(0.5)
                if time.monotonic() - beat >= 4:  # well inside the 10 s the trigger allows
                    _heartbeat(beating)
                    beat = time.monotonic()
                for run in (dead, silent):
                    if run.name not in crashed and _state(client, run) != "RUNNING":
                        crashed[run.name] = time.monotonic() - last
            crashed_after = crashed.get("dead", time.monotonic() - last)
            print(f"\na flow run without heartbeats marked Crashed {crashed_after:.1f} s after its last "
                  f"heartbeat, one that never beat {crashed.get('silent', float('nan')):.1f} s after it "
                  f"turned Running (trigger within {CRASH_AFTER_S:g} s)")
            assert _state(client, dead) == "CRASHED", f"still {_state(client, dead)} after {crashed_after:.0f} s"
            assert CRASH_AFTER_S <= crashed_after < BOUND_S
            assert _state(client, silent) == "CRASHED", f"still {_state(client, silent)}"
            assert crashed["silent"] < BOUND_S
            state = client.read_flow_run(dead.id).state
            assert state is not None and "no heartbeat for 10 s" in (state.message or "")
            assert _state(client, beating) == "RUNNING"
            client.set_flow_run_state(beating.id, Completed())
        finally:
            client.delete_automation(automation)


def test_the_deployments_beat_as_often_as_the_automation_expects() -> None:
    """prefect.yaml's deployments run with the heartbeat the automation's bound assumes, and the
    production automation is the documented proactive trigger over every flow run."""
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_S), deployment["name"]
    from prefect.events.schemas.automations import EventTrigger

    trigger = zombie_automation().trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"}
    assert "prefect.flow-run.heartbeat" in trigger.expect and "prefect.flow-run.Completed" in trigger.expect
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.within.total_seconds() > 2 * HEARTBEAT_S
    # the faults runner (which imports nothing from flows/) states the same bound
    assert CRASHED_BOUND_S == CRASHED_WITHIN_S >= HEARTBEAT_S + trigger.within.total_seconds() + 5


def test_an_automation_waiting_after_heartbeats_alone_gets_the_running_event(prefect_api) -> None:
    """A server that has the automation as this module created it before (heartbeats alone
    start the wait) gets the Running event added; its other settings are left as they were."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import EventTrigger

    name = f"fmp-zombie-upgrade-{time.time_ns()}"
    old = zombie_automation(name, 40.0, ["prefect.flow-run.nothing"])
    assert isinstance(old.trigger, EventTrigger)
    old.trigger.after = {"prefect.flow-run.heartbeat"}
    with get_client(sync_client=True) as client:
        automation = client.create_automation(old)
        try:
            assert ensure_zombie_automation(name) == (automation, False)
            (found,) = client.read_automations_by_name(name)
            assert isinstance(found.trigger, EventTrigger)
            assert found.trigger.after == {"prefect.flow-run.heartbeat", "prefect.flow-run.Running"}
            assert found.trigger.within.total_seconds() == 40.0  # as it was
        finally:
            client.delete_automation(automation)
