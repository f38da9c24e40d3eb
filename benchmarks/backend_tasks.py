"""Per-function test sets on Track S with exact answers, for measuring each backend.

Every set is seeded and balanced over difficulty (easy / medium / hard):

* ``detection``: whole scenes; ``count(image, shape)`` for each shape must equal the number of
  visible objects of that shape (scenes where a half-hidden object makes it uncertain are
  skipped); ``exists`` is scored too.
* ``attributes``: crops of visible objects; ``query(crop, "what colour/shape is this?")``.
* ``ocr``: scenes with a sign; ``read_text(image)`` must equal the sign's word.
* ``knowledge``: ``llm_query`` on the benchmark fact table's questions, asked as stored (easy),
  lightly reworded (medium) or in other words (hard), plus questions it cannot answer
  ("unknown" expected; sliced as hard).
* ``vqa``: binary benchmark items, half positive; the one-call model answers the question.
* ``vqa-open``: open-form benchmark items (a third answerable, a third look-alikes answering
  "N/A", a third random); the one-call model's answer must match exactly (normalised).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.queryset import QuerySet
from benchmarks.sampling import Want, draw_item
from benchmarks.scenes import DIFFICULTIES, SHAPES
from benchmarks.signs import SIGN_WORDS, render_item
from benchmarks.truth import FACTS_FILE, HIDDEN, NA, VISIBLE
from modules.backends.base import Call


@dataclass(frozen=True, eq=False)
class Case:
    """One call with its exact expected answer."""

    call: Call
    expected: Any
    difficulty: str


def _scenes(n_per: int, seed: int, sign: str | None = None) -> list[Any]:
    out = []
    for d_i, d in enumerate(DIFFICULTIES):
        for i in range(n_per):
            s = seed * 100_003 + d_i * 10_007 + i
            word = SIGN_WORDS[s % len(SIGN_WORDS)] if sign == "cycle" else sign
            out.append(render_item(s, (), word, difficulty=d))
    return out


def detection_cases(n_per: int, seed: int) -> list[Case]:
    cases = []
    for item in _scenes(n_per, seed, sign="random"):
        for shape in SHAPES:
            sure = sum(1 for o in item.objects if o.shape == shape and o.occlusion <= VISIBLE)
            maybe = sum(1 for o in item.objects if o.shape == shape and VISIBLE < o.occlusion <= HIDDEN)
            if maybe:
                continue
            cases.append(Case(Call("count", item.image, (shape,)), sure, item.difficulty))
            cases.append(Case(Call("exists", item.image, (shape,)), sure > 0, item.difficulty))
    return cases


def attribute_cases(n_per: int, seed: int) -> list[Case]:
    cases = []
    for item in _scenes(n_per, seed + 1):
        for o in item.objects:
            if o.occlusion > 0.2:
                continue
            x0, y0, x1, y1 = o.box
            crop = item.image[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1]
            cases.append(Case(Call("query", crop, ("what colour is this?",)), o.colour, item.difficulty))
            cases.append(Case(Call("query", crop, ("what shape is this?",)), o.shape, item.difficulty))
    return cases


def ocr_cases(n_per: int, seed: int) -> list[Case]:
    return [Case(Call("read_text", item.image, ()), item.sign_text, item.difficulty)
            for item in _scenes(n_per, seed + 2, sign="cycle") if item.sign is not None]


#: (stored wording, light rewording, other words) of every fact-table question family.
PHRASINGS: tuple[tuple[str, str, str], ...] = (
    ("How many sides does a {} have?", "How many sides has a {} got?", "Count the edges of a {}."),
    ("How many corners does a {} have?", "How many corners has a {} got?",
     "How many vertices does a {} have?"),
    ("What is the sum of the interior angles of a {} in degrees?",
     "What is the sum of the angles of a {} in degrees?", "What do the angles of a {} add up to in degrees?"),
    ("Is {} a primary colour?", "Is {} a primary color?", "Is {} one of the primary colours?"),
    ("Is {} a warm colour?", "Is the colour {} warm?", "Does {} count as a warm hue?"),
    ("What is the complementary colour of {}?", "What is the complementary color of {}?",
     "Which colour is opposite {} on the colour wheel?"),
    ("What colour do you get by mixing {} and {}?", "What colour results from mixing {} and {}?",
     "If you blend {} paint with {} paint, what colour appears?"),
    ("What colour is a {}?", "What is the colour of a {}?", "What hue does a {} have?"),
    ("Which fruit is {}?", "Name a fruit that is {}.", "Which fruit has a {} colour?"),
)
UNANSWERABLE = ("What colour is a stop?", "How many sides does a hexagon have?",
                "Is taxi a warm colour?", "What colour do you get by mixing green and orange?",
                "What is the sum of the interior angles of a circle in degrees?", "Which fruit is grey?")


def _fill(template: str, question: str) -> list[str] | None:
    """The arguments of ``question`` if it is ``template`` filled in, else None."""
    import re

    pattern = "^" + re.escape(template).replace(r"\{\}", "(.+?)") + "$"
    m = re.match(pattern, question)
    return list(m.groups()) if m else None


def knowledge_cases_from(table: dict[str, str]) -> list[Case]:
    """Every stored question in three wordings, and the unanswerable ones."""
    cases = []
    for question, answer in table.items():
        for family in PHRASINGS:
            args = _fill(family[0], question)
            if args is None:
                continue
            for difficulty, wording in zip(DIFFICULTIES, family, strict=True):
                cases.append(Case(Call("llm_query", None, (wording.format(*args),)), answer, difficulty))
            break
    cases += [Case(Call("llm_query", None, (q,)), "unknown", "hard") for q in UNANSWERABLE]
    return cases


def _is(value: bool) -> Want:
    """The wanted-answer test ``answer is value``."""
    return lambda a: a is value


def vqa_cases(qs: QuerySet, per_query: int, seed: int, facts: dict[str, str]) -> list[Case]:
    """Binary benchmark items, half positive, for the one-call (monolithic) model."""
    rng = np.random.default_rng([seed, 4])
    cases = []
    for query in qs.queries:
        for k in range(per_query):
            positive = k % 2 == 0
            hint = query.positive[k % len(query.positive)] if positive else None
            item, *_ = draw_item(qs, query, hint, _is(positive), rng, facts)
            cases.append(Case(Call("query", item.image, (query.question,)),
                              "yes" if positive else "no", item.difficulty))
    return cases


def vqa_open_cases(qs: QuerySet, per_query: int, seed: int, facts: dict[str, str]) -> list[Case]:
    """Open-form benchmark items for the one-call model: answerable, look-alike ("N/A"), random."""
    rng = np.random.default_rng([seed, 5])
    cases = []
    for query in qs.queries:
        for k in range(per_query):
            kind = k % 3
            hint = (query.positive[k % len(query.positive)] if kind == 0 else
                    query.distractors[k % len(query.distractors)] if kind == 1 and query.distractors
                    else None)
            want = ((lambda a: a != NA) if kind == 0 else (lambda a: a == NA) if hint is not None
                    else (lambda a: True))
            item, _, _, answer, _ = draw_item(qs, query, hint, want, rng, facts)
            cases.append(Case(Call("query", item.image, (query.question,)), answer, item.difficulty))
    return cases


def load_table() -> dict[str, str]:
    table: dict[str, str] = json.loads(FACTS_FILE.read_text())
    return table
