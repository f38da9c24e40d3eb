"""The savings table and the trend data: same items for every policy, no NaN, the views' rules."""

from __future__ import annotations

import math

import pytest

from policy_store import BackendCost, IngestBatch, PolicyStore
from policy_store.charts import ledger_streams, stream_trends
from policy_store.report import format_table, policy_table
from storage.records import DecisionRecord, ResultRow

MONO = BackendCost("mono", "monolithic", ("query",), flops=1000.0, params=1.0, wall_ms=0.0, price=0.01)


def _row(item: str, answer: bool | None, flops: float) -> ResultRow:
    if answer is None:
        return ResultRow(item_id=item, status="failed", answer=None, error="corrupt image",
                         features=[], decisions=[])
    return ResultRow(item_id=item, status="ok", answer=answer, error=None, features=[], decisions=[
        DecisionRecord(call_site="exists@2:11", function="exists", backend="det", propensity=1.0,
                       calls=1, flops=flops, params=10.0, wall_ms=1.0, price=flops / 1e5)])


def _ingest(db: PolicyStore, policy: str, batch: str, rows: list[ResultRow],
            labels: dict[str, str | bool], stream: str = "s1") -> None:
    db.ingest_batch(IngestBatch(stream, policy, batch, 1, "prog", rows, labels))


@pytest.fixture
def db(store_url: str) -> PolicyStore:
    """learned on b1 and b2 (8 labelled items), cheapest on b1 only (4); no monolithic policy.
    On each backend (conftest's ``store_url``)."""
    store = PolicyStore(store_url)
    store.init()
    b1: dict[str, str | bool] = {"a": True, "b": False, "c": False, "d": True}
    b2: dict[str, str | bool] = {"e": True, "f": False, "g": False, "h": False}
    _ingest(store, "learned", "b1", [_row("a", True, 100), _row("b", False, 100), _row("c", True, 300),
                                     _row("d", None, 0)], b1)
    _ingest(store, "learned", "b2", [_row(i, i == "e", 50) for i in b2], b2)
    _ingest(store, "cheapest", "b1", [_row("a", False, 10), _row("b", False, 10), _row("c", False, 10),
                                      _row("d", None, 0)], b1)
    return store


def test_policies_are_compared_on_the_items_every_policy_answered(db: PolicyStore) -> None:
    table = policy_table(db, ["s1"])
    assert {p: (s["answered"], s["items"]) for p, s in table.items()} == {
        "learned": (8, 4), "cheapest": (4, 4)}
    # on b1 only: learned a, b right, c wrong, d failed; cheapest b, c right
    assert table["learned"]["accuracy"] == 0.5
    assert table["cheapest"]["accuracy"] == 0.5
    assert table["learned"]["cost"] == 500.0  # b1's decisions only, not b2's
    assert table["cheapest"]["cost"] == 30.0


def test_savings_come_from_the_registered_monolith_without_a_monolithic_policy(db: PolicyStore) -> None:
    assert all(s["savings_vs_monolithic"] is None for s in policy_table(db, ["s1"]).values())
    assert "nan" not in format_table(policy_table(db, ["s1"])).lower()
    assert format_table(policy_table(db, ["s1"])).splitlines()[2].endswith("n/a")
    db.register_backends([MONO])
    table = policy_table(db, ["s1"])
    # three items ran (d failed before any call): the monolith would have cost 3 × 1000
    assert table["learned"]["savings_vs_monolithic"] == pytest.approx(1 - 500 / 3000)
    assert table["cheapest"]["savings_vs_monolithic"] == pytest.approx(1 - 30 / 3000)
    # the same rule as the ledger view, on the same items
    _, rows = db.query("SELECT savings FROM ledger_savings WHERE policy = 'cheapest'")
    assert rows[0][0] == pytest.approx(table["cheapest"]["savings_vs_monolithic"])
    text = format_table(table)
    assert text.splitlines()[0] == ("compared on the 4 labelled items every policy answered; "
                                    "labelled items answered in all: cheapest 4, learned 8")
    assert "83.3%" in text and "99.0%" in text and "nan" not in text.lower()


def test_no_common_items_is_n_a_not_nan(db: PolicyStore) -> None:
    _ingest(db, "largest", "b2", [_row("e", True, 70)], {"e": True, "f": False, "g": False, "h": False})
    table = policy_table(db, ["s1"])
    assert {p: s["items"] for p, s in table.items()} == {"learned": 0, "cheapest": 0, "largest": 0}
    assert all(s["accuracy"] is None and s["f1"] is None for s in table.values())
    assert not any(isinstance(v, float) and math.isnan(v) for s in table.values() for v in s.values())
    assert "nan" not in format_table(table).lower()
    assert policy_table(db, []) == {}
    assert format_table({}).splitlines()[0] == "no labelled results in the ledger for these streams"


def test_trends_run_batch_by_batch_and_end_where_ledger_savings_is(db: PolicyStore) -> None:
    db.register_backends([MONO])
    assert ledger_streams(db) == ["s1"]
    trends = {t.policy: t for t in stream_trends(db, "s1")}
    assert sorted(trends) == ["cheapest", "learned"]
    learned = trends["learned"]
    assert [p.batch for p in learned.points] == ["b1", "b2"]
    b1, b2 = learned.points
    assert (b1.items, b1.labelled, b1.items_run, b1.flops) == (4, 4, 3, 500.0)
    assert b1.accuracy == 0.5 and b1.flops_per_item == pytest.approx(500 / 3)
    assert b1.savings == pytest.approx(1 - 500 / 3000)
    assert b2.accuracy == 1.0 and b2.accuracy_so_far == 6 / 8
    assert b2.flops_so_far == 700.0
    _, rows = db.query("SELECT savings, accuracy, price, saved_price FROM ledger_savings "
                       "WHERE stream = 's1' AND policy = 'learned'")
    savings, accuracy, price, saved_price = rows[0]
    assert b2.savings_so_far == pytest.approx(savings)
    assert b2.accuracy_so_far == pytest.approx(accuracy)
    assert b2.price_so_far == pytest.approx(price)
    assert b2.saved_price_so_far == pytest.approx(saved_price)
    assert learned.monolithic_flops == 1000.0
    assert [t.policy for t in stream_trends(db, "s1", ["cheapest"])] == ["cheapest"]
    assert stream_trends(db, "no_such_stream") == []
