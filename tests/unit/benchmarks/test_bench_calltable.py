"""The evaluation's call table on disk and the call cache's pixel digests."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.backends import bench_specs
from benchmarks.calltable import CallTable, backend_version, load_unit_flops, save_unit_flops
from benchmarks.counterfactual import Answered, CallCache, call_key
from modules.backends.base import Call, CallFailure, Output, Usage
from modules.registry import Registry


@pytest.fixture
def registry() -> Registry:
    return Registry(bench_specs())


def answered(value: object, confidence: object = None, flops: float = 2.5e6) -> Answered:
    return Answered(Output(value, Usage(flops, 6166, 5e-06, 0, confidence)), 0.75)  # type: ignore[arg-type]


def sample(registry: Registry) -> dict:
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    calls = {
        ("det-s", Call("find", img, ("circle",))): answered([(1, 2, 5, 9), (0, 0, 3, 3)], 0.5),
        ("det-m", Call("exists", img, ("square",))): answered(True, np.float32(0.25)),
        ("det-l", Call("count", img[4:20, 8:30], ("object",))): answered(3, np.float64(0.125)),
        ("attr-s", Call("verify_property", img[:8, :8], ("object", "red"))): answered(False, 0.9),
        ("vqa-xl", Call("query", img, ("Is there a red circle?",))): answered("no", 0.6),
        ("kb-exact", Call("llm_query", None, ("how many sides does a triangle have?",))): answered("3"),
        ("ocr-tess", Call("read_text", img, ())): answered(""),
        ("ocr-pprec", Call("read_text", img[1:], ())): answered(CallFailure("ocr-pprec: no line")),
    }
    return {call_key(b, c): got for (b, c), got in calls.items()}


def test_stored_calls_come_back_exactly(tmp_path, registry):
    table = CallTable(tmp_path, registry, "binary")
    calls = sample(registry)
    assert table.append("q1", calls.items()) == len(calls)
    back = table.load("q1")
    assert set(back) == set(calls)
    for key, got in calls.items():
        again = back[key]
        assert again == got and type(again.output.value) is type(got.output.value)
        assert type(again.output.usage.confidence) is type(got.output.usage.confidence)
    assert back[next(iter(calls))].output.value == [(1, 2, 5, 9), (0, 0, 3, 3)]  # boxes stay tuples
    assert table.load("other_query") == {}


def test_a_changed_backend_or_a_torn_line_drops_only_those_calls(tmp_path, registry):
    calls = sample(registry)
    CallTable(tmp_path, registry, "binary").append("q1", calls.items())
    path = tmp_path / "binary" / "q1.jsonl"
    with path.open("ab") as f:
        f.write(b'{"format": 1, "backend": "det-s", "version": "x", "calls": [[')  # a run killed mid-write
    specs = [s.model_copy(update={"price": 1.0}) if s.name == "det-s" else s for s in bench_specs()]
    changed = Registry(specs)
    assert backend_version(changed.spec("det-s")) != backend_version(registry.spec("det-s"))
    back = CallTable(tmp_path, changed, "binary").load("q1")
    assert set(back) == {k for k in calls if k[0] != "det-s"}


def test_a_value_the_table_cannot_keep_stays_out(tmp_path, registry):
    key = call_key("det-s", Call("find", None, ("circle",)))
    table = CallTable(tmp_path, registry, "binary")
    assert table.append("q1", [(key, answered(np.array([1, 2])))]) == 0
    assert table.load("q1") == {}


def test_unit_flops_are_kept_per_backend_version(tmp_path, registry):
    save_unit_flops(tmp_path, registry, {("det-s", "find"): 1.5e6, ("vqa-xl", "query"): 4.3e9})
    assert load_unit_flops(tmp_path, registry) == {("det-s", "find"): 1.5e6, ("vqa-xl", "query"): 4.3e9}
    specs = [s.model_copy(update={"input_size": 48}) if s.name == "det-s" else s for s in bench_specs()]
    assert load_unit_flops(tmp_path, Registry(specs)) == {("vqa-xl", "query"): 4.3e9}


def test_digests_of_read_only_views_are_remembered_and_equal_the_plain_key(registry):
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    img.flags.writeable = False
    cache = CallCache(registry)
    views = [img, img[:], img[8:40, 4:60], img[8:40, 4:60], img[9:40, 4:60], img[::2, ::2]]
    keys = [cache.key("det-s", Call("find", v, ("circle",))) for v in views]
    assert keys == [call_key("det-s", Call("find", v, ("circle",))) for v in views]
    assert keys[2] == keys[3] and len(set(keys)) == 4
    writable = img.copy()
    before = cache.key("det-s", Call("find", writable[:8], ("circle",)))
    writable[0, 0, 0] ^= 1  # a writable image may change: never remembered
    assert cache.key("det-s", Call("find", writable[:8], ("circle",))) != before


def test_a_call_keyed_again_gets_its_kept_digest_and_a_new_call_its_own(registry):
    img = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    img.flags.writeable = False
    cache = CallCache(registry)
    call = Call("find", img[2:20, 3:30], ("circle",))
    first = cache.key("det-s", call)
    assert cache.key("det-s", call) == first == call_key("det-s", call)
    assert cache.key("det-m", call) == call_key("det-m", call) != first
    for n in range(5000):  # calls made and dropped (ids reused): each keyed by its own pixels
        other = Call("find", img[n % 7 : 20, 3:30], ("circle",))
        assert cache.key("det-s", other) == call_key("det-s", other)
    assert len(cache._calls) <= 4096
    cache.clear()
    assert cache.key("det-s", call) == first and len(cache._calls) == 1
