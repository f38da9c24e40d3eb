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
    from prefect.runtime import flow_run

    run_id = flow_run.id
    if run_id is None:  # not inside a flow run
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run_id).tags
        wanted = sorted(set(current) | set(tags))
        if wanted != sorted(current):
            client.update_flow_run(run_id, tags=wanted)
