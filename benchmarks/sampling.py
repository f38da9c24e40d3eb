"""Draw a benchmark stream's items: rejection-sampled scenes with exact answers.

Binary streams: ``max(1, round(n / 101))`` positives at seeded positions (about 1 per 100
negatives, at least one), drawn from the query's positive hints; of the negatives,
``near_miss_rate`` are drawn from its near-miss hints (the right objects, a wrong relation,
attribute or sign) and the rest at random. Open-form streams: ``answerable_rate`` of the
items from the positive hints with a real answer, ``distractor_rate`` look-alikes from the
distractor hints whose answer is "N/A", the rest at random. Scenes whose ground truth is
ambiguous are rejected. Every item is a pure function of (set seed, query id, index).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from benchmarks.queryset import BenchQuery, Hint, QuerySet
from benchmarks.signs import SignedScene, render_item
from benchmarks.truth import NA, Ambiguous, evaluate

MAX_TRIES = 400


@dataclass(frozen=True)
class Plan:
    """How many items, how they are drawn, and how they are cut into batches."""

    scenes: int
    seed: int = 0
    batch_size: int = 100
    near_miss_rate: float = 0.3
    answerable_rate: float = 0.55
    distractor_rate: float = 0.3


@dataclass(frozen=True, eq=False)
class Drawn:
    """One generated item: its scene and everything needed to regenerate it."""

    index: int
    kind: str  # positive | near_miss | negative | answerable | distractor | random
    item: SignedScene
    force: tuple[tuple[str, str], ...]
    sign: str | None
    answer: bool | str
    tries: int

    @property
    def meta(self) -> dict[str, object]:
        """Manifest metadata: ``render_item(seed, force, sign)`` redraws the image exactly."""
        return {"seed": self.item.seed, "difficulty": self.item.difficulty, "kind": self.kind,
                "force": [list(f) for f in self.force], "sign": self.sign,
                "sign_text": self.item.sign_text}


Want = Callable[[bool | str], bool]


def draw_item(
    qs: QuerySet, query: BenchQuery, hint: Hint | None, want: Want, rng: np.random.Generator,
    facts: dict[str, str],
) -> tuple[SignedScene, tuple[tuple[str, str], ...], str | None, bool | str, int]:
    """A scene whose answer satisfies ``want`` (rejection sampling).

    Raises:
        RuntimeError: no such scene in ``MAX_TRIES`` draws (the hints cannot produce it).
    """
    for tries in range(1, MAX_TRIES + 1):
        seed = int(rng.integers(0, 2**31 - 1))
        force, sign = hint.draw(rng) if hint else ((), "random")
        item = render_item(seed, force, sign)
        if sign not in (None, "random") and item.sign is None:
            continue  # no free space for the forced sign
        try:
            answer = evaluate(query.truth, item, facts, qs.answer_type)
        except Ambiguous:
            continue
        if want(answer):
            return item, force, sign, answer, tries
    raise RuntimeError(f"query {query.id!r}: no scene with the wanted answer in {MAX_TRIES} draws "
                       f"from hint {hint}; check its truth spec and hints")


def _pick(hints: list[Hint], rng: np.random.Generator) -> Hint:
    return hints[int(rng.integers(len(hints)))]


def item_plan(qs: QuerySet, query: BenchQuery, plan: Plan,
              rng: np.random.Generator) -> list[tuple[str, Hint | None, Want]]:
    """What each item of the stream must be: (kind, hint, wanted answer)."""
    n = plan.scenes
    out: list[tuple[str, Hint | None, Want]] = []
    if qs.answer_type == "bool":
        positives = set(rng.choice(n, size=max(1, round(n / 101)), replace=False).tolist())
        for i in range(n):
            if i in positives:
                out.append(("positive", _pick(query.positive, rng), lambda a: a is True))
            elif query.near_misses and rng.random() < plan.near_miss_rate:
                out.append(("near_miss", _pick(query.near_misses, rng), lambda a: a is False))
            else:
                out.append(("negative", None, lambda a: a is False))
        return out
    for _ in range(n):
        u = rng.random()
        if u < plan.answerable_rate:
            out.append(("answerable", _pick(query.positive, rng), lambda a: a != NA))
        elif u < plan.answerable_rate + plan.distractor_rate and query.distractors:
            out.append(("distractor", _pick(query.distractors, rng), lambda a: a == NA))
        else:
            out.append(("random", None, lambda a: True))
    return out


def query_rng(plan: Plan, query_id: str) -> np.random.Generator:
    return np.random.default_rng([plan.seed, zlib.crc32(query_id.encode())])


def draw_stream(qs: QuerySet, query: BenchQuery, plan: Plan,
                facts: dict[str, str]) -> Iterator[list[Drawn]]:
    """The stream's items, batch by batch (memory stays at one batch)."""
    rng = query_rng(plan, query.id)
    wanted = item_plan(qs, query, plan, rng)
    batch: list[Drawn] = []
    for index, (kind, hint, want) in enumerate(wanted):
        item, force, sign, answer, tries = draw_item(qs, query, hint, want, rng, facts)
        batch.append(Drawn(index, kind, item, force, sign, answer, tries))
        if len(batch) == plan.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
