"""Task text -> stored program (synthesize flow) -> a stream that runs it (stream_batch flow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.scenes import encode_png
from storage import batches
from storage.records import ManifestItem
from storage.url import open_store

pytestmark = pytest.mark.integration

CATALOG = Path(__file__).parent / "fake_catalog.yaml"
TASK = "Is there a red circle?"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("FMP_CATALOG", str(CATALOG))
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    return {"storage_url": str(tmp_path / "objects"), "db_path": str(tmp_path / "fmp.duckdb")}


def test_a_synthesized_program_is_stored_once_and_runs_in_a_stream(prefect_harness, env) -> None:
    from flows.stream_batch import stream_batch
    from flows.synthesize import stream_info_for_task, synthesize
    from policy_store.store import PolicyStore

    first = synthesize(task_text=TASK, db_path=env["db_path"])
    again = synthesize(task_text="is there a RED circle?", db_path=env["db_path"])
    assert (first.reused, again.reused) == (False, True)
    assert (first.revision, again.program_id) == (1, first.program_id)
    assert first.source == ('def execute_command(image):\n    if not exists(image, "circle"):\n'
                            '        return False\n    for circle in find(image, "circle"):\n'
                            '        if verify_property(circle, "circle", "red"):\n'
                            '            return True\n    return False\n')
    _, rows = PolicyStore(env["db_path"]).query(
        "SELECT s.synthesizer, s.model, s.version, s.attempts, p.query_id FROM synthesized_programs s "
        "JOIN programs p ON p.program_id = s.program_id")
    assert rows == [("grammar", "grammar-compiler", "grammar/1", 1, f"synth-{first.task_hash[:12]}")]

    store = open_store(env["storage_url"])
    batches.write_stream_info(store, stream_info_for_task("synth", first))
    rng = np.random.default_rng(0)
    batches.write_batch(store, "synth", "b0000", [
        (ManifestItem(item_id=f"i{k}", image=f"images/i{k}.png"),
         encode_png(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))) for k in range(3)])
    summary = stream_batch(stream="synth", batch=None, policy="largest", **env)
    assert (summary.items, summary.failed) == (3, 0)
    got = batches.read_results(store, "synth", "largest", "b0000")
    assert got is not None
    marker, results = got
    assert marker.program_id == first.program_id
    assert [r.answer for r in results] == [True, True, True]  # fake catalog: a red circle everywhere
    assert [(d.call_site, d.backend) for d in results[0].decisions] == [
        ("exists@2:11", "det-big"), ("find@4:18", "det-big"), ("verify_property@5:11", "attr-big")]


def test_fmp_synthesize_prints_and_stores_the_program(prefect_harness, env, capsys) -> None:
    from flows.cli import main

    task = "Is there a red triangle left of a blue circle?"
    assert main(["--db", env["db_path"], "synthesize", task]) == 0
    first = capsys.readouterr().out
    assert main(["--db", env["db_path"], "synthesize", "--regenerate", task]) == 0
    second = capsys.readouterr().out
    assert first.startswith("# task 335189cc60d6 revision 1: program 2c5ab94e9cca183a (new, valid after 1 try; "
                            "grammar grammar-compiler grammar/1)\ndef execute_command(image):\n")
    assert second.startswith("# task 335189cc60d6 revision 2: program 2c5ab94e9cca183a (new, valid")
    assert main(["--db", env["db_path"], "synthesize", "How many circles are red?"]) == 1
    assert "fmp synthesize: error: the grammar compiler does not understand 'How many circles are red?'" \
        in capsys.readouterr().err
