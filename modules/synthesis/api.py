"""The runtime's API as an LLM sees it, and as the type checker sees it.

One table of signatures feeds both the prompt text and ``typecheck``; change a function
here and both follow. Types are the strings ``patch``, ``bool``, ``int``, ``float``,
``str``, ``none``, ``list[T]`` and ``any`` (unknown).
"""

from __future__ import annotations

from modules.backends.base import FUNCTIONS
from modules.patch import PATCH_ATTRIBUTES, PATCH_METHODS
from modules.program import ARITY, BUILTINS

#: Bumped whenever the prompt text changes: stored with every synthesized program.
PROMPT_VERSION = "api-prompt/2"

#: Generic functions: argument types and return type.
FUNCTION_SIGNATURES: dict[str, tuple[tuple[str, ...], str]] = {
    "find": (("patch", "str"), "list[patch]"),
    "exists": (("patch", "str"), "bool"),
    "count": (("patch", "str"), "int"),
    "verify_property": (("patch", "str", "str"), "bool"),
    "query": (("patch", "str"), "str"),
    "llm_query": (("str",), "str"),
    "read_text": (("patch",), "str"),
}
FUNCTION_DOCS: dict[str, str] = {
    "find": "find(patch, name) -> list[patch]: every object called `name` inside the patch",
    "exists": "exists(patch, name) -> bool: is there an object called `name` in the patch?",
    "count": "count(patch, name) -> int: how many objects called `name` are in the patch",
    "verify_property": "verify_property(patch, name, property) -> bool: does the `name` in the "
                       "patch have `property` (a colour such as \"red\")?",
    "query": "query(patch, question) -> str: a short answer to a question about the patch",
    "llm_query": "llm_query(question) -> str: a short answer from a language model (no image)",
    "read_text": "read_text(patch) -> str: the text written in the patch, upper case words "
                 "joined by one space (\"\" if none), e.g. \"STOP\"",
}
#: Patch methods: argument types and return type.
METHOD_SIGNATURES: dict[str, tuple[tuple[str, ...], str]] = {
    "left_of": (("patch",), "bool"),
    "right_of": (("patch",), "bool"),
    "above": (("patch",), "bool"),
    "below": (("patch",), "bool"),
    "overlaps": (("patch",), "bool"),
    "crop": (("int", "int", "int", "int"), "patch"),
}
ATTRIBUTE_TYPES: dict[str, str] = {
    "x0": "int", "y0": "int", "x1": "int", "y1": "int", "width": "int", "height": "int",
    "area": "int", "center_x": "float", "center_y": "float",
}
# The tables must cover the runtime exactly; a drift would let prompts promise what the parser rejects.
assert set(FUNCTION_SIGNATURES) == set(FUNCTIONS) == set(ARITY)
assert all(len(a) == ARITY[f] for f, (a, _) in FUNCTION_SIGNATURES.items())
assert set(METHOD_SIGNATURES) == PATCH_METHODS and set(ATTRIBUTE_TYPES) == PATCH_ATTRIBUTES

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Is there a green square above a red triangle?", '''def execute_command(image):
    if not exists(image, "square"):
        return False
    if not exists(image, "triangle"):
        return False
    for square in find(image, "square"):
        if verify_property(square, "square", "green"):
            for triangle in find(image, "triangle"):
                if square.above(triangle) and verify_property(triangle, "triangle", "red"):
                    return True
    return False
'''),
    ("Are there at least three circles, one of them blue?", '''def execute_command(image):
    circles = find(image, "circle")
    if len(circles) < 3:
        return False
    for circle in circles:
        if verify_property(circle, "circle", "blue"):
            return True
    return False
'''),
)


def api_text() -> str:
    """The API reference part of the system prompt."""
    lines = ["Functions (the image patch is always the first argument):"]
    lines += [f"  {FUNCTION_DOCS[f]}" for f in FUNCTION_SIGNATURES]
    lines.append("Patch attributes: " + ", ".join(
        f"{a} ({t})" for a, t in ATTRIBUTE_TYPES.items()))
    lines.append("Patch methods: " + ", ".join(
        f"{m}({', '.join(args)}) -> {ret}" for m, (args, ret) in METHOD_SIGNATURES.items()))
    lines.append("Helpers: " + ", ".join(sorted(BUILTINS)) + " (as in Python).")
    return "\n".join(lines)


RULES = """Rules:
- Answer with exactly one function `def execute_command(image):` in a ```python block.
- Allowed: assignments to plain names, if/elif/else, for-loops over lists, return, and/or/not,
  comparisons, + - * / // %, lists, indexing with an int, f-strings.
- Not allowed: imports, while-loops, nested functions, lambdas, comprehensions, slicing,
  keyword arguments, attributes other than those listed, names starting with an underscore.
- Check cheap existence first and return early, as in the examples.
- Every path must return a {answer_type}."""


def system_prompt(answer_type: str = "bool") -> str:
    """The system message: role, API, rules and worked examples."""
    examples = "\n\n".join(f"Question: {q}\n```python\n{p}```" for q, p in EXAMPLES)
    return ("You translate a question about an image into a short Python program that answers "
            f"it by calling vision and language models through this API.\n\n{api_text()}\n\n"
            f"{RULES.format(answer_type=answer_type)}\n\nExamples:\n\n{examples}")


def task_prompt(task_text: str) -> str:
    """The user message for a task."""
    return f"Question: {task_text.strip()}"


def repair_prompt(errors: list[str]) -> str:
    """The user message that sends validation errors back for a repair."""
    listed = "\n".join(f"- {e}" for e in errors)
    return ("Your program was rejected:\n" + listed +
            "\nReturn the whole corrected program in one ```python block.")
