"""Validate a candidate program: the allowed subset, known functions, then types.

The answer of an LLM is prose around code; ``extract_code`` takes the program out of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modules.errors import ProgramError
from modules.program import Program, parse_program
from modules.synthesis.typecheck import typecheck

_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Validation:
    """The outcome of validating one candidate: its source, program (if valid) and errors."""

    source: str
    program: Program | None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.program is not None and not self.errors


def extract_code(text: str) -> str:
    """The program in an LLM answer: the first fenced block with a ``def``, else from ``def`` on."""
    blocks: list[str] = [b for b in _FENCE.findall(text) if "def " in b]
    if blocks:
        return blocks[0].strip() + "\n"
    start = text.find("def ")
    code = text[start:] if start >= 0 else text
    return code.strip().removesuffix("```").rstrip() + "\n"


def validate(source: str, answer_type: str = "bool") -> Validation:
    """Parse ``source`` in the allowed subset and type-check it against the API.

    Args:
        source: program source (already extracted from any surrounding prose).
        answer_type: what the program must return, ``bool`` or ``str``.

    Returns:
        A Validation; ``ok`` when the program parses and type-checks, otherwise ``errors``
        lists every problem as ``line L, col C: message``.
    """
    if answer_type not in ("bool", "str"):
        raise ValueError(f"answer_type must be 'bool' or 'str', got {answer_type!r}")
    try:
        program = parse_program(source)
    except ProgramError as exc:
        return Validation(source, None, [str(exc)])
    errors = typecheck(program, answer_type)
    return Validation(source, None if errors else program, errors)
