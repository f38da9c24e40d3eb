"""Charts of cost, savings and accuracy over time: inline SVG, an HTML page, a Prefect artifact.

The numbers come from ``policy_store.charts`` (the ledger views); this module only draws
them. Three panels share the x axis (batches in the order their feedback was ingested):

* cost per item in FLOPs (log scale), with the monolithic model's cost per item dashed;
* savings against the monolithic model so far (``ledger_savings.savings`` after each batch);
* accuracy so far (line) and on each batch (dots).

One line per policy. The SVG is self-contained (no script, no external resource), so the
same drawing serves ``fmp report STREAM --html FILE`` and, as a ``data:`` image in a
markdown artifact, the Prefect UI (``trend-<stream>-<policy>``, one per feedback run).
"""

from __future__ import annotations

import argparse
import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from flows._runtime import ledger_reader, settings_for
from flows.artifacts import artifact_key, flops_text, money_text, percent_text
from policy_store.charts import Trend, TrendPoint, ledger_streams, stream_trends

if TYPE_CHECKING:
    from policy_store.store import PolicyStore

#: Line colours per policy (others take the spare ones in name order).
COLOURS = {"fmp": "#d62728", "confirmed": "#e6550d", "learned": "#1f77b4", "cheapest": "#2ca02c",
           "largest": "#ff7f0e", "monolithic": "#7f7f7f", "random": "#9467bd"}
_SPARE = ("#8c564b", "#e377c2", "#17becf", "#bcbd22")
PANEL_W, PANEL_H = 320, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 24, 28, 46  # margins inside a panel
MAX_TICKS = 8  # batch labels on the x axis; more batches show every n-th


def colours(policies: Sequence[str]) -> dict[str, str]:
    spare = iter(_SPARE * (1 + len(policies) // len(_SPARE)))
    return {p: COLOURS.get(p) or next(spare) for p in sorted(policies)}


@dataclass(frozen=True)
class _Panel:
    title: str
    value: Callable[[TrendPoint], float | None]
    fmt: Callable[[float], str]
    log: bool = False
    dots: Callable[[TrendPoint], float | None] | None = None  # per-batch markers
    reference: float | None = None  # a dashed horizontal line (the monolith's cost)
    reference_label: str = ""


def _panels(trends: Sequence[Trend]) -> list[_Panel]:
    mono = next((t.monolithic_flops for t in trends if t.monolithic_flops), None)
    return [
        _Panel("cost per item (FLOPs, log scale)", lambda p: p.flops_per_item, _si, log=True,
               reference=mono, reference_label="monolithic"),
        _Panel("savings vs monolithic so far", lambda p: p.savings_so_far, lambda v: f"{v:.0%}"),
        _Panel("accuracy so far (dots: per batch)", lambda p: p.accuracy_so_far, lambda v: f"{v:.0%}",
               dots=lambda p: p.accuracy),
    ]


def _si(value: float) -> str:
    """A compact tick label: 1k, 10M, 1G, 100T."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def batch_order(trends: Sequence[Trend]) -> list[str]:
    """Every batch of the trends, ordered by when its feedback was first ingested."""
    first: dict[str, datetime] = {}
    for trend in trends:
        for p in trend.points:
            if p.batch not in first or p.ingested_at < first[p.batch]:
                first[p.batch] = p.ingested_at
    return sorted(first, key=lambda b: (first[b], b))


def _range(values: list[float], panel: _Panel) -> tuple[float, float]:
    if panel.log:
        logs = [math.log10(v) for v in values if v > 0]
        floor, ceil = (math.floor(min(logs)), math.ceil(max(logs))) if logs else (0, 1)
        return float(floor), float(max(ceil, floor + 1))
    low, high = min([*values, 0.0]), max([*values, 1.0])
    if panel.dots is not None:  # accuracy: zoom in on the band the values use
        low = min(math.floor(min(values) * 10) / 10, 0.9) if values else 0.0
        high = 1.0
    return low, high if high > low else low + 1


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        decades = max(1, math.ceil((high - low) / 5))
        return [float(e) for e in range(int(low), int(high) + 1, decades)]
    span = high - low
    step = next(s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0) if span / s <= 6)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _panel_svg(panel: _Panel, trends: Sequence[Trend], batches: list[str], x0: float,
               palette: dict[str, str]) -> list[str]:
    plot_w, plot_h = PANEL_W - _LEFT - _RIGHT, PANEL_H - _TOP - _BOTTOM
    left, top = x0 + _LEFT, _TOP
    index = {b: i for i, b in enumerate(batches)}

    def x(batch: str) -> float:
        return left + (plot_w * index[batch] / (len(batches) - 1) if len(batches) > 1 else plot_w / 2)

    values = [v for t in trends for p in t.points for v in (panel.value(p), panel.dots(p) if panel.dots
                                                            else None) if v is not None]
    if panel.reference is not None:
        values.append(panel.reference)
    low, high = _range(values, panel)

    def y(value: float) -> float:
        v = math.log10(value) if panel.log else value
        return top + plot_h * (1 - (v - low) / (high - low))

    out = [f'<g class="panel"><text x="{x0 + PANEL_W / 2:.1f}" y="16" text-anchor="middle" '
           f'font-size="13" font-weight="bold">{escape(panel.title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
           'stroke="#ccc"/>']
    for tick in _ticks(low, high, panel.log):
        ty = top + plot_h * (1 - (tick - low) / (high - low))
        label = panel.fmt(10 ** tick) if panel.log else panel.fmt(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end" font-size="10">'
                   f"{escape(label)}</text>")
    every = max(1, math.ceil(len(batches) / MAX_TICKS))
    for i, batch in enumerate(batches):
        if i % every == 0 or i == len(batches) - 1:
            out.append(f'<text x="{x(batch):.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                       f'font-size="10">{escape(batch)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{PANEL_H - 8}" text-anchor="middle" '
               'font-size="10" fill="#555">batch (in order of feedback)</text>')
    if panel.reference is not None and panel.reference > 0:
        ry = y(panel.reference)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{ry:.1f}" y2="{ry:.1f}" '
                   'stroke="#555" stroke-dasharray="5,4"/>'
                   f'<text x="{left + plot_w - 4}" y="{ry - 4:.1f}" text-anchor="end" font-size="10" '
                   f'fill="#555">{escape(panel.reference_label)}</text>')
    for trend in trends:
        colour = palette[trend.policy]
        xy = [(x(p.batch), y(v)) for p in trend.points if (v := panel.value(p)) is not None
              and (v > 0 or not panel.log)]
        if len(xy) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in xy)
            out.append(f'<polyline class="series" data-policy="{escape(trend.policy)}" points="{path}" '
                       f'fill="none" stroke="{colour}" stroke-width="2"/>')
        elif xy:
            out.append(f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="3" fill="{colour}"/>')
        if panel.dots is not None:
            for p in trend.points:
                if (d := panel.dots(p)) is not None:
                    out.append(f'<circle cx="{x(p.batch):.1f}" cy="{y(d):.1f}" r="2.5" fill="none" '
                               f'stroke="{colour}"/>')
    out.append("</g>")
    return out


def trend_svg(trends: Sequence[Trend]) -> str:
    """The three panels side by side, with a legend: one self-contained ``<svg>`` element."""
    if not trends:
        raise ValueError("no trend to draw: the stream has no ingested feedback")
    stream = trends[0].stream
    batches = batch_order(trends)
    palette = colours([t.policy for t in trends])
    panels = _panels(trends)
    width, height = PANEL_W * len(panels), PANEL_H + 24
    body: list[str] = []
    for i, panel in enumerate(panels):
        body += _panel_svg(panel, trends, batches, i * PANEL_W, palette)
    legend_x = 10.0
    for trend in trends:
        body.append(f'<rect x="{legend_x:.0f}" y="{PANEL_H + 8}" width="14" height="4" '
                    f'fill="{palette[trend.policy]}"/><text x="{legend_x + 18:.0f}" y="{PANEL_H + 14}" '
                    f'font-size="11">{escape(trend.policy)}</text>')
        legend_x += 30 + 7 * len(trend.policy)
    label = f"{stream}: cost per item, savings vs monolithic and accuracy over {len(batches)} batches"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="trend-chart" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
            f'font-family="sans-serif"><title>{escape(label)}</title>'
            f'<rect width="{width}" height="{height}" fill="white"/>' + "".join(body) + "</svg>")


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _summary_rows(trends: Sequence[Trend]) -> list[tuple[str, ...]]:
    return [(t.policy, str(len(t.points)), str(sum(p.items for p in t.points)),
             str(sum(p.labelled for p in t.points)), percent_text(t.last.accuracy_so_far),
             flops_text(t.last.flops_so_far / max(1, sum(p.items_run for p in t.points))),
             money_text(t.last.price_so_far), money_text(t.last.saved_price_so_far),
             percent_text(t.last.savings_so_far)) for t in trends]


_SUMMARY_HEAD = ("policy", "batches", "items", "labelled", "accuracy", "FLOPs per item", "spent",
                 "saved vs monolithic", "savings")
_BATCH_HEAD = ("policy", "batch", "feedback ingested (UTC)", "items", "labelled", "accuracy",
               "accuracy so far", "FLOPs per item", "price per item", "savings so far")


def _batch_rows(trends: Sequence[Trend]) -> list[tuple[str, ...]]:
    return [(t.policy, p.batch, p.ingested_at.strftime("%Y-%m-%d %H:%M:%S"), str(p.items),
             str(p.labelled), percent_text(p.accuracy), percent_text(p.accuracy_so_far),
             flops_text(p.flops_per_item), money_text(p.price_per_item), percent_text(p.savings_so_far))
            for t in trends for p in t.points]


def _html_table(head: Sequence[str], rows: list[tuple[str, ...]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """body{font-family:sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0 24px}th,td{border:1px solid #ddd;padding:4px 8px;font-size:13px}
td{text-align:right}td:first-child,td:nth-child(2){text-align:left}th{background:#f3f3f3}
p.note{color:#555;font-size:13px;max-width:960px}"""


def report_html(trends: Sequence[Trend], generated_at: datetime | None = None) -> str:
    """A static page: the chart (inline SVG), totals per policy and the per-batch numbers."""
    svg = trend_svg(trends)
    stream = trends[0].stream
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    mono = trends[0].monolithic_flops
    baseline = (f"one call of the monolithic model costs {flops_text(mono)}, "
                f"{money_text(trends[0].monolithic_price)}" if mono else
                "no monolithic model is registered in the ledger, so there are no savings to show")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>fmp report: {escape(stream)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{escape(stream)}</h1>"
            f"<p class=\"note\">Cost, savings and accuracy per policy from the cost ledger, batch by "
            f"batch in the order their feedback was ingested. Savings are against running the "
            f"monolithic model on the same items ({escape(baseline)}). Generated {escape(when)}.</p>"
            f"{svg}<h2>So far</h2>{_html_table(_SUMMARY_HEAD, _summary_rows(trends))}"
            f"<h2>Per batch</h2>{_html_table(_BATCH_HEAD, _batch_rows(trends))}</body></html>\n")


def trend_markdown(trends: Sequence[Trend]) -> str:
    """The artifact: the chart as an image, then the totals so far as a table."""
    stream = trends[0].stream
    rows = _summary_rows(trends)
    return "\n".join([
        f"# {stream}: cost, savings and accuracy over time",
        "",
        f"![cost per item, savings and accuracy of {stream} per batch]({svg_data_uri(trend_svg(trends))})",
        "",
        "| " + " | ".join(_SUMMARY_HEAD) + " |",
        "|---|" + "---:|" * (len(_SUMMARY_HEAD) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"The same chart with every policy and the per-batch numbers: `fmp report {stream} --html FILE`.",
    ])


def unknown_stream(db: PolicyStore, stream: str) -> ValueError:
    known = ledger_streams(db)
    return ValueError(f"no ingested results for stream {stream!r} in the ledger; streams with results: "
                      f"{', '.join(known) if known else 'none yet (run fmp feedback STREAM first)'}")


def publish_trend_artifact(db: PolicyStore, stream: str, policy: str) -> UUID | None:
    """Post ``trend-<stream>-<policy>``: the policy's chart so far; None before any feedback."""
    from prefect.artifacts import create_markdown_artifact

    trends = stream_trends(db, stream, [policy])
    if not trends:
        return None
    # prefect's async_dispatch types the call as UUID | Coroutine; called from sync code it is the UUID
    return create_markdown_artifact(  # type: ignore[return-value]
        trend_markdown(trends), key=artifact_key("trend", stream, policy),
        description=f"{stream} under policy {policy}: cost per item, savings vs monolithic and "
                    f"accuracy per batch, through {trends[0].last.batch}")


# --- fmp report -----------------------------------------------------------------------------------

def report_command(args: argparse.Namespace) -> int:
    """``fmp report STREAM [--html FILE]``: the per-batch numbers, and the page with the chart."""
    from flows.cli import format_rows

    db = ledger_reader(settings_for(db_path=args.db))
    trends = stream_trends(db, args.stream, args.policy or None)
    if not trends:
        if args.policy and stream_trends(db, args.stream):
            raise ValueError(f"stream {args.stream!r} has no ingested results for policy "
                             f"{', '.join(args.policy)}; its policies: "
                             f"{', '.join(t.policy for t in stream_trends(db, args.stream))}")
        raise unknown_stream(db, args.stream)
    if args.html:
        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_html(trends))
        n = len(batch_order(trends))
        print(f"wrote {path}: {args.stream}, {n} batch{'es' if n != 1 else ''}, policies "
              f"{', '.join(t.policy for t in trends)}")
        return 0
    rows: list[tuple[object, ...]] = list(_batch_rows(trends))
    print(format_rows(list(_BATCH_HEAD), rows))
    return 0


def add_report_command(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``fmp report`` (reads the ledger only; runs no flow)."""
    from policies.specs import POLICIES

    report = add("report", report_command, "cost per item, savings vs monolithic and accuracy per batch "
                                           "of a stream, as text or as an HTML page with a chart")
    report.add_argument("stream", help="the stream id")
    report.add_argument("--html", default=None, metavar="FILE",
                        help="write a static HTML page with the chart (inline SVG) and the tables "
                             "(default: print the per-batch table)")
    report.add_argument("--policy", action="append", default=[], choices=sorted(POLICIES),
                        help="only this policy (repeatable; default: every policy with results)")
    report.set_defaults(runs_flows=False)
