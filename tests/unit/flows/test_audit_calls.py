"""The ``confirmed`` policy's audit calls kept across feedback runs (``policies.audit_calls``):
a later feedback run answers the calls an earlier one computed and charged without computing or
charging them again; a run killed before its version was saved leaves calls that the rerun
charges once; a changed backend version computes its calls again.

The feedback steps run as the ingest_feedback flow runs them (``flows._feedback``), without
Prefect, on a local store and the fake catalog; every call the audits send to a backend is
recorded by wrapping ``answer_group``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.scenes import encode_png
from flows._batch import load_program, process_batch
from flows._feedback import ingest_batch
from flows._runtime import held_policy_store, registry_for, settings_for, store_for
from flows.settings import Settings
from modules.backends.base import Call
from modules.executor import GroupRequest, GroupResult, answer_group
from modules.program import parse_program
from modules.registry import Registry
from modules.stored_calls import CallKey, call_key
from modules.tasks import local_round_runner
from policies.audit_calls import load_calls, step_id, write_calls
from policies.audits import Replayer
from policies.costs import register_costs
from policy_store.records import LearningStep
from policy_store.store import PolicyStore
from storage import batches, layout
from storage.base import ObjectStore
from storage.records import Label, ManifestItem, StreamInfo

CATALOG = Path(__file__).parents[2] / "integration" / "fake_catalog.yaml"
PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    return verify_property(image, "circle", "red")
'''
MONO = 'def execute_command(image):\n    return query(image, "Is there a red circle?") == "yes"\n'
POLICY = "confirmed"


class Killed(BaseException):
    """A kill -9 before the ledger transaction: nothing after it runs."""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FMP_CATALOG", str(CATALOG))
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    return settings_for(str(tmp_path / "objects"), str(tmp_path / "fmp.duckdb"))


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    """Two batches; the second repeats the first's pictures (same pixels: the same calls) and
    adds two new ones."""
    store = store_for(settings)
    batches.write_stream_info(store, StreamInfo(
        stream="s1", query_id="red_circle", question="Is there a red circle?", answer_type="bool",
        program=PROGRAM, monolithic_program=MONO))
    pictures = {"b0001": [0, 1, 2, 3], "b0002": [0, 1, 2, 3, 4, 5]}
    for batch, seeds in pictures.items():
        batches.write_batch(store, "s1", batch, [
            (ManifestItem(item_id=f"i{s}", image=f"images/i{s}.png"), encode_png(_image(s))) for s in seeds])
        # every fake backend answers "yes": positives and false positives are all audited
        batches.write_labels(store, "s1", batch, [Label(item_id=f"i{s}", answer=s % 2 == 0) for s in seeds])
    return store


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[CallKey]:
    """Every call the audits sent to a backend, in order."""
    keys: list[CallKey] = []

    def spy(registry: Registry, request: GroupRequest) -> GroupResult:
        keys.extend(call_key(request.backend, c) for c in request.calls)
        return answer_group(registry, request)

    monkeypatch.setattr("policies.audits.answer_group", spy)  # the name the replays call
    return keys


def _batch(settings: Settings, store: ObjectStore, batch: str) -> None:
    registry = registry_for(settings.catalog)
    process_batch(settings, store, registry, "s1", batch, POLICY, local_round_runner(registry))


def _feedback(settings: Settings, store: ObjectStore, batch: str) -> int | None:
    registry = registry_for(settings.catalog)
    with held_policy_store(settings) as db:
        register_costs(db, registry, load_program(batches.read_stream_info(store, "s1"), POLICY))
        return ingest_batch(settings, store, registry, db, "s1", batch, POLICY).new_version


def _q(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    return PolicyStore(settings.database).query(sql)[1]


def _audit_calls(settings: Settings) -> int:
    [(calls,)] = _q(settings, "SELECT COALESCE(SUM(calls), 0) FROM decisions WHERE call_site LIKE '%+audit[%'")
    return int(calls)


def _notes(settings: Settings) -> list[str]:
    return [n for (n,) in _q(settings, "SELECT note FROM policy_versions ORDER BY version")]


def test_a_later_feedback_run_computes_and_charges_only_new_calls(settings, store, computed) -> None:
    _batch(settings, store, "b0001")
    assert _feedback(settings, store, "b0001") == 1
    first = list(computed)
    assert first and len(set(first)) == len(first)  # in one run a call is computed once
    assert _audit_calls(settings) == len(first)
    kept = store.list(layout.audit_calls_prefix("s1", POLICY))
    assert len(kept) == 1 and kept[0].startswith(layout.audit_calls_prefix("s1", POLICY) + "b0001/v0-")

    _batch(settings, store, "b0002")
    assert _feedback(settings, store, "b0002") == 2
    second = computed[len(first):]
    # the repeated pictures' calls were computed by the first run: none is computed again
    assert not set(second) & set(first) and len(set(second)) == len(second)
    assert second, "the new pictures' calls were not computed"
    assert _audit_calls(settings) == len(first) + len(second)  # charged once each
    assert "0 calls of" in _notes(settings)[0]
    reused = int(_notes(settings)[1].split(" calls of ")[0].rsplit(", ", 1)[1])
    assert reused > 0
    assert len(store.list(layout.audit_calls_prefix("s1", POLICY))) == 2


def test_a_run_killed_before_its_version_is_saved_is_charged_once_by_the_rerun(
        settings, store, computed, monkeypatch) -> None:
    _batch(settings, store, "b0001")
    real = PolicyStore.save_learned_version

    def killed(self: PolicyStore, *args: Any, **kwargs: Any) -> int:
        raise Killed

    monkeypatch.setattr(PolicyStore, "save_learned_version", killed)
    with pytest.raises(Killed):
        _feedback(settings, store, "b0001")
    lost = list(computed)
    assert lost and _audit_calls(settings) == 0 and _notes(settings) == []
    [written] = store.list(layout.audit_calls_prefix("s1", POLICY))

    monkeypatch.setattr(PolicyStore, "save_learned_version", real)
    assert _feedback(settings, store, "b0001") == 1
    assert computed == lost  # the rerun computed nothing: the killed run's calls were kept ...
    assert _audit_calls(settings) == len(lost)  # ... and are charged now, once
    assert store.list(layout.audit_calls_prefix("s1", POLICY)) == [written]  # the same step, rewritten
    assert "0 calls of" in _notes(settings)[0]

    _batch(settings, store, "b0002")
    assert _feedback(settings, store, "b0002") == 2
    assert not set(computed[len(lost):]) & set(lost)
    assert _audit_calls(settings) == len(computed)  # neither lost nor charged twice
    # nothing pending: a further feedback changes nothing
    with held_policy_store(settings) as db:
        assert db.unlearned_labels("s1", POLICY) == {}


def _replayer(registry: Registry, kept: dict[CallKey, Any] | None = None) -> Replayer:
    program = parse_program(PROGRAM)
    return Replayer(registry, program, "bool", lambda item: _image(int(item[1:])), kept=kept or {})


def _config(exists: str, verify: str) -> dict[str, str]:
    sites = {s.function: s.id for s in parse_program(PROGRAM).call_sites}
    return {sites["exists"]: exists, sites["verify_property"]: verify}


def test_kept_calls_are_free_when_charged_charged_when_not_and_dropped_on_a_new_version(
        tmp_path, computed) -> None:
    from storage.local import LocalStore

    store = LocalStore(tmp_path / "objects")
    registry = Registry.from_catalog(CATALOG)
    first = _replayer(registry)
    first("i0", _config("det-cheap", "attr-cheap"))
    assert len(first.computed) == 2 and first.reused == 0
    saved = LearningStep(None, "b0001", frozenset({("i0", 1)}))
    where = write_calls(store, registry, "s1", POLICY, saved, first.computed)
    assert where == layout.audit_calls_key("s1", POLICY, "b0001", step_id(saved))

    # saved: the shared call (exists on det-cheap) is free, the other one is computed and charged
    kept = load_calls(store, registry, "s1", POLICY, {saved})
    assert set(kept) == set(first.computed) and all(k.charged for k in kept.values())
    second = _replayer(registry, kept)
    answer, flops = second("i0", _config("det-cheap", "attr-big"))
    assert answer is True and flops == 10 + 2000  # the replay's cost counts the reused call
    assert second.reused == 1 and second.reused_flops == 10
    assert [k[0] for k in second.computed] == ["attr-big"] and computed[-1][0] == "attr-big"
    [(site, charge)] = second.charged["i0"].items()
    assert charge.backend == "attr-big" and charge.calls == 1 and charge.flops == 2000

    # never saved (a run that died before its transaction): reused, but charged now
    orphan = load_calls(store, registry, "s1", POLICY, set())
    assert not any(k.charged for k in orphan.values())
    before = len(computed)
    third = _replayer(registry, orphan)
    third("i0", _config("det-cheap", "attr-cheap"))
    assert len(computed) == before and third.reused == 0
    assert set(third.computed) == set(first.computed)
    assert sum(d.calls for d in third.charged["i0"].values()) == 2

    # a backend whose version changed (its catalog entry) computes its calls again
    changed = Registry([s.model_copy(update={"flops_per_call": 11}) if s.name == "det-cheap" else s
                        for s in registry.specs.values()])
    again = load_calls(store, changed, "s1", POLICY, {saved})
    assert {k[0] for k in again} == {"attr-cheap"}


def test_objects_that_do_not_parse_are_skipped(tmp_path, caplog) -> None:
    from storage.local import LocalStore

    store = LocalStore(tmp_path / "objects")
    registry = Registry.from_catalog(CATALOG)
    first = _replayer(registry)
    first("i1", _config("det-big", "attr-big"))
    step = LearningStep(3, "b0002", frozenset({("i1", 2)}))
    where = write_calls(store, registry, "s1", POLICY, step, first.computed)
    assert where is not None and "/b0002/v3-" in where
    head, *blocks = store.get(where).splitlines()
    store.put(layout.audit_calls_key("s1", POLICY, "b0003", "torn"), head + b"\n" + blocks[0][:40])
    store.put(layout.audit_calls_key("s1", POLICY, "b0004", "foreign"), b"{}\n")
    got = load_calls(store, registry, "s1", POLICY, {step})
    assert set(got) == set(first.computed) and all(k.charged for k in got.values())
    assert "does not parse" in caplog.text and "not an audit calls object" in caplog.text
    assert write_calls(store, registry, "s1", POLICY, step, {}) is None


def test_a_call_the_store_cannot_keep_is_charged_and_not_written(tmp_path) -> None:
    from modules.backends.base import Output, Usage
    from storage.local import LocalStore

    store = LocalStore(tmp_path / "objects")
    registry = Registry.from_catalog(CATALOG)
    good = call_key("det-cheap", Call("exists", _image(0), ("circle",)))
    bad = call_key("det-cheap", Call("count", _image(0), ("circle",)))
    calls = {good: (Output(True, Usage(10.0, 10, 0.0)), 1.0),
             bad: (Output(np.int64(3), Usage(10.0, 10, 0.0)), 1.0)}
    step = LearningStep(None, "b0001", frozenset())
    write_calls(store, registry, "s1", POLICY, step, calls)
    assert set(load_calls(store, registry, "s1", POLICY, {step})) == {good}


def test_a_labelled_item_whose_image_does_not_decode_fails_alone_and_is_not_audited(settings) -> None:
    store = store_for(settings)
    batches.write_stream_info(store, StreamInfo(
        stream="s1", query_id="red_circle", question="Is there a red circle?", answer_type="bool",
        program=PROGRAM, monolithic_program=MONO))
    good = [(ManifestItem(item_id=f"i{s}", image=f"images/i{s}.png"), encode_png(_image(s))) for s in (0, 1)]
    truncated = encode_png(_image(2))[:40]
    batches.write_batch(store, "s1", "b0001", [*good, (ManifestItem(item_id="bad", image="images/bad.png"),
                                                       truncated)])
    batches.write_labels(store, "s1", "b0001", [Label(item_id=i, answer=True) for i in ("i0", "i1", "bad")])
    _batch(settings, store, "b0001")
    got = batches.read_results(store, "s1", POLICY, "b0001")
    assert got is not None
    rows = {r.item_id: r for r in got[1]}
    assert rows["bad"].status == "failed" and rows["i0"].status == "ok"
    assert _feedback(settings, store, "b0001") is not None  # the feedback run does not fail on it
    audited = {i for (i,) in _q(settings, "SELECT DISTINCT item_id FROM decisions WHERE call_site LIKE '%+audit[%'")}
    assert "bad" not in audited and audited  # the good positives were audited
    [(learned,)] = _q(settings, "SELECT learned FROM feedback_by_batch WHERE batch = 'b0001'")
    assert learned == 3  # its label counts as learned (once), like every other
