"""Names and tags that make runs readable in the Prefect UI."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.settings import get_current_settings

#: Where a flow's result would be kept: nowhere, as every fmp flow runs with
#: ``persist_result=False`` (what a run produced is in the object store and the policy store;
#: its return value is for a caller in the same process). The path (Prefect's own local
#: result folder, never written) is named only because, with no storage named, the flow
#: engine asks the server three times per flow run for its default result storage block.
RESULT_STORAGE = Path(get_current_settings().results.local_storage_path)

#: What every fmp flow passes to ``@flow``: no print capture, no persisted result, and the
#: result storage named (``RESULT_STORAGE``).
FLOW_OPTIONS: dict[str, Any] = {"log_prints": False, "persist_result": False,
                                "result_storage": RESULT_STORAGE}


def run_tags(stream: str, policy: str, query_id: str | None = None) -> list[str]:
    """Tags for a run and its task runs: ``fmp``, ``stream:<s>``, ``policy:<p>``, ``query:<q>``."""
    tags = ["fmp", f"stream:{stream}", f"policy:{policy}"]
    return tags + ([f"query:{query_id}"] if query_id else [])


def tag_flow_run(tags: Iterable[str], name: str | None = None) -> None:
    """Add ``tags`` to the current flow run (runs started by a schedule or the CLI lack them)
    and, given ``name``, name it so: one request, and none when it has both already."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:  # not inside a flow run
        return
    run = context.flow_run  # as the engine read it when the run started: no request here
    wanted = sorted(set(run.tags) | set(tags))
    rename = name if name is not None and name != run.name else None
    if wanted != sorted(run.tags) or rename is not None:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=wanted, name=rename)
        if rename is not None:
            run.name = rename


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
