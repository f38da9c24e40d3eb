"""The sandbox: every hostile program is rejected or stopped; valid programs are unaffected."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.queries import DEMO_QUERIES
from modules.catalog import parse_catalog
from modules.executor import BatchExecutor, ItemInput, Route
from modules.interpreter import Interpreter, Limits
from modules.program import parse_program
from modules.registry import Registry
from modules.tasks import local_round_runner

from hostile_programs import CORPUS, PARSE, RUN, Hostile, outcome


def test_the_corpus_is_large_and_its_names_unique() -> None:
    names = [e.name for e in CORPUS]
    assert len(names) == len(set(names))
    assert len(CORPUS) >= 30
    print(f"\nhostile corpus: {len(CORPUS)} programs ({len(PARSE)} rejected at parse, "
          f"{len(RUN)} stopped at run time)")


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_every_hostile_program_is_stopped_with_a_clear_error(entry: Hostile) -> None:
    stage, message = outcome(entry)
    assert stage == entry.stage, message
    assert entry.message in message
    if stage == "parse":
        assert message.startswith("line "), message  # the error says where
    else:
        assert message.startswith(("line ", "find@", "exists@", "program returned")), message


class _One:
    def choose(self, item_id, site, features) -> Route:
        return Route("scripted", 1.0)


def _registry() -> Registry:
    answers = {"exists|circle": True, "exists|square": True, "exists|triangle": True,
               "find|circle": [[0, 0, 4, 4]], "find|square": [[10, 10, 14, 14]],
               "find|triangle": [[0, 0, 4, 4], [5, 5, 8, 8]], "find|object": [[0, 0, 4, 4]],
               "verify_property|circle|red": True, "verify_property|square|blue": True,
               "verify_property|triangle|green": True, "query|what colour is this?": "purple",
               "verify_property|object|yellow": False}
    return Registry(parse_catalog([{
        "name": "scripted", "kind": "fake", "answers": answers, "default": False,
        "functions": ["find", "exists", "count", "verify_property", "query", "llm_query"]}]))


def test_valid_programs_are_unaffected() -> None:
    items = [ItemInput("i0", np.zeros((16, 16, 3), np.uint8), np.zeros(2))]
    answers = []
    for query in DEMO_QUERIES:
        (out,) = BatchExecutor(parse_program(query.program), _One(), local_round_runner(_registry())).run(items)
        assert out.status == "ok", out.error
        answers.append(out.answer)
    assert answers == [True, True, False]


def test_time_waiting_on_backends_does_not_count_against_the_time_limit() -> None:
    program = parse_program('def f(image):\n    return exists(image, "circle")\n')
    run = Interpreter(program, np.zeros((4, 4, 3), np.uint8), Limits(max_seconds=0.05)).run()
    next(run)
    import time

    time.sleep(0.1)  # a slow backend
    with pytest.raises(StopIteration) as stop:
        run.send(True)
    assert stop.value.value is True


def test_large_but_bounded_values_are_allowed() -> None:
    program = parse_program('def f(image):\n    s = "ab"\n    for a in find(image, "a"):\n'
                            '        s = s + s\n    return len(s) == 8192\n')
    registry = Registry(parse_catalog([{"name": "scripted", "kind": "fake", "functions": ["find"],
                                        "answers": {"find|a": [[0, 0, 1, 1]] * 12}}]))
    items = [ItemInput("i0", np.zeros((4, 4, 3), np.uint8), np.zeros(2))]
    (out,) = BatchExecutor(program, _One(), local_round_runner(registry)).run(items)
    assert (out.status, out.answer) == ("ok", True)
