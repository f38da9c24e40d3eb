"""Your question on your own images: fmp stream create / add / label, then run-batch and feedback."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from flows.cli import main
from storage import batches
from storage.s3 import S3Store
from storage.url import open_store

pytestmark = pytest.mark.integration

CATALOG = Path(__file__).parent / "fake_catalog.yaml"
REPO = Path(__file__).resolve().parents[2]
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
    # each executed call site of an item's own run is one ledger row: exists for every item,
    # verify_property on the items where the fake detector found a circle (all of them); the
    # default policy's confirmations and audits have rows of their own (`+confirm`, `+audit[…]`)
    assert _ledger(db, "SELECT COUNT(*) FROM cost_ledger WHERE stream = 'mine' "
                       "AND call_site NOT LIKE '%+%'") == [(10,)]
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
    assert pending_by_stream("fmp", **env) == {"two": ["b0000"]}
    summaries = ingest_feedback_all(**env)
    assert [(s.stream, s.batch, s.labelled) for s in summaries] == [("two", "b0000", 1)]
    assert pending_by_stream("fmp", **env) == {}


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


def test_an_unknown_stream_is_refused_before_prefect_starts(
        setup: tuple[list[str], Path], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """run-batch and feedback check the stream before a Prefect client (or a temporary server)
    starts: one error line, and no server started for a typo."""
    import flows.cli

    def no_prefect() -> None:
        raise AssertionError("a Prefect client was started for an unknown stream")

    monkeypatch.setattr(flows.cli, "in_process_runs", no_prefect)
    common, _ = setup
    for argv in (["run-batch", "nope"], ["feedback", "nope"]):
        assert main([*common, *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"fmp {argv[0]}: error: unknown stream 'nope'"), err


def test_a_stream_from_an_s3_prefix_takes_the_paths_under_it_as_item_ids(
        setup: tuple[list[str], Path], s3_store: S3Store, s3_client: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    common, root = setup
    monkeypatch.setenv("FMP_S3_ENDPOINT_URL", str(s3_store.endpoint_url))
    bucket = s3_store.bucket
    uploads = {"photos/p0.png": _image("PNG", 0), "photos/p1.png": _image("PNG", 1),
               "photos/garden/g0.jpg": _image("JPEG", 10),
               "photos/garden/": b"",  # the "folder" the S3 console makes: no file
               "photos/notes.txt": b"not an image", "photos/fake.jpg": b"a .jpg that is no JPEG",
               "photosx/beside.png": _image("PNG", 2), "elsewhere/e.png": _image("PNG", 3)}
    for key, data in uploads.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    assert main([*common, "stream", "create", "mine", "--program", str(root / "circle.py")]) == 0
    capsys.readouterr()

    assert main([*common, "stream", "add", "mine", f"s3://{bucket}/photos", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert ("added 3 images to mine as batches b0000..b0001 (0 already in the stream); left out: "
            "1 not JPEG or PNG inside (e.g. 'fake.jpg'), 1 other files") in out, out
    store = open_store(str(root / "objects"))
    assert batches.list_batches(store, "mine") == ["b0000", "b0001"]
    items = {i.item_id: (b, i) for b in ("b0000", "b0001") for i in batches.read_manifest(store, "mine", b).strict()}
    assert sorted(items) == ["garden/g0.jpg", "p0.png", "p1.png"]
    batch, g0 = items["garden/g0.jpg"]
    assert g0.meta["source"] == f"s3://{bucket}/photos/garden/g0.jpg"  # no ?endpoint_url=
    assert batches.read_image(store, "mine", batch, g0) == uploads["photos/garden/g0.jpg"]

    # the same prefix again (with a trailing slash): nothing new
    assert main([*common, "stream", "add", "mine", f"s3://{bucket}/photos/"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"added nothing to mine: all 3 images under s3://{bucket}/photos?endpoint_url="), out
    assert batches.list_batches(store, "mine") == ["b0000", "b0001"]

    # one more image under the prefix: a new batch with only it
    s3_client.put_object(Bucket=bucket, Key="photos/garden/g1.png", Body=_image("PNG", 11))
    assert main([*common, "stream", "add", "mine", f"s3://{bucket}/photos"]) == 0
    assert [i.item_id for i in batches.read_manifest(store, "mine", "b0002").strict()] == ["garden/g1.png"]

    capsys.readouterr()
    assert main([*common, "stream", "add", "mine", "s3://fmp-no-such-bucket/photos"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]  # after the progress bar's line
    assert error.startswith("fmp stream: error: cannot list s3://fmp-no-such-bucket/photos: ") and \
        "no bucket 'fmp-no-such-bucket' at http://" in error, error


# Each adder imports the CLI, waits for the go file, then runs `fmp stream add` as the CLI does.
# Every batch write waits 0.3 s first, so an add holds the stream for a second: without the
# lock both would read the same items and batch ids before either wrote.
_ADDER = """
import sys, time
from pathlib import Path
from storage import batches
from flows.cli import main

write = batches.write_batch
def slow_write(*args, **kwargs):
    time.sleep(0.3)
    return write(*args, **kwargs)
batches.write_batch = slow_write
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""


def test_two_adds_at_once_add_every_image_once_in_consecutive_batches(
        setup: tuple[list[str], Path]) -> None:
    common, root = setup
    sources = {"a": range(6), "b": range(3, 9)}  # 3, 4, 5 in both, the same file names
    for name, numbers in sources.items():
        (root / name / "sub").mkdir(parents=True)
        for n in numbers:
            (root / name / ("sub" if n % 2 else "") / f"i{n}.png").write_bytes(_image("PNG", n))
    assert main([*common, "stream", "create", "mine", "--program", str(root / "circle.py")]) == 0
    go = root / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _ADDER, str(go), *common, "stream", "add", "mine",
                               str(root / name), "--batch-size", "2"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in sources]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    store = open_store(str(root / "objects"))
    ids = batches.list_batches(store, "mine")
    assert ids == [f"b{k:04d}" for k in range(len(ids))]
    items = [i.item_id for b in ids for i in batches.read_manifest(store, "mine", b).strict()]
    expected = sorted(f"sub/i{n}.png" if n % 2 else f"i{n}.png" for n in range(9))
    assert sorted(items) == expected  # each image once
    added = [int(re.search(r"added (\d+) images", out)[1]) for out, _ in outs]  # type: ignore[index]
    assert sorted(added) == [3, 6]
    assert sum("waiting for stream mine's add lock" in err for _, err in outs) == 1, outs
