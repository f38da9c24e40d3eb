"""The evaluate flow: the savings table (accuracy, F1, cost per policy) from the current ledger."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from flows._runtime import settings_for
from flows.runs import FLOW_OPTIONS
from policy_store.report import PolicyTable, format_table, policy_table, write_report
from policy_store.store import PolicyStore


def ledger_streams(db: PolicyStore) -> list[str]:
    """Every stream with results in the ledger, sorted."""
    _, rows = db.query("SELECT DISTINCT stream FROM results ORDER BY stream")
    return [r[0] for r in rows]


def _run_name() -> str:
    streams = flow_run.parameters.get("streams")
    return f"evaluate/{'+'.join(streams) if streams else 'every-stream'}"


@flow(name="evaluate", flow_run_name=_run_name, **FLOW_OPTIONS)
def evaluate(streams: list[str] | None = None, db_path: str | None = None) -> PolicyTable:
    """Compare the policies on the labelled items already in the ledger.

    Publishes the markdown artifact ``evaluation`` and writes ``<home>/report.json``.

    Args:
        streams: streams to include; default every stream in the ledger.
        db_path: DuckDB policy store file; default ``.fmp/fmp.duckdb``.

    Policies are compared on the same items: the labelled items every policy answered
    (``items``; ``answered`` counts each policy's own). Savings are against the monolithic
    model on those items, as in ``ledger_savings``.

    Returns:
        Per policy: items, answered, accuracy, F1, cost (FLOPs), params, wall ms, price and
        savings vs monolithic; ``None`` where there is nothing to divide by.
    """
    from prefect.artifacts import create_markdown_artifact

    settings = settings_for(db_path=db_path)
    if not settings.database.exists():
        raise FileNotFoundError(f"no ledger at {settings.database}; run feedback first "
                                "(fmp feedback STREAM, or the ingest-feedback deployment)")
    # read only: evaluation never needs the writer slot
    db = PolicyStore(settings.database, lock_timeout_s=settings.lock_timeout_s, read_only=True)
    chosen = streams or ledger_streams(db)
    table = policy_table(db, chosen) if chosen else {}
    write_report(settings.home / "report.json", table, {"streams": chosen})
    create_markdown_artifact(
        f"Streams: {', '.join(chosen) or 'none'}\n\n```\n{format_table(table)}\n```",
        key="evaluation", description="policies compared on the labelled items in the ledger")
    return table
