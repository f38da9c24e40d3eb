"""Program parsing: call sites by AST position, and everything outside the subset rejected."""

from __future__ import annotations

import pytest

from modules.errors import ProgramError
from modules.program import parse_program

PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    for c in find(image, "circle"):
        if verify_property(c, "circle", "red") and exists(c, "circle"):
            return True
    return False
'''


def test_call_sites_are_named_by_position_in_source_order() -> None:
    program = parse_program(PROGRAM)
    assert [s.id for s in program.call_sites] == [
        "exists@2:11", "find@4:13", "verify_property@5:11", "exists@5:51"]
    assert [s.function for s in program.call_sites] == ["exists", "find", "verify_property", "exists"]


def test_same_arguments_at_two_places_are_two_call_sites() -> None:
    program = parse_program('def f(image):\n    return exists(image, "a") and exists(image, "a")\n')
    assert [s.id for s in program.call_sites] == ["exists@2:11", "exists@2:34"]


def test_program_id_is_stable_hash_of_source() -> None:
    assert parse_program(PROGRAM).program_id == parse_program(PROGRAM).program_id
    assert len(parse_program(PROGRAM).program_id) == 16


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1", "exactly one function definition"),
        ("def f(a, b):\n    return True", "exactly one plain parameter"),
        ("def f(image):\n    import os", "statement `Import` is not allowed"),
        ("def f(image):\n    while True:\n        pass", "statement `While` is not allowed"),
        ("def f(image):\n    return eval('1')", "unknown function `eval`"),
        ("def f(image):\n    return open('x')", "unknown function `open`"),
        ("def f(image):\n    return image.__class__", "attribute `.__class__` is not allowed"),
        ("def f(image):\n    return _secret", "name `_secret` is not allowed"),
        ("def f(image):\n    return [c for c in find(image, 'a')]", "expression `ListComp`"),
        ("def f(image):\n    return lambda: 1", "expression `Lambda`"),
        ("def f(image):\n    return exists(image)", "exists() takes 2 arguments, got 1"),
        ("def f(image):\n    return exists(image, name='a')", "keyword arguments are not allowed"),
        ("def f(image):\n    image.x0 = 3", "assign to a single plain name only"),
        ("def f(image):\n    return image.save()", "method `.save()` is not allowed"),
        ("def f(image):\n    def g():\n        pass", "statement `FunctionDef` is not allowed"),
        ("def f(image):\n    with x:\n        pass", "statement `With` is not allowed"),
        ("def f(image)\n    return 1", "syntax error"),
    ],
)
def test_constructs_outside_the_subset_are_rejected_with_position(source: str, message: str) -> None:
    with pytest.raises(ProgramError, match="line ") as info:
        parse_program(source)
    assert message in str(info.value)
