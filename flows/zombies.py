"""Flow runs whose process died are marked *Crashed* by the Prefect server, within a bound.

A flow run killed with its process (``kill -9`` of a worker and the run under it, a machine
that goes away, an ``fmp`` command whose server was killed) reports nothing more, and Prefect
shows it *Running* forever. Prefect's own remedy ("Detect zombie flows" in its docs): every
flow run sends a ``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds (the first as it starts), and an automation with a proactive trigger expects, after
each heartbeat, another heartbeat or a final state within ``CRASH_AFTER_S``; when none comes,
its action sets the run *Crashed*. The run turning *Running* starts the same wait: its
heartbeats are events the client sends on its own, and one sent as the server died is lost
(measured: a run of an ``fmp`` command whose server was killed while it ran had no heartbeat
on the restarted server, so nothing expected another, and it stayed *Running*), while the
*Running* event is the server's own, recorded with the state. The server evaluates proactive
triggers every 5 s (``PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY``), so a run is marked at
most ``CRASH_AFTER_S`` + 5 s (plus the action's own API call) after its last heartbeat (or its
turning Running), which came at most ``HEARTBEAT_S`` before it died: ``CRASHED_WITHIN_S`` after
the kill.

Every run fmp reports to a long-lived server beats every ``HEARTBEAT_S``: deployment runs
through the ``env`` job variable in ``prefect.yaml``, ``fmp`` commands through
``flows._runtime.in_process_runs``. A run that beats less often than ``CRASH_AFTER_S`` (Prefect's
default is 180 s) and runs longer would be marked *Crashed* while alive, so anything else that
runs flows against that server sets ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30`` too.

``python -m flows.zombies`` creates the automation on the server of ``PREFECT_API_URL`` unless
one of that name exists (``make serve`` runs it); an existing one is left as it is, so an
operator may tune or disable it in the UI, except one still waiting after heartbeats alone
(as this module created it before), which gets the *Running* event added.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.events.schemas.automations import AutomationCore

#: Seconds between a flow run's heartbeats (Prefect's minimum is 30).
HEARTBEAT_S = 30
#: A run with no heartbeat or final state this long after its last heartbeat is marked Crashed:
#: three heartbeats, so one late or lost heartbeat on a busy machine crashes nothing alive.
CRASH_AFTER_S = 90
#: The bound an operator is promised, from the kill to *Crashed*: the last heartbeat up to
#: ``HEARTBEAT_S`` before the kill, ``CRASH_AFTER_S``, the 5 s evaluation tick, the action.
CRASHED_WITHIN_S = 130
#: The automation's name on the server (one per server: created once, found by this name).
AUTOMATION = "fmp: mark flow runs without heartbeats crashed"
#: The events after which a run is expected to beat again or end: its heartbeats, and its
#: turning Running (in case the heartbeats never reach the server).
AFTER = ("prefect.flow-run.heartbeat", "prefect.flow-run.Running")
#: The events that keep a run from being marked: a heartbeat, or a final state.
ALIVE_OR_DONE = ("prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                 "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed")


def zombie_automation(name: str = AUTOMATION, crash_after_s: float = CRASH_AFTER_S,
                      flow_runs: Sequence[str] = ("prefect.flow-run.*",)) -> AutomationCore:
    """The automation: for each flow run matching ``flow_runs`` (resource id patterns), after
    a heartbeat or its turning Running, expect a heartbeat or a final state within
    ``crash_after_s`` seconds (Prefect's minimum is 10), else change the run's state to Crashed."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=name,
        description=(f"A flow run that sent no heartbeat and reached no final state for "
                     f"{crash_after_s:g} s after its last heartbeat (or after it turned Running) has "
                     "lost its process: mark it Crashed (flows/zombies.py)."),
        trigger=EventTrigger(
            after=set(AFTER),
            expect=set(ALIVE_OR_DONE),
            match=ResourceSpecification({"prefect.resource.id": list(flow_runs)}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=crash_after_s),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=(f"no heartbeat for {crash_after_s:g} s: the process running this flow run "
                     "died (marked by the automation of flows/zombies.py)"))],
    )


def ensure_zombie_automation(name: str = AUTOMATION, crash_after_s: float = CRASH_AFTER_S,
                             flow_runs: Sequence[str] = ("prefect.flow-run.*",)) -> tuple[UUID, bool]:
    """Create ``zombie_automation(...)`` on the current Prefect server unless an automation
    named ``name`` exists; returns its id and whether it was created now. An existing one is
    left as an operator may have tuned it, except that one still waiting after heartbeats
    alone (as created before the Running event was added) gets the Running event too."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
        if existing:
            found = existing[0]
            trigger = found.trigger
            if isinstance(trigger, EventTrigger) and trigger.after == {AFTER[0]}:
                trigger.after = set(AFTER)
                client.update_automation(found.id, AutomationCore.model_validate(found.model_dump(
                    include={"name", "description", "enabled", "tags", "trigger", "actions",
                             "actions_on_trigger", "actions_on_resolve"})))
            return found.id, False
        return client.create_automation(zombie_automation(name, crash_after_s, flow_runs)), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.zombies",
        description="Create, once, the automation that marks flow runs without heartbeats Crashed "
                    "on the Prefect server of PREFECT_API_URL.")
    parser.parse_args(argv)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print("python -m flows.zombies: error: PREFECT_API_URL is not set (the automation belongs on "
              "a long-lived server)", file=sys.stderr)
        return 1
    try:
        automation, created = ensure_zombie_automation()
    except Exception as exc:  # one line: the server is down, refuses the automation, ...
        print(f"python -m flows.zombies: error: {PREFECT_API_URL.value()}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    print(f"automation {AUTOMATION!r} {'created' if created else 'exists'} ({automation}): flow runs "
          f"without a heartbeat for {CRASH_AFTER_S} s are marked Crashed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
