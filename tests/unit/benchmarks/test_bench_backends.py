"""The backend measurement helpers: catalogs, task sets, scoring, early-exit removal."""

from __future__ import annotations

from benchmarks import backend_tasks as tasks
from benchmarks.backends import bench_specs, score, strip_early_exits, task_of
from benchmarks.queryset import default_queryset, load_queryset
from modules.program import parse_program


def test_benchmark_catalog_replaces_the_fact_tables() -> None:
    names = [s.name for s in bench_specs()]
    assert {"ocr-tess", "ocr-pprec", "ocr-rapid", "kb-exact", "kb-overlap", "kb-minilm"} <= set(names)
    assert "facts-exact" not in names and "facts-exact" in [s.name for s in bench_specs(all_llm=True)]
    tasks_by_name = {s.name: task_of(s) for s in bench_specs()}
    assert (tasks_by_name["ocr-rapid"], tasks_by_name["kb-minilm"], tasks_by_name["vqa-mono"]) == ("ocr", "knowledge", "vqa")


def test_strip_early_exits_drops_only_cheap_guards() -> None:
    program = load_queryset(default_queryset("binary")).queries[0].program
    stripped = strip_early_exits(program)
    assert "exists" not in stripped and stripped.count("find(") == 2
    assert [s.function for s in parse_program(stripped).call_sites] == [
        "find", "verify_property", "find", "verify_property"]
    guard = 'def f(image):\n    if len(find(image, "x")) == 0:\n        return "N/A"\n    return "y"\n'
    assert strip_early_exits(guard) == "def f(image):\n    return 'y'\n"


def test_task_sets_are_exact_and_balanced() -> None:
    knowledge = tasks.knowledge_cases_from(tasks.load_table())
    assert len(knowledge) == 46 * 3 + len(tasks.UNANSWERABLE)
    first = [(c.call.args[0], c.expected, c.difficulty) for c in knowledge[:3]]
    assert first == [("How many sides does a triangle have?", "3", "easy"),
                     ("How many sides has a triangle got?", "3", "medium"),
                     ("Count the edges of a triangle.", "3", "hard")]
    ocr = tasks.ocr_cases(2, 0)
    assert {c.difficulty for c in ocr} <= {"easy", "medium", "hard"} and all(c.expected for c in ocr)
    det = tasks.detection_cases(1, 0)
    assert {c.call.function for c in det} == {"count", "exists"}


def test_score_normalises_strings_only() -> None:
    assert score(" Yellow.", "yellow") and score(True, True) and not score(False, True)
    assert not score("n/a", "no")
