"""Your question on your own images: fmp stream create / add / label, then run-batch and feedback."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli import main
from storage import batches
from storage.url import open_store

pytestmark = pytest.mark.integration

CATALOG = Path(__file__).parent / "fake_catalog.yaml"
PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    return verify_property(image, "circle", "red")
'''


def _image(fmt: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    monkeypatch.setenv("FMP_CATALOG", str(CATALOG))
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    for name in ("FMP_STORAGE_URL", "FMP_DB_PATH", "FMP_S3_ENDPOINT_URL"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    photos = tmp_path / "photos"
    (photos / "garden").mkdir(parents=True)
    for k in range(3):
        (photos / f"p{k}.png").write_bytes(_image("PNG", k))
    for k in range(2):
        (photos / "garden" / f"g{k}.jpg").write_bytes(_image("JPEG", 10 + k))
    (photos / "notes.txt").write_text("not an image")
    (tmp_path / "circle.py").write_text(PROGRAM)
    common = ["--storage", str(tmp_path / "objects"), "--db", str(tmp_path / "fmp.duckdb")]
    return common, tmp_path


def _ledger(db: Path, sql: str) -> list[tuple[object, ...]]:
    from policy_store.store import PolicyStore

    return PolicyStore(db, read_only=True).query(sql)[1]


def test_a_stream_from_a_folder_runs_through_the_flows_and_the_ledger(
        prefect_harness: None, setup: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    common, root = setup
    db = root / "fmp.duckdb"
    store = open_store(str(root / "objects"))
    assert main([*common, "stream", "create", "mine", "--question", "Is there a red circle?",
                 "--program", str(root / "circle.py")]) == 0
    assert main([*common, "stream", "add", "mine", str(root / "photos"), "--batch-size", "3"]) == 0
    assert batches.list_batches(store, "mine") == ["b0000", "b0001"]
    items = {i.item_id for b in ("b0000", "b0001") for i in batches.read_manifest(store, "mine", b).records}
    assert items == {"p0.png", "p1.png", "p2.png", "garden/g0.jpg", "garden/g1.jpg"}
    capsys.readouterr()
    assert main([*common, "stream", "add", "mine", str(root / "photos")]) == 0  # the same images again
    assert "added nothing" in capsys.readouterr().out
    assert batches.list_batches(store, "mine") == ["b0000", "b0001"]

    (root / "labels.csv").write_text("item,label\ngarden/g0.jpg,yes\np0.png,no\n")
    assert main([*common, "stream", "label", "mine", str(root / "labels.csv")]) == 0
    assert main([*common, "run-batch", "mine", "--all"]) == 0
    assert main([*common, "feedback", "mine"]) == 0
    # items sort by path: b0000 holds garden/g0.jpg, garden/g1.jpg, p0.png; only it has labels
    counts = ("SELECT COUNT(DISTINCT item_id), COUNT(DISTINCT batch) FROM cost_ledger "
              "WHERE stream = 'mine'")
    assert _ledger(db, counts) == [(3, 1)]
    assert _ledger(db, "SELECT item_id, label FROM cost_ledger WHERE stream = 'mine' AND label "
                       "IS NOT NULL GROUP BY ALL ORDER BY 1") == [("garden/g0.jpg", "yes"), ("p0.png", "no")]

    # late labels, one of them for an item of the other batch; feedback picks them up
    (root / "late.jsonl").write_text('{"item": "p1.png", "label": true}\n'
                                     '{"item": "garden/g1.jpg", "label": "no"}\n')
    assert main([*common, "stream", "label", "mine", str(root / "late.jsonl")]) == 0
    assert main([*common, "feedback", "mine"]) == 0
    assert _ledger(db, counts) == [(5, 2)]
    assert _ledger(db, "SELECT item_id, label FROM cost_ledger WHERE stream = 'mine' AND label "
                       "IS NOT NULL GROUP BY ALL ORDER BY 1") == [
        ("garden/g0.jpg", "yes"), ("garden/g1.jpg", "no"), ("p0.png", "no"), ("p1.png", "yes")]
    # each executed call site is one ledger row: exists for every item, verify_property on
    # the items where the fake detector found a circle (all of them)
    assert _ledger(db, "SELECT COUNT(*) FROM cost_ledger WHERE stream = 'mine'") == [(10,)]
    assert _ledger(db, "SELECT COUNT(*) >= 2 FROM policy_versions WHERE stream = 'mine'") == [(True,)]


def test_scheduled_feedback_ingests_every_registered_stream(
        prefect_harness: None, setup: tuple[list[str], Path]) -> None:
    from flows.feedback_all import ingest_feedback_all, pending_by_stream

    common, root = setup
    env = {"storage_url": str(root / "objects"), "db_path": str(root / "fmp.duckdb")}
    for name in ("one", "two"):
        assert main([*common, "stream", "create", name, "--program", str(root / "circle.py")]) == 0
        assert main([*common, "stream", "add", name, str(root / "photos")]) == 0
        assert main([*common, "run-batch", name]) == 0
    (root / "labels.csv").write_text("p0.png,yes\n")
    assert main([*common, "stream", "label", "two", str(root / "labels.csv")]) == 0
    assert pending_by_stream("learned", **env) == {"two": ["b0000"]}
    summaries = ingest_feedback_all(**env)
    assert [(s.stream, s.batch, s.labelled) for s in summaries] == [("two", "b0000", 1)]
    assert pending_by_stream("learned", **env) == {}


def test_unknown_streams_fail_with_the_known_ones_listed(
        setup: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    common, root = setup
    assert main([*common, "stream", "create", "mine", "--program", str(root / "circle.py")]) == 0
    capsys.readouterr()
    for argv in (["run-batch", "nope"], ["feedback", "nope"], ["stream", "add", "nope", str(root)],
                 ["stream", "label", "nope", str(root / "circle.py")]):
        assert main([*common, *argv]) == 1
        err = capsys.readouterr().err
        assert "unknown stream 'nope'" in err and "known streams: mine" in err, err
