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


def batches_label(batch_ids: list[str], most: int = 3) -> str:
    """Batch ids for a run name: ``b0001``, ``b0001+b0002``, ``b0001..b0009 (9 batches)``, or
    ``nothing-new`` when there are none."""
    if not batch_ids:
        return "nothing-new"
    if len(batch_ids) <= most:
        return "+".join(batch_ids)
    return f"{batch_ids[0]}..{batch_ids[-1]} ({len(batch_ids)} batches)"


def rename_flow_run(name: str) -> None:
    """Rename the current flow run, once it knows what it works on (outside a run: nothing)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.name == name:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(context.flow_run.id, name=name)
    context.flow_run.name = name
