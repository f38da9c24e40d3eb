"""PolicyStore: schema, programs, backends, versions, ingest and ledger views."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from modules.program import program_id_of
from policy_store import (
    AlreadyLearnedError,
    BackendCost,
    CallSiteInfo,
    IngestBatch,
    IngestError,
    PolicyStore,
    PolicyStoreError,
    QueryError,
    UnknownVersionError,
)
from storage.records import DecisionRecord, ResultRow

TABLES = {"programs", "call_sites", "backends", "policy_versions", "results", "decisions",
          "labels", "label_errors", "learned_batches"}
VIEWS = {"cost_ledger", "ledger_by_batch", "ledger_by_backend"}


@pytest.fixture
def store(store_url: str) -> PolicyStore:
    """A fresh store on each backend (conftest's ``store_url``: DuckDB file, DuckLake)."""
    s = PolicyStore(store_url, lock_timeout_s=5.0)
    s.init()
    return s


def _decision(site: str, backend: str, flops: float, calls: int = 1) -> DecisionRecord:
    return DecisionRecord(call_site=site, function="exists", backend=backend, propensity=0.5,
                          calls=calls, flops=flops, params=10.0, wall_ms=2.0, price=0.01)


def _row(item_id: str, status: str, answer: bool | str | None, error: str | None,
         decisions: list[DecisionRecord]) -> ResultRow:
    return ResultRow(item_id=item_id, status=status, answer=answer, error=error, features=[],
                     decisions=decisions)


def _batch(batch: str = "b1", rows: list[ResultRow] | None = None) -> IngestBatch:
    rows = rows if rows is not None else [
        _row("a", "ok", True, None, [_decision("c1", "small", 100.0),
                                     _decision("c2", "large", 1000.0, calls=2)]),
        _row("b", "ok", "No.", None, [_decision("c1", "small", 100.0)]),
        _row("c", "ok", True, None, [_decision("c1", "large", 500.0)]),
        _row("d", "failed", None, "timeout", []),  # failed before any call
    ]
    labels: dict[str, str | bool] = {"a": "yes", "b": True, "d": False, "zz": True, "aa": "no"}
    return IngestBatch("s1", "thompson", batch, 1, "prog", rows, labels)


def _count(store: PolicyStore, table: str) -> int:
    return store.query(f"SELECT COUNT(*) FROM {table}")[1][0][0]


def test_init_is_idempotent_and_creates_everything(store: PolicyStore) -> None:
    store.init()
    names = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables")[1]}
    assert TABLES | VIEWS <= names


def test_cost_columns_are_double(store: PolicyStore) -> None:
    _, rows = store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE column_name IN ('flops', 'params', 'wall_ms', 'price', 'propensity') "
        "AND table_name IN ('backends', 'decisions')")
    assert len(rows) == 9
    assert {r[2] for r in rows} == {"DOUBLE"}


def test_register_program_is_idempotent(store: PolicyStore) -> None:
    src = "a = exists(image, 'cat')\n"
    sites = [CallSiteInfo("c2", "verify_property", 3, 1), CallSiteInfo("c1", "exists", 1, 4)]
    pid = store.register_program("q1", src, sites)
    assert pid == hashlib.sha256(src.encode()).hexdigest()[:16] == program_id_of(src)  # the one program id
    assert store.register_program("q1", src, sites) == pid
    assert _count(store, "programs") == 1
    assert [c.call_site for c in store.call_sites(pid)] == ["c1", "c2"]


def test_register_backends_upserts(store: PolicyStore) -> None:
    store.register_backends([BackendCost("small", "fake", ("exists", "count"), 1e9, 1e6, 2.0, 0.0),
                             BackendCost("large", "fake", ("exists",), 1e11, 1e8, 20.0, 0.5)])
    store.register_backends([BackendCost("small", "fake", ("exists",), 2e9, 1e6, 3.0, 0.0)])
    got = {b.name: b for b in store.backends()}
    assert sorted(got) == ["large", "small"]
    assert got["small"] == BackendCost("small", "fake", ("exists",), 2e9, 1e6, 3.0, 0.0)


def test_versions_and_rollback(store: PolicyStore) -> None:
    assert store.latest_version("s1", "p") is None
    assert store.save_version("s1", "p", "thompson", "{}", b"v1", None, "train") == 1
    assert store.save_version("s1", "p", "thompson", "{}", b"v2", 1) == 2
    assert store.rollback("s1", "p", 1) == 3
    v3 = store.latest_version("s1", "p")
    assert v3 is not None
    assert (v3.version, v3.params, v3.parent, v3.note) == (3, b"v1", 1, "rollback to v1")
    assert [v.version for v in store.list_versions("s1", "p")] == [1, 2, 3]
    assert store.get_version("s1", "p", 2).params == b"v2"
    with pytest.raises(UnknownVersionError, match="known versions: v1, v2, v3"):
        store.get_version("s1", "p", 7)
    with pytest.raises(UnknownVersionError, match="no version 9"):
        store.save_version("s1", "p", "thompson", "{}", b"", 9)


def test_learned_batches_are_saved_with_the_version(store: PolicyStore) -> None:
    assert not store.learned("s1", "p", "b1")
    store.save_version("s1", "p", "thompson", "{}", b"x", None, learned_batch="b1")
    assert store.learned("s1", "p", "b1")
    with pytest.raises(AlreadyLearnedError, match="already learned by v1"):
        store.save_version("s1", "p", "thompson", "{}", b"y", 1, learned_batch="b1")
    assert [v.version for v in store.list_versions("s1", "p")] == [1]  # rolled back whole
    store.mark_learned("s1", "p", "b2", 1)
    store.mark_learned("s1", "p", "b2", 1)
    assert _count(store, "learned_batches") == 2


def test_ingest_twice_does_not_duplicate(store: PolicyStore) -> None:
    first = store.ingest_batch(_batch())
    second = store.ingest_batch(_batch())
    assert (first.results, first.new_labels, second.results, second.new_labels) == ("new", 3, "unchanged", 0)
    assert replace(second, results="new", new_labels=3) == first
    assert (first.items, first.failed, first.labelled, first.decisions) == (4, 1, 3, 4)
    assert first.unknown_labels == ["aa", "zz"]
    counts = {t: _count(store, t) for t in ("results", "decisions", "labels", "label_errors")}
    assert counts == {"results": 4, "decisions": 4, "labels": 3, "label_errors": 2}
    _, errs = store.query("SELECT item_id, reason FROM label_errors ORDER BY item_id")
    assert [e[0] for e in errs] == ["aa", "zz"]
    assert "no result for it in batch 'b1'" in errs[1][1]
    # A smaller re-ingest replaces the batch rather than merging with it.
    store.ingest_batch(_batch(rows=[_row("a", "ok", True, None, [])]))
    assert (_count(store, "results"), _count(store, "decisions")) == (1, 0)


def test_cost_ledger_rows_and_correctness(store: PolicyStore) -> None:
    store.ingest_batch(_batch())
    cols, rows = store.query(
        "SELECT * FROM cost_ledger ORDER BY item_id, call_site")
    assert cols == ["stream", "policy", "batch", "item_id", "call_site", "function", "backend",
                    "calls", "flops", "params", "wall_ms", "price", "propensity",
                    "policy_version", "answer", "label", "correct", "status", "ingested_at"]
    view = [(r[3], r[4], r[6], r[7], r[14], r[15], r[16]) for r in rows]
    assert view == [
        ("a", "c1", "small", 1, "yes", "yes", True),
        ("a", "c2", "large", 2, "yes", "yes", True),
        ("b", "c1", "small", 1, "no", "yes", False),
        ("c", "c1", "large", 1, "yes", None, None),  # unlabelled
    ]


def test_ledger_by_batch_and_backend(store: PolicyStore) -> None:
    store.ingest_batch(_batch())
    cols, rows = store.query("SELECT * FROM ledger_by_batch")
    assert cols == ["stream", "policy", "batch", "items", "labelled", "accuracy", "flops",
                    "params", "wall_ms", "price"]
    # d failed with no decisions yet counts as an item, labelled, and wrong: 1 of 3 right.
    assert rows == [("s1", "thompson", "b1", 4, 3, pytest.approx(1 / 3), 1700.0, 40.0, 8.0,
                     pytest.approx(0.04))]
    _, rows = store.query(
        "SELECT backend, calls, flops FROM ledger_by_backend WHERE stream = :s ORDER BY backend",
        {"s": "s1"})
    assert rows == [("large", 3, 1500.0), ("small", 2, 200.0)]


def test_ingest_rejects_malformed_batches(store: PolicyStore) -> None:
    dup = [_row("a", "ok", True, None, []), _row("a", "ok", False, None, [])]
    with pytest.raises(IngestError, match="batch 'b1': item 'a' appears twice"):
        store.ingest_batch(_batch(rows=dup))
    twice = [_row("a", "ok", True, None, [_decision("c1", "small", 1.0), _decision("c1", "small", 2.0)])]
    with pytest.raises(IngestError, match="item 'a', call site 'c1': listed twice"):
        store.ingest_batch(_batch(rows=twice))
    with pytest.raises(ValidationError, match="propensity"):  # the record itself refuses it
        DecisionRecord(call_site="c1", function="f", backend="x", propensity=0.0, calls=1, flops=1,
                       params=1, wall_ms=1, price=0)
    assert _count(store, "results") == 0


def test_query_errors_and_snapshot(store: PolicyStore, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="SQL: SELECT nope"):
        store.query("SELECT nope FROM results")
    store.ingest_batch(_batch())
    if store.lake is not None:
        with pytest.raises(PolicyStoreError, match="is not one .a DuckLake store's readers"):
            store.snapshot(tmp_path / "snap" / "copy.duckdb")
        return
    snap = store.snapshot(tmp_path / "snap" / "copy.duckdb")
    store.ingest_batch(_batch(rows=[]))
    reader = PolicyStore(snap, read_only=True)
    assert reader.query("SELECT COUNT(*) FROM results")[1] == [(4,)]
    assert _count(store, "results") == 0


def test_label_versions_grow_only_when_a_label_changes(store: PolicyStore) -> None:
    store.ingest_batch(_batch())
    assert store.unlearned_labels("s1", "thompson") == {"b1": {"a": (1, "yes"), "b": (1, "yes"),
                                                             "d": (1, "no")}}
    store.save_learned_version("s1", "thompson", "thompson", "{}", b"v1", None, "n", "b1",
                               [("a", 1), ("b", 1), ("d", 1)])
    assert store.unlearned_labels("s1", "thompson") == {}
    relabelled = replace(_batch(), labels={"a": "Yes.", "b": False, "c": "no", "d": "false"})
    summary = store.ingest_batch(relabelled)
    assert (summary.new_labels, summary.corrected) == (1, 1)  # c is new, b changed; a, d the same
    assert store.unlearned_labels("s1", "thompson", "b1") == {"b1": {"b": (2, "no"), "c": (1, "no")}}
    with pytest.raises(AlreadyLearnedError, match="label version 1 of item 'a' was already learned by v1"):
        store.save_learned_version("s1", "thompson", "thompson", "{}", b"v2", 1, "n", "b1",
                                   [("a", 1), ("c", 1)])
    assert [v.version for v in store.list_versions("s1", "thompson")] == [1]  # nothing saved
    assert store.save_learned_version("s1", "thompson", "thompson", "{}", b"v2", 1, "n", "b1",
                                      [("b", 2), ("c", 1)]) == 2
    _, rows = store.query("SELECT items, labelled, learned, unlearned, corrected FROM feedback_by_batch")
    assert rows == [(4, 4, 4, 0, 1)]
    assert _count(store, "learned_labels") == 5 and _count(store, "learned_batches") == 1


_V1_TABLES = ("programs", "call_sites", "backends", "policy_versions", "results", "decisions",
              "labels", "label_errors", "learned_batches", "synthesized_programs")


def test_a_version_1_file_is_migrated_and_its_learned_labels_are_not_learned_again(tmp_path: Path) -> None:
    from policy_store import schema

    path = tmp_path / "v1.duckdb"
    old = PolicyStore(path)
    with old.engine.begin() as conn:  # a file as the store wrote it before schema versions
        schema.metadata.create_all(conn, tables=[schema.metadata.tables[t] for t in _V1_TABLES])
    old.engine.dispose()
    old = PolicyStore(path)  # rows as version 1 wrote them (its own ingest_batch is gone)
    now = "TIMESTAMP '2025-01-01 00:00:00'"
    for sql in (
        "INSERT INTO results VALUES " + ", ".join(
            f"('s1', 'thompson', 'b1', '{i}', 'ok', 'yes', NULL, 0, 'prog', {now})" for i in "abc"),
        "INSERT INTO labels VALUES ('s1', 'b1', 'a', 'yes'), ('s1', 'b1', 'b', 'no')",
        f"INSERT INTO policy_versions VALUES ('s1', 'thompson', 1, 'thompson', '{{}}', 'x', NULL, {now}, 'n')",
        f"INSERT INTO learned_batches VALUES ('s1', 'thompson', 'b1', 1, {now})",
    ):
        old.query(sql)
    store = PolicyStore(path)
    store.init()
    store.init()  # idempotent
    assert store.query("SELECT version FROM schema_version")[1] == [(2,)]
    assert store.query("SELECT item_id, seq, answer FROM label_versions ORDER BY item_id")[1] == [
        ("a", 1, "yes"), ("b", 1, "no")]
    assert store.unlearned_labels("s1", "thompson") == {}  # learned by v1 before the upgrade
    _, rows = store.query("SELECT items, labelled, learned, unlearned FROM feedback_by_batch")
    assert rows == [(3, 2, 2, 0)]
    assert store.query("SELECT version, learned_batch FROM policy_history")[1] == [(1, "b1")]
    rows3 = [_row(i, "ok", True, None, []) for i in "abc"]
    store.ingest_batch(IngestBatch("s1", "thompson", "b1", 0, "prog", rows3,
                                   {"a": True, "b": True, "c": False}, answer_type="bool"))
    assert store.unlearned_labels("s1", "thompson") == {"b1": {"b": (2, "yes"), "c": (1, "no")}}


def test_a_file_from_a_newer_schema_is_refused(store: PolicyStore) -> None:
    store.query("INSERT INTO schema_version VALUES (99, TIMESTAMP '2030-01-01 00:00:00')")
    with pytest.raises(PolicyStoreError, match="schema version 99, newer than this fmp's 2"):
        store.init()
