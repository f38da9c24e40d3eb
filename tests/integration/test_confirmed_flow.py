"""The ``confirmed`` policy through the real flows on the demo catalog: every "yes" confirmed on
the largest backends in the batch run, audits replayed and charged by the feedback run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.publish import StreamPlan, publish_stream
from benchmarks.queries import QUERIES
from storage import batches, layout
from storage.url import open_store

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("FMP_CATALOG", raising=False)  # the demo catalog
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    return {"storage_url": str(tmp_path / "objects"), "db_path": str(tmp_path / "fmp.duckdb")}


def test_confirmed_confirms_yes_answers_and_charges_its_audits(prefect_harness, env) -> None:
    from flows.ingest_feedback import ingest_feedback
    from flows.stream_batch import stream_batch
    from policies.audits import CONFIRM_SUFFIX
    from policy_store.store import PolicyStore

    store = open_store(env["storage_url"])
    query = QUERIES["red_circle_left_of_blue_square"]
    ids = publish_stream(store, "c1", query, StreamPlan(n_batches=2, batch_size=8, positive_rate=0.5))
    for batch in ids:
        summary = stream_batch(stream="c1", batch=batch, policy="confirmed", **env)
        assert summary.failed == 0
        (fb,) = ingest_feedback(stream="c1", batch=batch, policy="confirmed", **env)
        assert fb.new_version is not None

    got = [batches.read_results(store, "c1", "confirmed", b) for b in ids]
    rows = [r for g in got if g is not None for r in g[1]]
    assert len(rows) == sum(len(g[1]) for g in got if g is not None) and None not in got
    confirmed = [r for r in rows if any(d.call_site.endswith(CONFIRM_SUFFIX) for d in r.decisions)]
    assert confirmed, "no item was answered yes: nothing was confirmed"
    # a final "yes" only comes from the confirmation, which ran every call site on its largest
    assert all(r in confirmed for r in rows if r.answer is True)
    for r in confirmed:  # the demo ladders end on the "-l" models
        assert all(d.backend.endswith("-l") for d in r.decisions if d.call_site.endswith(CONFIRM_SUFFIX))

    db = PolicyStore(env["db_path"])
    _, versions = db.query("SELECT version, learner, config_json, note FROM policy_versions "
                           "WHERE stream = 'c1' AND policy = 'confirmed' ORDER BY version")
    assert [(v, learner) for v, learner, _, _ in versions] == [(1, "confirmed"), (2, "confirmed")]
    pins = [json.loads(c)["pins"] for _, _, c, _ in versions]
    assert set(pins[0]) == set(pins[1]) and pins[0]  # same call sites; the pins may move or stay
    assert all("audited from" in note for *_, note in versions)

    # the confirmation's and the audits' calls are the item's decisions in the ledger
    _, kinds = db.query(
        "SELECT CASE WHEN call_site LIKE '%+confirm' THEN 'confirm' "
        "WHEN call_site LIKE '%+audit[%' THEN 'audit' ELSE 'own' END AS kind, "
        "COUNT(*), SUM(flops) FROM cost_ledger WHERE stream = 'c1' GROUP BY ALL")
    by_kind = {k: (n, f) for k, n, f in kinds}
    assert by_kind["confirm"][0] == sum(
        sum(d.call_site.endswith(CONFIRM_SUFFIX) for d in r.decisions) for r in confirmed)
    assert by_kind["audit"][0] > 0 and by_kind["audit"][1] > 0
    # every decision row is in the batch's cost and the savings
    _, [(ledger_flops,)] = db.query("SELECT SUM(flops) FROM ledger_by_batch WHERE stream = 'c1'")
    assert ledger_flops == pytest.approx(sum(f for _, f in by_kind.values()))
    _, [(saved_flops,)] = db.query("SELECT flops FROM ledger_savings WHERE stream = 'c1'")
    assert saved_flops == pytest.approx(ledger_flops)
    _, dupes = db.query("SELECT batch, item_id, call_site, COUNT(*) FROM decisions "
                        "GROUP BY ALL HAVING COUNT(*) > 1")
    assert dupes == []

    # every audit call charged is kept in the store for later feedback runs, once
    kept = [json.loads(line) for key in store.list(layout.audit_calls_prefix("c1", "confirmed"))
            for line in store.get(key).splitlines()[1:]]
    _, [(audit_calls,)] = db.query("SELECT SUM(calls) FROM decisions WHERE call_site LIKE '%+audit[%'")
    assert sum(len(block["calls"]) for block in kept) == audit_calls

    # feedback again: nothing pending, the audits are not charged twice
    assert ingest_feedback(stream="c1", batch=None, policy="confirmed", **env) == []
    _, [(again,)] = db.query("SELECT SUM(flops) FROM decisions WHERE stream = 'c1'")
    assert again == pytest.approx(ledger_flops)
