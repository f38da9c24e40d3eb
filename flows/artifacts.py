"""What the Prefect UI shows per run: a table per batch, a markdown report per feedback.

Keys are stable per (stream, policy) — ``batch-<stream>-<policy>`` and
``feedback-<stream>-<policy>`` — so the UI's Artifacts page keeps each one's history.
The builders are pure functions (tested without Prefect); ``publish_*`` post them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TypedDict
from uuid import UUID

from policies.choices import Shares
from storage.records import ResultRow


def artifact_key(kind: str, stream: str, policy: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for (stream, policy)."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{kind}-{stream}-{policy}".lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug)


def flops_text(flops: float | None) -> str:
    """FLOPs with an SI prefix: ``1.5 GFLOPs``."""
    if flops is None:
        return "n/a"
    for scale, unit in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"), (1e3, "kFLOPs")):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOPs"


def money_text(price: float | None) -> str:
    """US$ with four significant digits (prices per call are fractions of a cent); a negative
    amount (savings below the baseline) reads ``-$0.012``."""
    if price is None:
        return "n/a"
    return f"-${-price:.4g}" if price < 0 else f"${price:.4g}"


def percent_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


class _SiteBackend(TypedDict):
    """One (call site, backend)'s totals over a batch."""

    call_site: str
    function: str
    backend: str
    items: int
    calls: int
    flops: float
    price_usd: float


def batch_table(rows: list[ResultRow]) -> list[dict[str, object]]:
    """One row per (call site, backend): items routed, calls, FLOPs and price, in site order."""
    groups: dict[tuple[str, str], _SiteBackend] = {}
    per_site: Counter[str] = Counter()
    for row in rows:
        for d in row.decisions:
            g = groups.setdefault((d.call_site, d.backend), {
                "call_site": d.call_site, "function": d.function, "backend": d.backend,
                "items": 0, "calls": 0, "flops": 0.0, "price_usd": 0.0})
            g["items"] += 1
            g["calls"] += d.calls
            g["flops"] += d.flops
            g["price_usd"] += d.price
            per_site[d.call_site] += 1
    table = []
    for (site, _), g in sorted(groups.items()):
        table.append({**g, "share": f"{g['items'] / per_site[site]:.0%}",
                      "flops": flops_text(g["flops"]), "price_usd": round(float(g["price_usd"]), 8)})
    return table


def batch_description(stream: str, batch: str, policy: str, version: int,
                      rows: list[ResultRow]) -> str:
    """Markdown above the table: items, answers, and cost by backend."""
    answers = Counter("failed" if r.status == "failed" else str(r.answer).lower() for r in rows)
    by_backend: dict[str, list[float]] = {}
    for row in rows:
        for d in row.decisions:
            cost = by_backend.setdefault(d.backend, [0, 0.0, 0.0])
            cost[0] += d.calls
            cost[1] += d.flops
            cost[2] += d.price
    total_flops = sum(c[1] for c in by_backend.values())
    total_price = sum(c[2] for c in by_backend.values())
    lines = [
        f"**{stream} / {batch}** under policy **{policy} v{version}**: {len(rows)} items, answers "
        + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())) + ".",
        f"Cost {flops_text(total_flops)}, {money_text(total_price)}.",
        "",
        "| backend | calls | FLOPs | price |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {c[0]} | {flops_text(c[1])} | {money_text(c[2])} |"
          for name, c in sorted(by_backend.items())),
    ]
    return "\n".join(lines)


def publish_batch_artifact(stream: str, batch: str, policy: str, version: int,
                           rows: list[ResultRow]) -> UUID:
    """Post the batch's table artifact under ``batch-<stream>-<policy>``."""
    from prefect.artifacts import create_table_artifact

    # prefect's async_dispatch types the call as UUID | Coroutine; called from sync code it is the UUID
    return create_table_artifact(  # type: ignore[return-value]
        batch_table(rows), key=artifact_key("batch", stream, policy),
        description=batch_description(stream, batch, policy, version, rows))


@dataclass(frozen=True)
class FeedbackReport:
    """Everything the feedback markdown shows; numbers come from the ledger views."""

    stream: str
    policy: str
    batch: str
    labelled: int
    batch_accuracy: float | None
    accuracy: float | None
    items: int
    flops_per_item: float | None
    price_per_item: float | None
    savings: float | None
    saved_flops: float | None
    saved_price: float | None
    old_version: int  # the version that routed this batch
    parent: int | None  # the new version's parent (the latest before it)
    new_version: int | None
    note: str
    before: Shares
    after: Shares
    # labels (flows._feedback.FeedbackSummary): learned of labelled, label versions trained on
    # now (new, corrected), labels normalised, labels.jsonl lines rejected, ledger rows
    learned: int = 0
    new_labels: int = 0
    corrected: int = 0
    normalised: int = 0
    rejected_lines: tuple[int, ...] = ()
    results: str = "new"


def _line_list(numbers: tuple[int, ...], most: int = 10) -> str:
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def feedback_markdown(r: FeedbackReport) -> str:
    """The feedback report: quality and savings so far, then how the policy's choices moved."""
    lines = [
        f"# {r.stream} / {r.policy}: feedback for {r.batch}",
        "",
        "| | value |",
        "|---|---:|",
        f"| labelled items in this batch | {r.labelled} |",
        f"| labelled items the policy has learned | {r.learned} of {r.labelled} |",
        f"| label versions first seen / corrected in this run | {r.new_labels} / {r.corrected} |",
        f"| labels normalised (e.g. \"False\" → no) | {r.normalised} |",
        f"| labels.jsonl lines rejected | {len(r.rejected_lines)}"
        + (f" (lines {_line_list(r.rejected_lines)})" if r.rejected_lines else "") + " |",
        f"| accuracy on this batch | {percent_text(r.batch_accuracy)} |",
        f"| accuracy so far | {percent_text(r.accuracy)} |",
        f"| items answered so far | {r.items} |",
        f"| cost per item so far | {flops_text(r.flops_per_item)}, {money_text(r.price_per_item)} |",
        f"| savings vs monolithic so far | {percent_text(r.savings)} "
        f"({flops_text(r.saved_flops)}, {money_text(r.saved_price)}) |",
        "",
    ]
    if r.results == "replaced":
        lines += [f"The results of {r.batch} changed since its last ingest (a rerun batch): its "
                  "ledger rows were replaced to match them.", ""]
    if r.new_version is None:
        lines.append(f"No new policy version: {r.batch} has no labels." if r.labelled == 0
                     else f"No new policy version: {r.batch} was already learned.")
        return "\n".join(lines)
    parent = f"parent v{r.parent}" if r.parent is not None else "no parent"
    lines += [f"New policy version **v{r.new_version}** ({parent}): {r.note}.", "",
              f"## How its choices moved on {r.batch}'s items",
              "", f"| call site | backend | v{r.old_version} chose | v{r.new_version} would choose |",
              "|---|---|---:|---:|"]
    sites = Counter(site for site, _ in r.before.elements())
    for site, backend in sorted(set(r.before) | set(r.after)):
        n = sites[site] or 1
        lines.append(f"| {site} | {backend} | {r.before[(site, backend)] / n:.0%} "
                     f"| {r.after[(site, backend)] / n:.0%} |")
    return "\n".join(lines)


def publish_feedback_artifact(report: FeedbackReport) -> UUID:
    """Post the feedback report under ``feedback-<stream>-<policy>``."""
    from prefect.artifacts import create_markdown_artifact

    # prefect's async_dispatch types the call as UUID | Coroutine; called from sync code it is the UUID
    return create_markdown_artifact(  # type: ignore[return-value]
        feedback_markdown(report), key=artifact_key("feedback", report.stream, report.policy),
        description=f"{report.stream}/{report.batch} feedback for policy {report.policy}")
