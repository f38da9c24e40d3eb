"""Publish a seeded stream of scenes for one query into storage: batches, then labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.queries import Query
from benchmarks.scenes import Scene, encode_png, generate_scene
from storage import batches
from storage.base import ObjectStore
from storage.layout import image_relative
from storage.records import Label, ManifestItem, StreamInfo

MAX_TRIES = 200


@dataclass(frozen=True)
class StreamPlan:
    """How a stream is drawn: batches of ``batch_size`` scenes, ``positive_rate`` positives."""

    n_batches: int = 6
    batch_size: int = 40
    positive_rate: float = 0.1
    near_miss_rate: float = 0.5
    seed: int = 0


def sample_scene(query: Query, positive: bool, rng: np.random.Generator, near_miss_rate: float) -> Scene:
    """A scene whose true answer to ``query`` is ``positive`` (rejection sampling)."""
    for _ in range(MAX_TRIES):
        seed = int(rng.integers(0, 2**31 - 1))
        if positive:
            force = query.force
        elif query.near_misses and rng.random() < near_miss_rate:
            force = query.near_misses[int(rng.integers(len(query.near_misses)))]
        else:
            force = ()
        scene = generate_scene(seed, force=force)
        if query.truth(scene) == positive:
            return scene
    raise RuntimeError(f"{query.query_id}: no {'positive' if positive else 'negative'} scene "
                       f"in {MAX_TRIES} tries; check the query's force objects")


def batch_id(index: int) -> str:
    return f"b{index:04d}"


def publish_stream(store: ObjectStore, stream: str, query: Query, plan: StreamPlan) -> list[str]:
    """Write stream.json, every batch (images, then manifest) and its labels.

    Returns:
        The batch ids, in stream order.
    """
    batches.write_stream_info(store, StreamInfo(
        stream=stream, query_id=query.query_id, question=query.question, answer_type="bool",
        program=query.program, monolithic_program=query.monolithic_program))
    rng = np.random.default_rng([plan.seed, *query.query_id.encode()])
    ids = []
    for b in range(plan.n_batches):
        ids.append(publish_batch(store, stream, query, batch_id(b), plan, rng))
    return ids


def publish_batch(store: ObjectStore, stream: str, query: Query, bid: str, plan: StreamPlan,
                  rng: np.random.Generator) -> str:
    """Write one batch of ``plan.batch_size`` scenes drawn from ``rng`` (images, then
    manifest) and its labels; returns ``bid``."""
    items, labels = [], []
    for i in range(plan.batch_size):
        positive = bool(rng.random() < plan.positive_rate)
        scene = sample_scene(query, positive, rng, plan.near_miss_rate)
        item_id = f"{bid}-{i:04d}"
        meta = {"seed": scene.seed, "difficulty": scene.difficulty}
        items.append((ManifestItem(item_id=item_id, image=image_relative(item_id), meta=meta),
                      encode_png(scene.image)))
        labels.append(Label(item_id=item_id, answer=positive))
    batches.write_batch(store, stream, bid, items)
    batches.write_labels(store, stream, bid, labels)
    return bid
