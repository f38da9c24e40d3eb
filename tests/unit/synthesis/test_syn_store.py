"""Synthesized programs in the policy store: stored with provenance, reused, regenerated."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.synthesize import stream_info_for_task, synthesize_task
from modules.synthesis import task_hash
from policy_store import schema
from policy_store.store import PolicyStore

TASK = "Is there a red triangle left of a blue circle?"


@pytest.fixture
def db(tmp_path: Path) -> PolicyStore:
    store = PolicyStore(tmp_path / "fmp.duckdb")
    store.init()
    return store


def test_a_new_task_is_synthesized_stored_and_then_reused(db: PolicyStore) -> None:
    first = synthesize_task(db, TASK)
    again = synthesize_task(db, "  is there a RED triangle left of a blue circle? ")
    assert (first.reused, again.reused) == (False, True)
    assert (first.revision, again.revision, again.program_id) == (1, 1, first.program_id)
    stored = db.lookup_synthesized(task_hash(TASK))
    assert stored is not None
    assert (stored.task_text, stored.synthesizer, stored.model, stored.version, stored.attempts) == (
        TASK, "grammar", "grammar-compiler", "grammar/1", 1)
    assert stored.source == first.source and stored.created_at is not None
    assert [c.call_site for c in db.call_sites(first.program_id)][:2] == ["exists@2:11", "exists@4:11"]


def test_regenerate_adds_a_revision_and_lookups_take_the_latest(db: PolicyStore) -> None:
    synthesize_task(db, TASK)
    second = synthesize_task(db, TASK, regenerate=True)
    assert (second.reused, second.revision) == (False, 2)
    latest = db.lookup_synthesized(task_hash(TASK))
    assert latest is not None and latest.revision == 2
    assert db.lookup_synthesized(task_hash(TASK), synthesizer="openai") is None
    assert db.lookup_synthesized(task_hash("Is there a circle?")) is None


def test_a_stored_program_that_no_longer_validates_is_regenerated(db: PolicyStore) -> None:
    first = synthesize_task(db, TASK)
    t = schema.synthesized_programs
    db._run(lambda conn: conn.execute(sa.update(t).values(source="def f(image):\n    return eval('1')\n")))
    fresh = synthesize_task(db, TASK)
    assert (fresh.reused, fresh.revision, fresh.source) == (False, 2, first.source)


def test_stream_info_for_a_task_runs_the_program_and_a_one_call_baseline(db: PolicyStore) -> None:
    summary = synthesize_task(db, 'Is there a "red" circle?'.replace('"', ""))
    info = stream_info_for_task("s1", summary)
    assert (info.stream, info.question, info.answer_type, info.program) == (
        "s1", "Is there a red circle?", "bool", summary.source)
    assert info.query_id == f"synth-{summary.task_hash[:12]}"
    assert info.monolithic_program == ('def execute_command(image):\n'
                                       '    return query(image, "Is there a red circle?") == "yes"\n')
