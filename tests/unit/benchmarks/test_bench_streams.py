"""Query sets as files, stream sampling and publishing, and the describe table."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.queryset import default_queryset, load_queryset
from benchmarks.signs import render_item
from benchmarks.streams import describe, main, publish_benchmark, stream_name, summary_key
from modules.program import parse_program
from storage import batches
from storage.local import LocalStore

SMALL = """
benchmark: binary
answer_type: bool
scenes: 30
queries:
  - id: stop_sign
    question: Does the sign say STOP?
    reasoning: logical
    program: |
      def execute_command(image):
          return read_text(image) == "STOP"
    truth: {cmp: ["==", {sign: {}}, STOP]}
    positive: [{sign: STOP}]
    near_misses: [{sign: [EXIT, OPEN]}]
  - id: red_circle
    question: Is there a red circle?
    reasoning: logical
    program: |
      def execute_command(image):
          for c in find(image, "circle"):
              if verify_property(c, "circle", "red"):
                  return True
          return False
    truth: {exists: {shape: circle, colour: red}}
    positive: [{objects: [[circle, red]]}]
    near_misses: [{objects: [[circle, orange]]}]
"""


def test_shipped_query_sets_have_the_papers_shape() -> None:
    binary = load_queryset(default_queryset("binary"))
    openform = load_queryset(default_queryset("openform"))
    assert (len(binary.queries), binary.scenes, binary.answer_type) == (30, 2000, "bool")
    assert (len(openform.queries), openform.scenes, openform.answer_type) == (50, 500, "str")
    assert Counter(q.reasoning for q in openform.queries) == {
        "spatial": 10, "logical": 10, "numerical": 10, "comparison": 10, "knowledge": 10}
    assert set(Counter(q.reasoning for q in binary.queries)) == {
        "spatial", "logical", "numerical", "comparison", "knowledge"}
    assert all(q.near_misses for q in binary.queries) and all(q.distractors for q in openform.queries)
    mono = parse_program(openform.queries[0].monolithic_program("str"))
    assert [s.function for s in mono.call_sites] == ["query"]


def test_bad_query_set_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("[{sign: STOP}]", "[{sign: HELLO}]"))
    with pytest.raises(ValueError, match=r"(?s)bad.yaml: invalid query set.*queries.0.positive.0.*unknown sign words \['HELLO'\]"):
        load_queryset(bad)
    bad.write_text(SMALL.replace('return read_text(image) == "STOP"', "import os"))
    with pytest.raises(ValueError, match="query 'stop_sign': program does not parse"):
        load_queryset(bad)


def test_publish_writes_batches_labels_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    qfile = tmp_path / "small.yaml"
    qfile.write_text(SMALL)
    url = str(tmp_path / "store")
    summary = publish_benchmark(url, qfile, seed=4, scenes=30, jobs=1, batch_size=10)
    store = LocalStore(tmp_path / "store")
    stream = stream_name("binary", 4, "stop_sign")
    assert stream == "binary-s4-stop_sign"
    info = batches.read_stream_info(store, stream)
    assert (info.answer_type, info.question) == ("bool", "Does the sign say STOP?")
    labels = [lab for b in ("b0000", "b0001", "b0002") for lab in batches.read_labels(store, stream, b).records]
    items = [it for b in ("b0000", "b0001", "b0002") for it in batches.read_manifest(store, stream, b).records]
    assert len(labels) == len(items) == 30
    assert sum(lab.answer is True for lab in labels) == 1  # max(1, round(30 / 101))
    positive = next(it for it, lab in zip(items, labels, strict=True) if lab.answer is True)
    assert (positive.meta["kind"], positive.meta["sign_text"]) == ("positive", "STOP")
    redrawn = render_item(positive.meta["seed"], [tuple(f) for f in positive.meta["force"]], positive.meta["sign"])
    assert redrawn.sign_text == "STOP" and redrawn.difficulty == positive.meta["difficulty"]
    rows = {r["query_id"]: r for r in summary["queries"]}
    assert rows["stop_sign"]["scenes"] == 30 and rows["stop_sign"]["positive"] == 1
    assert json.loads(store.get(summary_key("binary", 4))) == summary
    assert main(["--benchmark", "binary", "--seed", "4", "--publish", url, "--describe"]) == 0
    out = capsys.readouterr().out
    assert "stop_sign" in out and "red_circle" in out and "logical" in out


def test_publish_is_deterministic(tmp_path: Path) -> None:
    qfile = tmp_path / "small.yaml"
    qfile.write_text(SMALL)
    for name in ("a", "b"):
        publish_benchmark(str(tmp_path / name), qfile, seed=1, scenes=12, jobs=1, batch_size=12, only=["red_circle"])
    key = "streams/binary-s1-red_circle/batches/b0000/manifest.jsonl"
    assert LocalStore(tmp_path / "a").get(key) == LocalStore(tmp_path / "b").get(key)


def test_describe_of_missing_benchmark_says_how_to_publish(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--benchmark", "openform", "--publish", str(tmp_path), "--describe"]) == 1
    assert "python -m benchmarks.streams --benchmark openform --seed 0" in capsys.readouterr().err
    assert describe({"benchmark": "b", "answer_type": "str", "seed": 0, "queries_file": "f",
                     "scenes_per_query": 0, "jobs": 1, "wall_seconds": 0.0, "queries": []}).count("\n") == 1
