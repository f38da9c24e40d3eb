"""The trend chart: SVG, HTML page, artifact markdown, `fmp report`, and every option's help."""

from __future__ import annotations

import argparse
import base64
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from flows.cli import _parser, main
from flows.report_html import batch_order, report_html, trend_markdown, trend_svg
from flows.runs import batches_label
from policy_store import BackendCost, IngestBatch, PolicyStore
from policy_store.charts import Trend, TrendPoint
from storage.records import DecisionRecord, ResultRow

SVG = "{http://www.w3.org/2000/svg}"


def _point(batch: str, minute: int, flops: float, accuracy: float | None, savings: float | None) -> TrendPoint:
    return TrendPoint(batch=batch, ingested_at=datetime(2026, 1, 1, 12, minute), items=10, labelled=10,
                      accuracy=accuracy, items_run=10, flops=flops, price=flops / 1e9, savings=savings,
                      accuracy_so_far=accuracy, flops_so_far=flops, price_so_far=flops / 1e9,
                      saved_price_so_far=0.01, savings_so_far=savings)


def _trends() -> list[Trend]:
    learned = Trend("red <stream>", "learned", (
        _point("b0001", 1, 5e8, 0.9, 0.5), _point("b0000", 2, 2e8, 0.95, 0.7),
        _point("b0002", 3, 1e8, 1.0, 0.8)), 1e9, 0.003)
    cheapest = Trend("red <stream>", "cheapest", (_point("b0000", 0, 1e6, 0.8, 0.99),), 1e9, 0.003)
    return [cheapest, learned]


def test_the_svg_has_one_line_per_policy_per_panel_and_the_monolith_dashed() -> None:
    svg = trend_svg(_trends())
    root = ET.fromstring(svg)  # well-formed XML, the stream name escaped
    assert root.tag == f"{SVG}svg" and root.get("id") == "trend-chart"
    assert "red <stream>" in root.findtext(f"{SVG}title", "")
    lines = root.iter(f"{SVG}polyline")
    assert sorted(line.get("data-policy", "") for line in lines) == ["learned"] * 3
    # cheapest has one batch: a point per panel instead of a line
    assert len([c for c in root.iter(f"{SVG}circle") if c.get("r") == "3"]) == 3
    assert len([ln for ln in root.iter(f"{SVG}line") if ln.get("stroke-dasharray")]) == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"b0000", "b0001", "b0002", "monolithic", "learned", "cheapest"} <= set(texts)


def test_batches_are_ordered_by_first_feedback_and_thinned_on_the_axis() -> None:
    assert batch_order(_trends()) == ["b0000", "b0001", "b0002"]
    many = Trend("s", "learned", tuple(_point(f"b{i:04d}", i, 1e6 * (i + 1), 0.9, 0.5) for i in range(40)),
                 1e9, 0.003)
    labels = [t.text for t in ET.fromstring(trend_svg([many])).iter(f"{SVG}text")
              if t.text and re.fullmatch(r"b\d{4}", t.text)]
    assert 3 * 8 <= len(labels) <= 3 * 9 and "b0039" in labels  # ~8 per panel, the last always


def test_a_trend_without_a_monolith_still_draws() -> None:
    lone = Trend("s", "learned", (_point("b0", 1, 0.0, None, None), _point("b1", 2, 10.0, 1.0, None)),
                 None, None)
    root = ET.fromstring(trend_svg([lone]))
    assert not [ln for ln in root.iter(f"{SVG}line") if ln.get("stroke-dasharray")]
    with pytest.raises(ValueError, match="no ingested feedback"):
        trend_svg([])


def test_the_page_and_the_artifact_carry_the_chart() -> None:
    page = report_html(_trends(), generated_at=datetime(2026, 1, 2))
    assert page.startswith("<!DOCTYPE html>") and "<h1>red &lt;stream&gt;</h1>" in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="trend-chart"' in page
    assert page.count("<tr>") == 1 + 2 + 1 + 4  # heads, totals per policy, one row per batch
    markdown = trend_markdown(_trends())
    uri = re.search(r"\]\((data:image/svg\+xml;base64,[A-Za-z0-9+/=]+)\)", markdown)
    assert uri is not None
    assert base64.b64decode(uri.group(1).split(",", 1)[1]).decode() == trend_svg(_trends())
    assert "| learned | 3 | 30 | 30 | 100.0% |" in markdown
    assert "`fmp report red <stream> --html FILE`" in markdown


def _ledger(tmp_path: Path) -> Path:
    path = tmp_path / "fmp.duckdb"
    db = PolicyStore(path)
    db.init()
    db.register_backends([BackendCost("mono", "monolithic", ("query",), 1000.0, 1.0, 0.0, 0.01)])
    for batch in ("b0000", "b0001"):
        rows = [ResultRow(item_id=f"{batch}-{i}", status="ok", answer=True, error=None, features=[],
                          decisions=[DecisionRecord(call_site="exists@2:11", function="exists",
                                                    backend="det", propensity=1.0, calls=1, flops=100.0,
                                                    params=1.0, wall_ms=1.0, price=0.001)])
                for i in range(3)]
        db.ingest_batch(IngestBatch("s1", "learned", batch, 1, "prog", rows,
                                    {f"{batch}-{i}": i != 2 for i in range(3)}))
    return path


def test_fmp_report_writes_the_page_and_prints_the_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _ledger(tmp_path)
    out = tmp_path / "out" / "s1.html"
    assert main(["--db", str(db), "report", "s1", "--html", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}: s1, 2 batches, policies learned\n"
    page = out.read_text()
    assert "<h1>s1</h1>" in page and 'id="trend-chart"' in page and "90.0%" in page  # 1 - 100/1000
    assert main(["--db", str(db), "report", "s1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["policy", "batch"] and len(lines) == 2 + 2 + 1
    assert lines[3].split()[:2] == ["learned", "b0001"] and lines[3].endswith("90.0%")


def test_fmp_report_names_the_streams_and_policies_it_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _ledger(tmp_path)
    assert main(["--db", str(db), "report", "nope"]) == 1
    assert capsys.readouterr().err == ("fmp report: error: no ingested results for stream 'nope' in the "
                                       "ledger; streams with results: s1\n")
    assert main(["--db", str(db), "report", "s1", "--policy", "cheapest"]) == 1
    assert capsys.readouterr().err.endswith("no ingested results for policy cheapest; its policies: learned\n")


def _commands(parser: argparse.ArgumentParser, path: str = "fmp"
              ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{path} {name}")
    return found


def test_every_option_has_help_and_shows_its_default() -> None:
    missing, no_default = [], []
    for path, parser in _commands(_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) \
                    or action.help == argparse.SUPPRESS:
                continue
            name = f"{path} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(name)
            elif action.option_strings and action.nargs != 0 and "default" not in \
                    formatter._expand_help(action):
                no_default.append(name)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help shows no default: {no_default}"


def test_stream_publish_help_lists_the_queries(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.queries import QUERIES

    with pytest.raises(SystemExit):
        main(["stream", "publish", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(q in help_text for q in QUERIES)
    assert "--batches N" in help_text or "(default: 6)" in help_text
    assert main(["stream", "publish", "no_such_query"]) == 1
    err = capsys.readouterr().err
    assert "unknown query 'no_such_query'" in err and all(q in err for q in QUERIES)


def test_run_names_say_which_batches() -> None:
    assert batches_label([]) == "nothing-new"
    assert batches_label(["b0001"]) == "b0001"
    assert batches_label(["b0001", "b0003"]) == "b0001+b0003"
    assert batches_label([f"b{i:04d}" for i in range(9)]) == "b0000..b0008 (9 batches)"
