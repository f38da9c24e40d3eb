"""Names and tags that make runs readable in the Prefect UI."""

from __future__ import annotations

from collections.abc import Iterable


def run_tags(stream: str, policy: str, query_id: str | None = None) -> list[str]:
    """Tags for a run and its task runs: ``fmp``, ``stream:<s>``, ``policy:<p>``, ``query:<q>``."""
    tags = ["fmp", f"stream:{stream}", f"policy:{policy}"]
    return tags + ([f"query:{query_id}"] if query_id else [])


def tag_flow_run(tags: Iterable[str]) -> None:
    """Add ``tags`` to the current flow run (runs started by a schedule or the CLI lack them)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:  # not inside a flow run
        return
    run = context.flow_run  # as the engine read it when the run started: no request here
    wanted = sorted(set(run.tags) | set(tags))
    if wanted != sorted(run.tags):
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=wanted)
