"""Late, corrected, normalised and rejected labels, rerun batches and clock skew in feedback.

Each test drives the feedback flow's own steps (``flows._feedback``: which batches are
pending, ingest, learn) without Prefect, on a local store and the fake catalog, and counts
ledger keys and learned label versions before and after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.scenes import encode_png
from flows._batch import load_program, process_batch
from flows._feedback import FeedbackSummary, ingest_batch, pending_feedback
from flows._runtime import held_policy_store, registry_for, settings_for, store_for
from flows.artifacts import feedback_markdown
from flows.feedback_report import feedback_report
from flows.settings import Settings
from modules.tasks import local_round_runner
from policies.costs import register_costs
from policies.learning import learn
from policy_store.store import PolicyStore
from storage import batches
from storage.base import ObjectStore
from storage.layout import labels_key
from storage.records import ManifestItem, StreamInfo

CATALOG = Path(__file__).parents[2] / "integration" / "fake_catalog.yaml"
PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    return verify_property(image, "circle", "red")
'''
MONO = 'def execute_command(image):\n    return query(image, "Is there a red circle?") == "yes"\n'
POLICY = "learned"
ITEMS = [f"i{k}" for k in range(6)]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FMP_CATALOG", str(CATALOG))
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    return settings_for(str(tmp_path / "objects"), str(tmp_path / "fmp.duckdb"))


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    store = store_for(settings)
    batches.write_stream_info(store, StreamInfo(
        stream="s1", query_id="red_circle", question="Is there a red circle?", answer_type="bool",
        program=PROGRAM, monolithic_program=MONO))
    rng = np.random.default_rng(0)
    for batch in ("b0001", "b0002"):
        batches.write_batch(store, "s1", batch, [
            (ManifestItem(item_id=i, image=f"images/{i}.png"),
             encode_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))) for i in ITEMS])
    return store


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, bool | str]]]:
    """The labels the learner is trained on, one dict per learning step (the real learner runs)."""
    calls: list[dict[str, bool | str]] = []
    real = learn

    def spy(*args: Any) -> Any:
        calls.append(dict(args[-1]))
        return real(*args)

    monkeypatch.setattr("flows._feedback.learn", spy)  # the name the feedback step calls
    yield calls


def _run_batch(settings: Settings, store: ObjectStore, batch: str = "b0001") -> None:
    registry = registry_for(settings.catalog)
    process_batch(settings, store, registry, "s1", batch, POLICY, local_round_runner(registry))


def _labels(store: ObjectStore, lines: list[Any], batch: str = "b0001") -> None:
    """Write labels.jsonl: dicts become JSON lines, strings are written as they are."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    store.put(labels_key("s1", batch), text.encode())


def _feedback(settings: Settings, store: ObjectStore, batch: str | None = None
              ) -> list[tuple[FeedbackSummary, str]]:
    """What the ingest_feedback flow does: pending batches (or one), each ingested and reported."""
    registry = registry_for(settings.catalog)
    with held_policy_store(settings) as db:
        todo = [batch] if batch else pending_feedback(store, db, "s1", POLICY)
        register_costs(db, registry, load_program(batches.read_stream_info(store, "s1"), POLICY))
        out = []
        for b in todo:
            summary = ingest_batch(settings, store, registry, db, "s1", b, POLICY)
            out.append((summary, feedback_markdown(feedback_report(store, registry, db, summary))))
        return out


def _q(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    return PolicyStore(settings.database).query(sql)[1]


def _counts(settings: Settings) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) of the ledger's keyed tables: equal means nothing is doubled."""
    keyed = {
        "decisions": "stream, policy, batch, item_id, call_site",
        "results": "stream, policy, batch, item_id",
        "labels": "stream, batch, item_id",
        "learned_labels": "stream, policy, batch, item_id, seq",
        "cost_ledger": "stream, policy, batch, item_id, call_site",
    }
    return {t: _q(settings, f"SELECT COUNT(*), COUNT(DISTINCT ({k})) FROM {t}")[0] for t, k in keyed.items()}


def _state(settings: Settings, batch: str = "b0001") -> tuple[int, int, int, int]:
    """feedback_by_batch's items, labelled, learned, unlearned for the batch."""
    rows = _q(settings, "SELECT items, labelled, learned, unlearned FROM feedback_by_batch "
                        f"WHERE policy = '{POLICY}' AND batch = '{batch}'")
    return rows[0] if rows else (0, 0, 0, 0)


def test_a_batch_without_labels_is_not_learned_until_they_arrive(settings, store, trained) -> None:
    _run_batch(settings, store)
    _labels(store, [])
    ((summary, markdown),) = _feedback(settings, store)
    assert (summary.labelled, summary.learned, summary.new_version) == (0, 0, None)
    assert "No new policy version: b0001 has no labels." in markdown
    assert trained == [] and _state(settings) == (6, 0, 0, 0)
    assert _q(settings, "SELECT COUNT(*) FROM policy_versions") == [(0,)]
    assert _feedback(settings, store) == []  # nothing changed: not pending again
    _labels(store, [{"item_id": i, "answer": k % 2 == 0} for k, i in enumerate(ITEMS[:4])])
    ((late, _),) = _feedback(settings, store)  # the default (pending) path finds the late labels
    assert (late.labelled, late.learned, late.trained, late.new_labels, late.new_version) == (4, 4, 4, 4, 1)
    assert trained == [{"i0": True, "i1": False, "i2": True, "i3": False}]
    assert _state(settings) == (6, 4, 4, 0)


def test_late_labels_are_learned_once_each(settings, store, trained) -> None:
    _run_batch(settings, store)
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS[:3]])
    ((first, _),) = _feedback(settings, store)
    assert (first.labelled, first.trained, first.new_version) == (3, 3, 1)
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS[:5]])  # two late labels
    ((late, markdown),) = _feedback(settings, store)
    assert (late.labelled, late.learned, late.trained, late.new_labels, late.corrected) == (5, 5, 2, 2, 0)
    assert late.new_version == 2
    assert trained[1] == {"i3": True, "i4": True}  # only the labels v1 had not seen
    assert "| labelled items the policy has learned | 5 of 5 |" in markdown
    before = _counts(settings)
    assert _feedback(settings, store) == []  # a third run: nothing pending
    (again, _), = _feedback(settings, store, batch="b0001")  # forced: ingested, nothing learned
    assert (again.new_version, again.trained, again.results) == (None, 0, "unchanged")
    assert _counts(settings) == before
    assert before["learned_labels"] == (5, 5) and before["labels"] == (5, 5)
    assert before["decisions"][0] == before["decisions"][1] > 0
    assert len(trained) == 2
    assert _q(settings, "SELECT version, learned_batch FROM policy_history ORDER BY version") == [
        (1, "b0001"), (2, "b0001")]


def test_a_corrected_label_trains_once_with_its_new_value(settings, store, trained) -> None:
    _run_batch(settings, store)
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS])
    _feedback(settings, store)
    _labels(store, [{"item_id": i, "answer": i != "i2"} for i in ITEMS])  # i2 corrected
    ((fixed, markdown),) = _feedback(settings, store)
    assert (fixed.trained, fixed.corrected, fixed.new_labels, fixed.learned) == (1, 1, 0, 6)
    assert trained[-1] == {"i2": False}
    assert "(1 corrected)" in markdown
    assert _q(settings, "SELECT DISTINCT label FROM cost_ledger WHERE item_id = 'i2'") == [("no",)]
    # the same labels written differently (order, case, text forms): not a new label version
    _labels(store, [{"item_id": i, "answer": "No" if i == "i2" else "TRUE"} for i in reversed(ITEMS)])
    ((same, _),) = _feedback(settings, store)  # the file changed, so it is read again ...
    assert (same.new_version, same.trained, same.corrected, same.normalised) == (None, 0, 0, 6)
    assert len(trained) == 2  # ... but nothing is trained twice
    # corrected back to its first value: a new label version again, trained once
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS])
    ((back, _),) = _feedback(settings, store)
    assert (back.trained, back.corrected) == (1, 1) and trained[-1] == {"i2": True}
    assert _q(settings, "SELECT seq, answer FROM label_versions WHERE item_id = 'i2' ORDER BY seq") == [
        (1, "yes"), (2, "no"), (3, "yes")]
    assert _counts(settings)["learned_labels"] == (8, 8)


def test_label_normalisation_and_rejections_are_reported_with_line_numbers(settings, store, trained) -> None:
    _run_batch(settings, store)
    _labels(store, [
        {"item_id": "i0", "answer": "yes"},     # 1 normalised
        {"item_id": "i1", "answer": "False"},   # 2 normalised
        {"item_id": "i2", "answer": "1"},       # 3 normalised
        {"item_id": "i3", "answer": True},      # 4 already a bool
        {"item_id": "i4", "answer": "maybe"},   # 5 rejected: not yes/no on a bool stream
        {"item_id": "i5", "answer": 0},         # 6 rejected: a number, not a label
        "{not json",                            # 7 rejected: malformed
        {"item_id": "ghost", "answer": True},   # 8 rejected: no such item
        {"item_id": "i0", "answer": "no"},      # 9 rejected: duplicate of line 1
    ])
    ((summary, markdown),) = _feedback(settings, store)
    assert (summary.labelled, summary.normalised, summary.rejected_lines) == (4, 3, [5, 6, 7, 8, 9])
    assert trained == [{"i0": True, "i1": False, "i2": True, "i3": True}]  # bools, not texts
    assert any("line 5: item 'i4': label 'maybe' on a bool stream" in e for e in summary.errors)
    assert any("line 8: label for unknown item 'ghost'" in e for e in summary.errors)
    assert any("line 7" in e for e in summary.errors) and any("line 9" in e for e in summary.errors)
    assert "| labels normalised (e.g. \"False\" → no) | 3 |" in markdown
    assert "| labels.jsonl lines rejected | 5 (lines 5, 6, 7, 8, 9) |" in markdown
    assert _q(settings, "SELECT item_id, answer FROM labels ORDER BY item_id") == [
        ("i0", "yes"), ("i1", "no"), ("i2", "yes"), ("i3", "yes")]
    reasons = dict(_q(settings, "SELECT item_id, reason FROM label_errors"))
    assert set(reasons) == {"ghost", "i4"} and reasons["i4"].startswith("line 5: ")
    assert _state(settings) == (6, 4, 4, 0)


def test_a_rerun_batch_is_reingested_to_match_its_new_results(settings, store, trained) -> None:
    _run_batch(settings, store)
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS])
    _feedback(settings, store)
    marker, rows = batches.read_results(store, "s1", POLICY, "b0001") or (None, [])
    assert marker is not None
    # the rerun: other backends on every call site, one item fewer
    swap = {"det-big": "det-cheap", "det-cheap": "det-big", "attr-big": "attr-cheap",
            "attr-cheap": "attr-big"}
    rerun = [r.model_copy(update={"decisions": [d.model_copy(update={"backend": swap[d.backend]})
                                                for d in r.decisions]}) for r in rows[:-1]]
    batches.write_results(store, "s1", POLICY, "b0001", rerun, policy_version=1,
                          program_id=marker.program_id)
    assert _feedback(settings, store, batch=None) != []  # pending by default, no --batch needed
    ledger = _q(settings, "SELECT item_id, call_site, backend, policy_version FROM cost_ledger")
    assert sorted(ledger) == sorted((r.item_id, d.call_site, d.backend, 1) for r in rerun
                                    for d in r.decisions)
    assert _q(settings, "SELECT COUNT(*) FROM results") == [(5,)]
    assert len(trained) == 1  # the labels were learned before the rerun: not again
    counts = _counts(settings)
    assert all(rows_ == keys for rows_, keys in counts.values())
    assert _feedback(settings, store) == []


def test_the_rerun_warning_and_report(settings, store) -> None:
    _run_batch(settings, store)
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS])
    _feedback(settings, store)
    before = _q(settings, "SELECT COUNT(*) FROM decisions")[0][0]
    marker, rows = batches.read_results(store, "s1", POLICY, "b0001") or (None, [])
    assert marker is not None
    batches.write_results(store, "s1", POLICY, "b0001", rows[:2], policy_version=1,
                          program_id=marker.program_id)
    ((summary, markdown),) = _feedback(settings, store)
    assert summary.results == "replaced"
    after = _q(settings, "SELECT COUNT(*) FROM decisions")[0][0]
    assert after == sum(len(r.decisions) for r in rows[:2]) < before
    assert any(f"ledger rows replaced, 6 results and {before} decisions before, 2 and {after} now" in e
               for e in summary.errors)
    assert "its ledger rows were replaced to match them" in markdown


def test_clock_skew_between_labels_and_results_drops_and_doubles_nothing(settings, store, trained) -> None:
    # labels first, results stamped a day in the future, then a rerun stamped a day in the past
    _labels(store, [{"item_id": i, "answer": True} for i in ITEMS], batch="b0002")
    assert _feedback(settings, store) == []  # labels without results: nothing to ingest yet
    registry = registry_for(settings.catalog)
    process_batch(settings, store, registry, "s1", "b0002", POLICY, local_round_runner(registry))
    marker, rows = batches.read_results(store, "s1", POLICY, "b0002") or (None, [])
    assert marker is not None
    future = datetime.now(UTC) + timedelta(days=1)
    batches.write_results(store, "s1", POLICY, "b0002", rows, policy_version=0,
                          program_id=marker.program_id, created_at=future)
    ((first, _),) = _feedback(settings, store)
    assert (first.learned, first.trained) == (6, 6)
    past = datetime.now(UTC) - timedelta(days=1)
    batches.write_results(store, "s1", POLICY, "b0002", rows[:4], policy_version=0,
                          program_id=marker.program_id, created_at=past)
    _labels(store, [{"item_id": i, "answer": i != "i0"} for i in ITEMS], batch="b0002")
    ((late, _),) = _feedback(settings, store)  # older-stamped results still replace the newer
    assert (late.results, late.items, late.trained, late.corrected) == ("replaced", 4, 1, 1)
    assert _q(settings, "SELECT COUNT(*) FROM results") == [(4,)]
    assert [len(t) for t in trained] == [6, 1]
    assert all(rows_ == keys for rows_, keys in _counts(settings).values())
