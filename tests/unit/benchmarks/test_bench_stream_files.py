"""Drawn streams kept between runs (``benchmarks.evaluate.streams``): read back exactly as
drawn, named by everything that draws them, never trusted when unreadable."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import benchmarks.evaluate.harness as harness
import benchmarks.evaluate.streams as streams
from benchmarks.evaluate.harness import load_stream
from benchmarks.evaluate.streams import StreamFiles, stream_key
from benchmarks.queryset import default_queryset, load_queryset
from benchmarks.truth import load_facts


@pytest.fixture(scope="module")
def setup():
    qs = load_queryset(default_queryset("openform"))
    return qs, qs.queries[0], load_facts()


def _same(a, b) -> None:
    assert a.ids == b.ids and a.labels == b.labels and a.difficulties == b.difficulties
    assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a.images, b.images, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a.features, b.features, strict=True))
    assert all(not im.flags.writeable for im in b.images)


def test_a_stream_is_read_back_as_drawn_without_drawing_it_again(setup, tmp_path, monkeypatch) -> None:
    qs, query, facts = setup
    files = StreamFiles(tmp_path)
    drawn = load_stream(qs, query, 9, 3, facts, files)
    _same(load_stream(qs, query, 9, 3, facts), drawn)  # the same as with no files at all
    (path,) = tmp_path.glob(f"{query.id}-s3-n9-*.npz")

    def no_drawing(*args, **kwargs):
        raise AssertionError("drawn again")

    monkeypatch.setattr(harness, "draw_stream", no_drawing)
    _same(drawn, load_stream(qs, query, 9, 3, facts, files))
    with pytest.raises(AssertionError, match="drawn again"):  # another seed is another stream
        load_stream(qs, query, 9, 4, facts, files)
    assert path.exists()


def test_the_key_names_everything_that_draws_the_stream(setup, tmp_path, monkeypatch) -> None:
    qs, query, facts = setup
    q = query.model_dump_json()
    key = stream_key(q, "str", 9, 3, facts)
    assert key == stream_key(q, "str", 9, 3, dict(facts))
    others = {stream_key(q, "bool", 9, 3, facts), stream_key(q, "str", 10, 3, facts),
              stream_key(q, "str", 9, 4, facts), stream_key(q, "str", 9, 3, {**facts, "x": "y"}),
              stream_key(qs.queries[1].model_dump_json(), "str", 9, 3, facts)}
    assert key not in others and len(others) == 5
    # a change to the source of a module that draws the items is another key
    for rel in streams.SOURCES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(streams.ROOT / rel, tmp_path / rel)
    monkeypatch.setattr(streams, "ROOT", tmp_path)
    assert stream_key(q, "str", 9, 3, facts) == key
    scenes = tmp_path / "benchmarks" / "scenes.py"
    scenes.write_text(scenes.read_text() + "\n# another version\n")
    assert stream_key(q, "str", 9, 3, facts) != key


def test_an_unreadable_file_is_drawn_again_and_replaced(setup, tmp_path) -> None:
    qs, query, facts = setup
    files = StreamFiles(tmp_path)
    drawn = load_stream(qs, query, 6, 1, facts, files)
    (path,) = tmp_path.glob("*.npz")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # torn: a killed writer, a full disk
    key = path.name.rsplit("-", 1)[1].removesuffix(".npz")
    assert files.get(query.id, 1, 6, key) is None
    _same(drawn, load_stream(qs, query, 6, 1, facts, files))
    assert path.read_bytes() == good
    # a file of an older key for the same stream is replaced, not kept beside it
    stale = tmp_path / f"{query.id}-s1-n6-{'0' * 32}.npz"
    stale.write_bytes(good)
    assert files.get(query.id, 1, 6, "0" * 32) is None  # its content names another key
    files.put(query.id, 1, 6, key, drawn.images, np.stack(drawn.features), drawn.labels, drawn.difficulties)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_images_of_different_shapes_are_not_stored(tmp_path: Path) -> None:
    files = StreamFiles(tmp_path)
    ims = [np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)]
    assert files.put("q", 0, 2, "k", ims, np.zeros((2, 3)), [True, False], ["easy", "hard"]) is None
    assert list(tmp_path.iterdir()) == []


def test_read_back_items_are_read_only_to_their_buffer_so_the_call_cache_keeps_their_digests(
        setup, tmp_path) -> None:
    from benchmarks.backends import bench_specs
    from benchmarks.counterfactual import CallCache
    from modules.backends.base import Call
    from modules.registry import Registry

    qs, query, facts = setup
    files = StreamFiles(tmp_path)
    load_stream(qs, query, 4, 3, facts, files)
    kept = load_stream(qs, query, 4, 3, facts, files)
    for im in kept.images:  # nothing that holds the pixels can change them
        root = im
        while isinstance(root.base, np.ndarray):
            assert not root.flags.writeable
            root = root.base
        assert not root.flags.writeable
    cache = CallCache(Registry(bench_specs()))
    keys = [cache.key("det-s", Call("find", im[2:20, 3:30], ("circle",))) for im in kept.images]
    assert len(cache._digests) == len(kept.images)  # each item's patch hashed once, then remembered
    assert keys == [cache.key("det-s", Call("find", im[2:20, 3:30], ("circle",))) for im in kept.images]
    assert len(cache._digests) == len(kept.images)


def test_the_next_phase_reads_the_kept_stream_or_makes_a_pickled_one_read_only(setup, tmp_path) -> None:
    import pickle
    from types import SimpleNamespace

    from benchmarks.evaluate.cli import _handed_on

    qs, query, facts = setup
    files = StreamFiles(tmp_path)
    drawn = load_stream(qs, query, 4, 3, facts, files)
    kept: Any = SimpleNamespace(qs=qs, scenes=4, facts=facts, streams=files,
                                ctx=SimpleNamespace(settings=harness.Settings(seed=3)))
    _same(drawn, _handed_on(kept, query, None))  # read back from the worker's file
    pickled = pickle.loads(pickle.dumps(drawn))  # as a worker hands it on with no files
    assert all(im.flags.writeable for im in pickled.images)
    got = _handed_on(kept, query, pickled)
    _same(drawn, got)
    assert got.program is not drawn.program and got.program.source == drawn.program.source
