"""The grammar compiler: deterministic programs for the benchmark's questions, offline."""

from __future__ import annotations

import pytest

from benchmarks.queries import QUERIES
from modules.synthesis import GrammarError, SynthesisError, make_synthesizer, synthesize, validate
from modules.synthesis.grammar import compile_task


def test_it_writes_the_reference_programs_of_two_benchmark_queries() -> None:
    for qid in ("red_circle_left_of_blue_square", "two_triangles_one_green"):
        assert compile_task(QUERIES[qid].question) == QUERIES[qid].program


def test_the_issue_example_compiles_validates_and_reads_as_expected() -> None:
    result = synthesize("Is there a red triangle left of a blue circle?", make_synthesizer("grammar"))
    assert len(result.attempts) == 1
    assert result.source == '''def execute_command(image):
    if not exists(image, "triangle"):
        return False
    if not exists(image, "circle"):
        return False
    for triangle in find(image, "triangle"):
        if verify_property(triangle, "triangle", "red"):
            for circle in find(image, "circle"):
                if triangle.left_of(circle) and verify_property(circle, "circle", "blue"):
                    return True
    return False
'''
    assert [s.id for s in result.program.call_sites] == [
        "exists@2:11", "exists@4:11", "find@6:20", "verify_property@7:11", "find@8:26",
        "verify_property@9:48"]


@pytest.mark.parametrize(("text", "expected"), [
    ("Is there a circle?", 'def execute_command(image):\n    return exists(image, "circle")\n'),
    ("are there exactly 3 squares", 'def execute_command(image):\n    return count(image, "square") == 3\n'),
    ("Are there more than two objects?", 'def execute_command(image):\n    return count(image, "object") > 2\n'),
])
def test_simple_questions_become_single_calls(text: str, expected: str) -> None:
    assert compile_task(text) == expected


@pytest.mark.parametrize("text", [
    "Is there a red circle?", "Is there a yellow object above a purple circle?",
    "Is there a red circle to the right of a red circle?", "Is there a green triangle and a red circle?",
    "Are there at most four triangles, one of them orange?", "Is there a blue square below an object?",
    "IS THERE A RED COLOR CIRCLE LEFT OF A BLUE SQUARE?".replace(" COLOR", ""),
])
def test_every_grammar_program_validates(text: str) -> None:
    assert validate(compile_task(text)).errors == []


def test_same_shape_relations_name_the_second_object_other() -> None:
    src = compile_task("Is there a red circle to the right of a red circle?")
    assert 'for other in find(image, "circle"):' in src
    assert "circle.right_of(other) and verify_property(other, \"circle\", \"red\")" in src


@pytest.mark.parametrize("text", ["How many circles are red?", "Is there a pink circle?",
                                  "Is the circle left of the square?", ""])
def test_questions_outside_the_grammar_are_refused_clearly(text: str) -> None:
    with pytest.raises(SynthesisError) as info:
        synthesize(text, make_synthesizer("grammar"))
    if text:
        assert isinstance(info.value, GrammarError)
        assert str(info.value).startswith(f"the grammar compiler does not understand {text!r}")
    else:
        assert "the task text is empty" in str(info.value)


def test_the_grammar_writes_yes_no_programs_only() -> None:
    with pytest.raises(GrammarError, match="yes/no programs only"):
        synthesize("Is there a circle?", make_synthesizer("grammar"), answer_type="str")


def test_unknown_synthesizers_and_missing_endpoints_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMP_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("FMP_LLM_MODEL", raising=False)
    valid = r"\['grammar', 'openai', 'transformers'\]"
    with pytest.raises(SynthesisError, match=rf"unknown synthesizer 'gpt'; valid: {valid}"):
        make_synthesizer("gpt")
    with pytest.raises(SynthesisError, match="set FMP_LLM_BASE_URL and FMP_LLM_MODEL"):
        make_synthesizer("openai")
    with pytest.raises(SynthesisError, match="needs a local model path: set FMP_LLM_MODEL"):
        make_synthesizer("transformers")


def test_the_refusal_fits_the_cli_error_line_whole() -> None:
    from flows.cli import one_line

    with pytest.raises(GrammarError) as info:
        compile_task("How many red things are there?")
    line = one_line(info.value)
    assert "--debug shows the rest" not in line and line.endswith("blue, purple")
    assert "yes/no questions only (others need --synthesizer openai or transformers)" in line
