"""Decisions that learning ran itself (the confirmed policy's audits): saved with the version,
summed per (item, call site), kept when the batch's results are ingested again."""

from __future__ import annotations

import pytest

from policy_store.errors import AlreadyLearnedError
from policy_store.records import IngestBatch
from policy_store.store import PolicyStore
from storage.records import DecisionRecord, ResultRow


@pytest.fixture
def store(store_url: str) -> PolicyStore:
    s = PolicyStore(store_url, lock_timeout_s=5.0)
    s.init()
    return s


def _d(site: str, backend: str, flops: float) -> DecisionRecord:
    return DecisionRecord(call_site=site, function="exists", backend=backend, propensity=1.0, calls=1,
                          flops=flops, params=10.0, wall_ms=2.0, price=0.01)


def _batch(labels: dict[str, bool | str]) -> IngestBatch:
    rows = [ResultRow(item_id=i, status="ok", answer=True, error=None, features=[],
                      decisions=[_d("c1", "small", 100.0), _d("c1+confirm", "large", 1000.0)])
            for i in ("a", "b")]
    return IngestBatch("s1", "confirmed", "b1", 0, "prog", rows, labels)


def _flops(store: PolicyStore) -> dict[tuple[str, str], tuple[int, float]]:
    _, rows = store.query("SELECT item_id, call_site, calls, flops FROM cost_ledger")
    return {(i, s): (c, f) for i, s, c, f in rows}


def test_audit_charges_are_summed_and_survive_a_reingest(store: PolicyStore) -> None:
    assert store.ingest_batch(_batch({"a": True})).results == "new"
    audit = "c1+audit[mid]"
    v1 = store.save_learned_version("s1", "confirmed", "confirmed", "{}", b"", None, "n", "b1",
                                    [("a", 1)], charges=[("b1", "a", _d(audit, "mid", 40.0))])
    store.save_learned_version("s1", "confirmed", "confirmed", "{}", b"", v1, "n", "b1", [("b", 1)],
                               charges=[("b1", "a", _d(audit, "mid", 2.0)),
                                        ("b1", "b", _d(audit, "mid", 5.0))])
    with pytest.raises(AlreadyLearnedError):  # nothing is charged by a failed save
        store.save_learned_version("s1", "confirmed", "confirmed", "{}", b"", v1, "n", "b1",
                                   [("b", 1)], charges=[("b1", "b", _d(audit, "mid", 5.0))])
    got = _flops(store)
    assert got[("a", audit)] == (2, 42.0) and got[("b", audit)] == (1, 5.0)
    assert got[("a", "c1+confirm")] == (1, 1000.0)
    # a late label re-ingests the batch: its results are unchanged, the charges stay
    assert store.ingest_batch(_batch({"a": True, "b": False})).results == "unchanged"
    assert _flops(store) == got
    _, [(flops,)] = store.query("SELECT flops FROM ledger_by_batch")
    assert flops == pytest.approx(2 * 1100.0 + 47.0)


def test_learning_steps_name_each_saved_version_by_parent_batch_and_label_versions(store: PolicyStore) -> None:
    from policy_store.records import LearningStep

    store.ingest_batch(_batch({"a": True, "b": False}))
    assert store.learning_steps("s1", "confirmed") == set()
    v1 = store.save_learned_version("s1", "confirmed", "confirmed", "{}", b"", None, "n", "b1", [("a", 1)])
    v2 = store.save_learned_version("s1", "confirmed", "confirmed", "{}", b"", v1, "n", "b1",
                                    [("b", 1), ("a", 2)])
    store.rollback("s1", "confirmed", v1)  # learns no label: not a step
    with pytest.raises(AlreadyLearnedError):  # a failed save is no step either
        store.save_learned_version("s1", "confirmed", "confirmed", "{}", b"", v2, "n", "b1", [("b", 1)])
    assert store.learning_steps("s1", "confirmed") == {
        LearningStep(None, "b1", frozenset({("a", 1)})),
        LearningStep(v1, "b1", frozenset({("b", 1), ("a", 2)}))}
    assert store.learning_steps("s1", "learned") == set()


def _charge_row_by_row(conn: object, stream: str, policy: str, version: int,
                       charges: list[tuple[str, str, DecisionRecord]]) -> None:
    """The reference: a select, then an insert or an update, per charge."""
    import sqlalchemy as sa

    from policy_store import schema

    d, charged = schema.decisions, ("calls", "flops", "params", "wall_ms", "price")
    for batch, item, rec in charges:
        key = (d.c.stream == stream, d.c.policy == policy, d.c.batch == batch, d.c.item_id == item,
               d.c.call_site == rec.call_site)
        old = conn.execute(sa.select(*(d.c[c] for c in charged)).where(*key)).first()  # type: ignore[attr-defined]
        if old is None:
            conn.execute(sa.insert(d), [{  # type: ignore[attr-defined]
                "stream": stream, "policy": policy, "batch": batch, "item_id": item,
                "call_site": rec.call_site, "function": rec.function, "backend": rec.backend,
                "propensity": float(rec.propensity), "policy_version": version,
                "calls": int(rec.calls), **{c: float(getattr(rec, c)) for c in charged[1:]}}])
        else:
            conn.execute(sa.update(d).where(*key).values(  # type: ignore[attr-defined]
                policy_version=version, calls=int(old.calls) + int(rec.calls),
                **{c: float(getattr(old, c)) + float(getattr(rec, c)) for c in charged[1:]}))


def test_charges_in_one_insert_and_one_update_match_one_at_a_time(store_url: str) -> None:
    """Repeated keys, rows already there, two batches, other streams' rows untouched: the
    ledger is the same, float for float, as charging one decision at a time."""
    import random

    import sqlalchemy as sa

    from policy_store import schema, versions

    rng = random.Random(3)
    base = [(b, i, DecisionRecord(call_site=s, function="exists", backend="small", propensity=0.5,
                                  calls=1, flops=rng.random() * 1e9, params=rng.random() * 1e6,
                                  wall_ms=rng.random(), price=rng.random() * 1e-3))
            for b in ("b1", "b2") for i in ("a", "b", "c") for s in ("c1", "c2")]
    charges = [(rng.choice(["b1", "b2"]), rng.choice("abcd"),
                DecisionRecord(call_site=rng.choice(["c1", "c2", "c1+audit[mid]"]), function="exists",
                               backend="mid", propensity=1.0, calls=rng.randint(1, 3),
                               flops=rng.random() * 1e8, params=rng.random() * 1e5,
                               wall_ms=rng.random(), price=rng.random() * 1e-4))
               for _ in range(60)]
    ledgers = []
    for charge in (versions._charge, _charge_row_by_row):
        s = PolicyStore(store_url, lock_timeout_s=5.0)
        s.init()
        s._run(lambda conn: conn.execute(sa.delete(schema.decisions)))  # the other pass's rows
        for st in ("s1", "other"):
            s._run(lambda conn: versions._charge(conn, st, "p", 1, base))  # noqa: B023
        s._run(lambda conn: charge(conn, "s1", "p", 7, charges))  # noqa: B023
        ledgers.append(s.query("SELECT stream, batch, item_id, call_site, function, backend, "
                               "propensity, calls, flops, params, wall_ms, price, policy_version "
                               "FROM decisions ORDER BY ALL")[1])
    assert ledgers[0] == ledgers[1]
    assert len(ledgers[0]) > len(base) * 2  # some charges made new rows
    assert sum(r[12] == 7 for r in ledgers[0]) > 0 and sum(r[0] == "other" and r[12] == 1
                                                        for r in ledgers[0]) == len(base)
