"""Every reference program agrees with its truth spec when every module call is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.queryset import Hint, default_queryset, load_queryset
from benchmarks.sampling import draw_item
from benchmarks.truth import NA, load_facts, normalise_answer
from modules.executor import BatchExecutor, ItemInput
from modules.program import parse_program

from bench_oracle import Oracle

HELDOUT = Path(__file__).resolve().parents[3] / "benchmarks" / "querysets"


@pytest.mark.parametrize("path", [default_queryset("binary"), default_queryset("openform"),
                                  HELDOUT / "heldout-binary.yaml", HELDOUT / "heldout-openform.yaml"],
                         ids=lambda p: Path(p).stem)
def test_reference_programs_match_truth_on_exact_modules(path: Path) -> None:
    qs = load_queryset(path)
    facts = load_facts()
    rng = np.random.default_rng(11)
    wrong = []
    for query in qs.queries:
        drawn = []
        hint: Hint | None
        for k in range(6):  # positive / near miss or distractor / four random
            if k == 0:
                hint, want = query.positive[0], (lambda a: a is True) if qs.answer_type == "bool" else (lambda a: a != NA)
            elif k == 1:
                hints = query.near_misses if qs.answer_type == "bool" else query.distractors
                hint = hints[0] if hints else None
                want = (lambda a: a is False) if qs.answer_type == "bool" else (lambda a: a == NA)
            else:
                hint, want = None, (lambda a: True)
            item, _, _, answer, _ = draw_item(qs, query, hint, want, rng, facts)
            drawn.append((item, answer))
        oracle = Oracle([it for it, _ in drawn])
        ex = BatchExecutor(parse_program(query.program), oracle, oracle, qs.answer_type)
        outs = ex.run([ItemInput(f"i{i}", it.image, np.zeros(1)) for i, (it, _) in enumerate(drawn)])
        for (item, answer), out in zip(drawn, outs, strict=True):
            got = out.answer if qs.answer_type == "bool" else normalise_answer(str(out.answer))
            if out.status != "ok" or got != answer:
                wrong.append((query.id, item.seed, answer, out.answer, out.error))
    assert wrong == [], "\n".join(map(str, wrong))
