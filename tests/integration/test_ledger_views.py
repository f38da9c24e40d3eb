"""The ledger views after real flow runs: savings against the monolith, types, artifacts, tags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.url import open_store

from test_flows import CATALOG, _publish

pytestmark = pytest.mark.integration

MONO_FLOPS = 50000.0  # flops_per_call of the fake catalog's baseline_only `mono`


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[dict[str, str]]:
    """Two batches of s1 through learned and monolithic, each followed by its feedback."""
    from flows.ingest_feedback import ingest_feedback
    from flows.stream_batch import stream_batch

    root = tmp_path_factory.mktemp("ledger")
    env = {"storage_url": str(root / "objects"), "db_path": str(root / "fmp.duckdb")}
    mp = pytest.MonkeyPatch()
    mp.setenv("FMP_CATALOG", str(CATALOG))
    mp.setenv("FMP_HOME", str(root / "home"))
    store = open_store(env["storage_url"])
    _publish(store, "s1", "b0001")
    _publish(store, "s1", "b0002")
    for policy in ("learned", "monolithic"):
        for batch in ("b0001", "b0002"):
            stream_batch(stream="s1", batch=batch, policy=policy, **env)
        ingest_feedback(stream="s1", policy=policy, **env)
    yield env
    mp.undo()


def _query(env: dict[str, str], sql: str) -> list[dict]:
    from policy_store.store import PolicyStore

    columns, rows = PolicyStore(env["db_path"]).query(sql)
    return [dict(zip(columns, r, strict=True)) for r in rows]


def test_the_catalog_costs_and_the_monolith_are_registered(ledger: dict[str, str]) -> None:
    rows = _query(ledger, "SELECT name, kind, flops FROM backends ORDER BY name")
    assert [(r["name"], r["kind"], r["flops"]) for r in rows] == [
        ("attr-big", "fake", 2000.0), ("attr-cheap", "fake", 20.0), ("det-big", "fake", 1000.0),
        ("det-cheap", "fake", 10.0), ("mono", "monolithic", MONO_FLOPS)]


def test_savings_are_items_run_times_the_monolith_minus_actual_flops(ledger: dict[str, str]) -> None:
    days = {r["policy"]: r for r in _query(ledger, "SELECT * FROM ledger_by_day")}
    assert set(days) == {"learned", "monolithic"}
    for row in days.values():
        # 2 batches × (6 good + 1 corrupt + 1 bad manifest line); the program ran on 12
        assert (row["batches"], row["items"], row["failed"], row["labelled"], row["items_run"]) == \
            (2, 16, 4, 12, 12)
        assert row["monolithic_flops"] == 12 * MONO_FLOPS
        assert row["saved_flops"] == row["monolithic_flops"] - row["flops"]
        assert row["savings"] == pytest.approx(1 - row["flops"] / row["monolithic_flops"])
    assert (days["monolithic"]["flops"], days["monolithic"]["saved_flops"], days["monolithic"]["savings"]) \
        == (12 * MONO_FLOPS, 0.0, 0.0)
    learned = days["learned"]
    # every item calls exists and verify_property once, on the cheap or the big fake backend
    assert 12 * (10 + 20) <= learned["flops"] <= 12 * (1000 + 2000)
    flops = _query(ledger, "SELECT SUM(flops) AS f FROM cost_ledger WHERE policy = 'learned'")
    assert learned["flops"] == flops[0]["f"]


def test_ledger_savings_sums_the_days(ledger: dict[str, str]) -> None:
    total = _query(ledger, "SELECT * FROM ledger_savings WHERE policy = 'learned'")[0]
    day = _query(ledger, "SELECT * FROM ledger_by_day WHERE policy = 'learned'")[0]
    for column in ("items", "items_run", "flops", "monolithic_flops", "saved_flops", "savings"):
        assert total[column] == day[column]
    assert total["accuracy"] == day["accuracy"] == day["correct"] / day["labelled"]


def test_per_backend_and_per_call_site_views_add_up_to_the_ledger(ledger: dict[str, str]) -> None:
    by_backend = _query(ledger, "SELECT backend, SUM(flops) AS f, SUM(calls) AS c FROM "
                                "ledger_by_day_backend WHERE policy = 'learned' GROUP BY 1")
    by_site = _query(ledger, "SELECT call_site, SUM(items) AS n FROM ledger_by_call_site "
                             "WHERE policy = 'learned' GROUP BY 1 ORDER BY 1")
    truth = _query(ledger, "SELECT backend, SUM(flops) AS f, SUM(calls) AS c FROM cost_ledger "
                           "WHERE policy = 'learned' GROUP BY 1")
    assert sorted(map(tuple, (r.values() for r in by_backend))) == \
        sorted(map(tuple, (r.values() for r in truth)))
    assert [(r["call_site"], r["n"]) for r in by_site] == [("exists@2:11", 12),
                                                          ("verify_property@4:11", 12)]


def test_policy_history_names_the_batch_each_version_learned(ledger: dict[str, str]) -> None:
    rows = _query(ledger, "SELECT version, parent, learned_batch FROM policy_history "
                          "WHERE policy = 'learned' ORDER BY version")
    assert [tuple(r.values()) for r in rows] == [(1, None, "b0001"), (2, 1, "b0002")]


def test_every_money_and_flops_column_is_double(ledger: dict[str, str]) -> None:
    rows = _query(ledger, "SELECT table_name, column_name, data_type FROM information_schema.columns "
                          "WHERE table_name LIKE 'ledger%' OR table_name = 'cost_ledger'")
    money = [r for r in rows if "price" in r["column_name"] or "flops" in r["column_name"]]
    assert len(money) >= 20
    assert {r["data_type"] for r in money} == {"DOUBLE"}, money


def test_runs_carry_tags_and_publish_artifacts_with_stable_keys(ledger: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter

    with get_client(sync_client=True) as client:
        # the session's server also holds other modules' runs of a stream "s1": this module's
        # runs are those on its own database, and its artifacts those of its runs
        ours = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"like_": "/s1/"}))
                if r.parameters.get("db_path") == ledger["db_path"]]
        ids = {r.id for r in ours}

        def artifacts(key: str) -> list[Any]:
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return [a for a in found if a.flow_run_id in ids]

        batch, feedback, trend = (artifacts(f"{kind}-s1-learned") for kind in ("batch", "feedback", "trend"))
        runs = [r for r in ours if r.name == "stream_batch/s1/b0002"]
        renamed = [r for r in ours if r.name.startswith("ingest_feedback/s1/")]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [runs[0].id]}))
    assert len(ours) >= 4 and runs
    assert len(batch) >= 2 and len(feedback) >= 2  # one per batch: the key keeps the history
    rows = batch[0].data if isinstance(batch[0].data, list) else __import__("json").loads(batch[0].data)
    assert {r["call_site"] for r in rows} == {"exists@2:11", "verify_property@4:11"}
    assert "savings vs monolithic so far" in str(feedback[0].data)
    # one per feedback run (this module's: one for learned): the chart so far, as an SVG image
    assert trend and "(data:image/svg+xml;base64," in str(trend[0].data)
    assert any("through b0002" in str(t.description) for t in trend)
    # a feedback run for every pending batch is named for the batches it ingested (one per policy)
    assert [r.name for r in renamed].count("ingest_feedback/s1/b0001+b0002") >= 2
    assert {"fmp", "stream:s1", "query:red_circle"} <= set(runs[0].tags)
    # task runs are found through their tagged flow run; tagging them too costs a server
    # round trip per task run (tag concurrency slots)
    assert tasks and all(t.flow_run_id == runs[0].id for t in tasks)
    assert Path(ledger["db_path"]).exists()


def test_evaluate_compares_the_policies_in_the_ledger(ledger: dict[str, str]) -> None:
    from flows.evaluate import evaluate

    table = evaluate(db_path=ledger["db_path"])
    assert sorted(table) == ["learned", "monolithic"]
    assert {p: (s["items"], s["answered"]) for p, s in table.items()} == {
        "learned": (12, 12), "monolithic": (12, 12)}
    assert table["monolithic"]["cost"] == 12 * MONO_FLOPS
    assert table["monolithic"]["savings_vs_monolithic"] == 0.0
    learned = table["learned"]["savings_vs_monolithic"]
    assert learned is not None and 0.9 < learned < 1.0
    savings = _query(ledger, "SELECT savings FROM ledger_savings WHERE policy = 'learned'")[0]["savings"]
    assert table["learned"]["savings_vs_monolithic"] == pytest.approx(savings)
    # one policy alone: the savings still come from the registered monolith, never NaN
    alone = evaluate(db_path=ledger["db_path"], streams=["s1"])
    assert all(s["savings_vs_monolithic"] is not None for s in alone.values())
    assert (Path(ledger["db_path"]).parent / "home" / "report.json").exists()
