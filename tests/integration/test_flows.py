"""stream_batch and ingest_feedback under a real (ephemeral) Prefect server, local and S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.scenes import encode_png
from storage import batches
from storage.base import ObjectStore
from storage.layout import manifest_key
from storage.records import Label, ManifestItem, StreamInfo
from storage.url import open_store

pytestmark = pytest.mark.integration

CATALOG = Path(__file__).parent / "fake_catalog.yaml"
PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    return verify_property(image, "circle", "red")
'''
MONO = 'def execute_command(image):\n    return query(image, "Is there a red circle?") == "yes"\n'


def _publish(store: ObjectStore, stream: str, batch: str, n: int = 6) -> None:
    batches.write_stream_info(store, StreamInfo(
        stream=stream, query_id="red_circle", question="Is there a red circle?", answer_type="bool",
        program=PROGRAM, monolithic_program=MONO))
    rng = np.random.default_rng(0)
    items = [(ManifestItem(item_id=f"i{k}", image=f"images/i{k}.png"),
              encode_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))) for k in range(n)]
    items.append((ManifestItem(item_id="corrupt", image="images/corrupt.png"), b"\x89PNG broken"))
    batches.write_batch(store, stream, batch, items)
    # a manifest line that fails validation, appended after the good ones
    key = manifest_key(stream, batch)
    store.put(key, store.get(key) + b'{"item_id": "bad id!", "image": "images/x.png"}\n')
    labels = [Label(item_id=f"i{k}", answer=k % 2 == 0) for k in range(n)]
    batches.write_labels(store, stream, batch, [*labels, Label(item_id="ghost", answer=True)])


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("FMP_CATALOG", str(CATALOG))
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    return {"storage_url": str(tmp_path / "objects"), "db_path": str(tmp_path / "fmp.duckdb")}


def _ledger_counts(db_path: str) -> tuple[int, int, int]:
    from policy_store.store import PolicyStore

    _, rows = PolicyStore(db_path).query(
        "SELECT (SELECT COUNT(*) FROM cost_ledger), (SELECT COUNT(*) FROM results), "
        "(SELECT COUNT(*) FROM policy_versions)")
    return rows[0]


def _run(env: dict[str, str], policy: str = "learned"):
    from flows.ingest_feedback import ingest_feedback
    from flows.stream_batch import stream_batch

    summary = stream_batch(stream="s1", batch=None, policy=policy, **env)
    feedback = ingest_feedback(stream="s1", batch=None, policy=policy, **env)
    return summary, feedback


def test_batch_then_feedback_writes_results_ledger_and_a_new_version(prefect_harness, env,
                                                                    monkeypatch) -> None:
    import prefect.results

    # fmp's flows persist no result and name their (never written) result storage, so the
    # engine never asks the server for its default result storage block (a request each)
    asked: list[str] = []
    monkeypatch.setattr(prefect.results, "_read_server_default_result_storage_block_id",
                        lambda: asked.append("sync"))
    monkeypatch.setattr(prefect.results, "_aread_server_default_result_storage_block_id",
                        lambda: asked.append("async"))
    _publish(open_store(env["storage_url"]), "s1", "b0001")
    summary, feedback = _run(env)
    assert asked == []
    assert (summary.batch, summary.items, summary.failed, summary.policy_version) == ("b0001", 8, 2, 0)
    assert any("item corrupt" in e and "s1/b0001" in e for e in summary.errors)
    assert any("line 8" in e for e in summary.errors)
    (fb,) = feedback
    assert (fb.items, fb.labelled, fb.new_version) == (8, 6, 1)
    assert any("unknown item 'ghost'" in e for e in fb.errors)
    # six good items × two executed call sites; failed items have no decisions
    assert _ledger_counts(env["db_path"]) == (12, 8, 1)


def test_rerunning_a_batch_and_its_feedback_never_duplicates_ledger_rows(prefect_harness, env) -> None:
    from flows.ingest_feedback import ingest_feedback
    from flows.stream_batch import stream_batch

    _publish(open_store(env["storage_url"]), "s1", "b0001")
    _run(env)
    before = _ledger_counts(env["db_path"])
    stream_batch(stream="s1", batch="b0001", policy="learned", **env)
    (again,) = ingest_feedback(stream="s1", batch="b0001", policy="learned", **env)
    assert again.new_version is None  # already learned from this batch
    assert _ledger_counts(env["db_path"]) == before
    assert stream_batch(stream="s1", batch=None, policy="learned", **env) is None


def test_late_and_corrected_labels_reach_the_ledger_and_the_learner_once(prefect_harness, env) -> None:
    from flows.ingest_feedback import ingest_feedback

    store = open_store(env["storage_url"])
    _publish(store, "s1", "b0001")
    _run(env)
    late = [Label(item_id=f"i{k}", answer=k % 2 == 0) for k in range(6) if k != 1]
    late += [Label(item_id="i1", answer="True"), Label(item_id="corrupt", answer=False),
             Label(item_id="ghost", answer=True)]
    batches.write_labels(store, "s1", "b0001", late)  # i1 corrected (as text), corrupt late
    (fb,) = ingest_feedback(stream="s1", batch=None, policy="learned", **env)  # the default path
    assert (fb.labelled, fb.learned, fb.trained, fb.new_labels, fb.corrected) == (7, 7, 2, 1, 1)
    assert (fb.normalised, fb.rejected_lines, fb.new_version) == (1, [8], 2)
    from policy_store.store import PolicyStore

    db = PolicyStore(env["db_path"])
    assert db.query("SELECT DISTINCT label FROM cost_ledger WHERE item_id = 'i1'")[1] == [("yes",)]
    before = _ledger_counts(env["db_path"])
    assert ingest_feedback(stream="s1", batch=None, policy="learned", **env) == []
    assert _ledger_counts(env["db_path"]) == before == (12, 8, 2)
    assert db.query("SELECT labelled, learned, unlearned FROM feedback_by_batch")[1] == [(7, 7, 0)]


def test_monolithic_policy_runs_its_one_call_program(prefect_harness, env) -> None:
    _publish(open_store(env["storage_url"]), "s1", "b0001")
    _run(env, policy="monolithic")
    from policy_store.store import PolicyStore

    _, rows = PolicyStore(env["db_path"]).query(
        "SELECT backend, COUNT(*), SUM(flops) FROM cost_ledger WHERE policy = 'monolithic' GROUP BY 1")
    assert rows == [("mono", 6, 300000.0)]


def test_task_runs_are_named_by_call_site_and_backend(prefect_harness, env) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    _publish(open_store(env["storage_url"]), "s1", "b0001")
    _run(env, policy="largest")
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=["stream_batch/s1/b0001"])))  # renamed from .../next
        names = {t.name for r in runs for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [r.id]}))}
    assert {"exists@2:11[det-big]", "verify_property@4:11[attr-big]"} <= names


def test_the_same_flows_run_against_s3(prefect_harness, env, s3_store) -> None:
    env = {**env, "storage_url": s3_store.url}
    _publish(s3_store, "s1", "b0001")
    summary, (fb,) = _run(env)
    assert (summary.items, summary.failed, fb.labelled, fb.new_version) == (8, 2, 6, 1)
    assert batches.list_results(s3_store, "s1", "learned") == ["b0001"]


def test_the_default_policy_runs_the_recommended_learner_for_the_streams_answers(prefect_harness, env) -> None:
    """``fmp`` (the default): ``confirmed`` on a yes/no stream, the call-site cascade on text."""
    from flows.ingest_feedback import ingest_feedback
    from flows.stream_batch import stream_batch
    from policy_store.store import PolicyStore

    store = open_store(env["storage_url"])
    _publish(store, "yn", "b0001")
    text = 'def execute_command(image):\n    return query(image, "What colour is the circle?")\n'
    batches.write_stream_info(store, StreamInfo(
        stream="txt", query_id="circle_colour", question="What colour is the circle?", answer_type="str",
        program=text, monolithic_program=text))
    rng = np.random.default_rng(1)
    batches.write_batch(store, "txt", "b0001", [
        (ManifestItem(item_id=f"t{k}", image=f"images/t{k}.png"),
         encode_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))) for k in range(4)])
    batches.write_labels(store, "txt", "b0001", [Label(item_id=f"t{k}", answer="red") for k in range(4)])
    for stream in ("yn", "txt"):
        assert stream_batch(stream=stream, **env) is not None
        (fb,) = ingest_feedback(stream=stream, **env)
        assert fb.new_version == 1
    _, rows = PolicyStore(env["db_path"]).query(
        "SELECT stream, policy, learner FROM policy_versions ORDER BY stream")
    assert rows == [("txt", "fmp", "cascade"), ("yn", "fmp", "confirmed")]


def test_a_batch_in_shards_gives_the_one_shard_answers_and_its_task_runs_belong_to_the_flow_run(
        prefect_harness, env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """100 items run as 3 shards (20/40/40 with the corrupt item and the bad manifest line):
    every task run is recorded under the batch's flow run, and rows, answers and decisions
    are those of the same batch run as one shard, in manifest order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.stream_batch import stream_batch

    one = {**env, "storage_url": str(tmp_path / "one"), "db_path": str(tmp_path / "one.duckdb")}
    for where in (env, one):
        _publish(open_store(where["storage_url"]), "shards", "b0001", n=99)
    stream_batch(stream="shards", batch="b0001", policy="random", **env)
    monkeypatch.setenv("FMP_BATCH_SHARDS", "1")
    stream_batch(stream="shards", batch="b0001", policy="random", **one)

    def rows(where: dict[str, str]) -> list[tuple[Any, ...]]:
        loaded = batches.read_results(open_store(where["storage_url"]), "shards", "random", "b0001")
        assert loaded is not None
        return [(r.item_id, r.status, r.answer, r.error, r.features,
                 [d.model_copy(update={"wall_ms": 0.0}) for d in r.decisions]) for r in loaded[1]]

    sharded = rows(env)
    assert sharded == rows(one)
    assert [r[0] for r in sharded] == [f"i{k}" for k in range(99)] + ["manifest-line-101", "corrupt"]
    assert len({tuple(d.backend for d in r[5]) for r in sharded[:99]}) > 1  # random routes differ
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=["stream_batch/shards/b0001"])))
        task_runs = [t for r in runs for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [r.id]}))]
    assert len(runs) == 2 and task_runs
    assert all(t.flow_run_id in {r.id for r in runs} for t in task_runs)
