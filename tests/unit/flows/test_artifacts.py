"""Artifact builders: stable keys, the batch table, the feedback report."""

from __future__ import annotations

from collections import Counter

from flows.artifacts import (
    FeedbackReport,
    artifact_key,
    batch_description,
    batch_table,
    feedback_markdown,
    flops_text,
    money_text,
)
from storage.records import DecisionRecord, ResultRow


def _row(item: str, *decisions: tuple[str, str, float, float], answer: bool | None = True) -> ResultRow:
    return ResultRow(item_id=item, status="ok" if answer is not None else "failed", answer=answer,
                     error=None if answer is not None else "boom", features=[0.0],
                     decisions=[DecisionRecord(call_site=s, function=s.split("@")[0], backend=b,
                                               propensity=0.5, calls=1, flops=f, params=1.0,
                                               wall_ms=1.0, price=p) for s, b, f, p in decisions])


ROWS = [_row("a", ("exists@2:11", "det-s", 1e6, 0.001), ("verify_property@4:11", "attr-l", 2e9, 0.02)),
        _row("b", ("exists@2:11", "det-l", 3e9, 0.5), answer=False),
        _row("c", answer=None)]


def test_keys_are_lowercase_dashes_and_stable() -> None:
    assert artifact_key("batch", "Red_Circle.left", "learned") == "batch-red-circle-left-learned"
    assert artifact_key("feedback", "s1", "monolithic") == "feedback-s1-monolithic"


def test_units() -> None:
    assert (flops_text(1.5e9), flops_text(2e3), flops_text(12.0), flops_text(None)) == \
        ("1.5 GFLOPs", "2 kFLOPs", "12 FLOPs", "n/a")
    assert (money_text(0.000123456), money_text(None)) == ("$0.0001235", "n/a")
    assert money_text(-0.01201) == "-$0.01201"


def test_batch_table_has_one_row_per_call_site_and_backend_with_shares() -> None:
    assert batch_table(ROWS) == [
        {"call_site": "exists@2:11", "function": "exists", "backend": "det-l", "items": 1, "calls": 1,
         "flops": "3 GFLOPs", "price_usd": 0.5, "share": "50%"},
        {"call_site": "exists@2:11", "function": "exists", "backend": "det-s", "items": 1, "calls": 1,
         "flops": "1 MFLOPs", "price_usd": 0.001, "share": "50%"},
        {"call_site": "verify_property@4:11", "function": "verify_property", "backend": "attr-l",
         "items": 1, "calls": 1, "flops": "2 GFLOPs", "price_usd": 0.02, "share": "100%"}]


def test_batch_description_counts_answers_and_costs_by_backend() -> None:
    text = batch_description("s1", "b0003", "learned", 2, ROWS)
    assert text.splitlines()[:2] == [
        "**s1 / b0003** under policy **learned v2**: 3 items, answers failed 1, false 1, true 1.",
        "Cost 5 GFLOPs, $0.521."]
    assert "| det-l | 1 | 3 GFLOPs | $0.5 |" in text.splitlines()


def _report(new_version: int | None) -> FeedbackReport:
    return FeedbackReport(
        stream="s1", policy="learned", batch="b0003", labelled=40, batch_accuracy=0.9, accuracy=0.85,
        items=120, flops_per_item=2e8, price_per_item=0.0004, savings=0.93, saved_flops=3.2e11,
        saved_price=0.33, old_version=2, parent=2, new_version=new_version, note="learned from b0003",
        before=Counter({("exists@2:11", "det-l"): 3, ("exists@2:11", "det-s"): 1}),
        after=Counter({("exists@2:11", "det-s"): 4}))


def test_feedback_markdown_shows_progress_and_how_choices_moved() -> None:
    lines = feedback_markdown(_report(3)).splitlines()
    assert lines[0] == "# s1 / learned: feedback for b0003"
    assert "| savings vs monolithic so far | 93.0% (320 GFLOPs, $0.33) |" in lines
    assert "| cost per item so far | 200 MFLOPs, $0.0004 |" in lines
    assert "New policy version **v3** (parent v2): learned from b0003." in lines
    assert lines[-2:] == ["| exists@2:11 | det-l | 75% | 0% |", "| exists@2:11 | det-s | 25% | 100% |"]


def test_feedback_markdown_without_a_new_version_says_so() -> None:
    assert feedback_markdown(_report(None)).splitlines()[-1] == \
        "No new policy version: b0003 was already learned."
