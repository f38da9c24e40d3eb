"""Validation: subset, known functions, and type-checking against the API."""

from __future__ import annotations

import pytest

from benchmarks.queries import DEMO_QUERIES
from modules.synthesis import extract_code, validate
from modules.synthesis.api import EXAMPLES, system_prompt

HEAD = "def execute_command(image):\n"


@pytest.mark.parametrize("query", DEMO_QUERIES, ids=[q.query_id for q in DEMO_QUERIES])
def test_the_reference_and_monolithic_programs_validate(query) -> None:
    assert validate(query.program).errors == []
    assert validate(query.monolithic_program).errors == []


def test_the_prompt_examples_validate_and_appear_in_the_prompt() -> None:
    prompt = system_prompt()
    for question, program in EXAMPLES:
        assert validate(program).ok
        assert f"Question: {question}\n```python\n{program}```" in prompt


@pytest.mark.parametrize(("body", "error"), [
    ("    return query(image, 'q') == True\n",
     "line 2, col 11: comparing a str with a bool is always False"),
    ("    for c in find(image, 'c'):\n        if c:\n            return True\n    return False\n",
     "line 3, col 11: a patch has no truth value; test it with a function such as exists(patch, name) "
     "or verify_property(patch, name, property)"),
    ("    return exists('image', 'c')\n", "line 2, col 18: exists() argument 1 must be a patch, got a str"),
    ("    return verify_property(image, 'c', 3)\n",
     "line 2, col 39: verify_property() argument 3 must be a str, got an int"),
    ("    return image.left_of(1)\n", "line 2, col 25: .left_of() argument 1 must be a patch, got an int"),
    ("    return exists(image.crop(0, 0, 1), 'a')\n",
     "line 2, col 18: .crop() takes 4 arguments (int, int, int, int), got 3"),
    ("    n = count(image, 'c')\n    return n.above(image)\n",
     "line 3, col 11: `.above()` is a patch method; it was called on an int"),
    ("    if exists(image, 'a'):\n        x = True\n    return x\n",
     "line 4, col 11: `x` may be unassigned here: it is only assigned on some paths (inside an "
     "if-branch or a loop); assign it before"),
    ("    return y\n", "line 2, col 11: name `y` is not defined"),
    ("    return count(image, 'c')\n", "line 2, col 4: the program must return a bool; this returns an int"),
    ("    if exists(image, 'c'):\n        return True\n",
     "line 1, col 0: the program can reach its end without returning a bool; end it with `return False`"),
    ("    return 'a' + 1 > 0\n", "line 2, col 11: cannot apply `+` to a str and an int"),
    ("    return count(image, 'c') < 'two'\n",
     "line 2, col 11: cannot order an int and a str; `<`, `>` compare numbers or strings"),
    ("    for c in query(image, 'q'):\n        return True\n    return False\n",
     "line 2, col 13: for-loops iterate over lists; this is a str"),
    ("    return exists(image, '')\n", "line 2, col 25: exists() needs a non-empty string here"),
    ("    return find(image, 'a')[0.5].area == 1\n", "line 2, col 28: index with an int, not a float"),
    ("    return len(count(image, 'a')) > 0\n", "line 2, col 11: len() takes one list or string, got ['int']"),
    ("    return f'{image}' == 'x'\n", "line 2, col 11: f-strings format strings and numbers only, not a patch"),
    ("    return import_me(image)\n", "line 2, col 11: unknown function `import_me`"),
])
def test_type_errors_are_reported_with_their_position(body: str, error: str) -> None:
    result = validate(HEAD + body)
    assert not result.ok
    assert error in result.errors[0] if "unknown function" in error else result.errors == [error]


def test_a_loop_variable_is_typed_by_its_list_and_numbers_mix() -> None:
    body = ("    total = 0\n    for c in find(image, 'c'):\n        total = total + c.center_x / 2\n"
            "    first = find(image, 'c')[0] if count(image, 'c') > 0 else image\n"
            "    return total > 1.5 and first.area >= 4 and max(1, 2.5) < abs(-3)\n")
    assert validate(HEAD + body).errors == []


def test_a_str_program_must_return_str() -> None:
    assert validate(HEAD + "    return query(image, 'what colour?')\n", "str").ok
    assert validate(HEAD + "    return True\n", "str").errors == [
        "line 2, col 4: the program must return a str; this returns a bool"]
    with pytest.raises(ValueError, match="answer_type must be 'bool' or 'str'"):
        validate(HEAD + "    return True\n", "int")


@pytest.mark.parametrize(("text", "code"), [
    ("Sure!\n```python\ndef f(image):\n    return True\n```\nDone.", "def f(image):\n    return True\n"),
    ("```\ndef f(image):\n    return True\n```", "def f(image):\n    return True\n"),
    ("```python\nx = 1\n```\n```py\ndef g(image):\n    return False\n```", "def g(image):\n    return False\n"),
    ("The program is:\ndef f(image):\n    return True", "def f(image):\n    return True\n"),
    ("no code at all", "no code at all\n"),
])
def test_code_is_extracted_from_prose_and_fences(text: str, code: str) -> None:
    assert extract_code(text) == code
