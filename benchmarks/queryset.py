"""Benchmark query sets as files: questions, reference programs, truth specs, sampling hints.

A query set is a YAML (or JSON) file, ``benchmarks/querysets/binary.yaml`` and
``openform.yaml`` ship with fmp; ``--queries FILE`` runs any other without code changes::

    benchmark: binary            # or openform
    answer_type: bool            # or str
    scenes: 2000                 # default scenes per query
    queries:
      - id: red_circle_left_of_blue_square
        question: Is there a red circle to the left of a blue square?
        reasoning: spatial       # spatial | logical | numerical | comparison | knowledge
        program: |               # the reference program, in the runtime's language
          def execute_command(image): ...
        truth: {exists: {shape: circle, colour: red, left_of: {shape: square, colour: blue}}}
        positive: [{objects: [[circle, red], [square, blue]]}]      # hints: make it likely true
        near_misses: [{objects: [[circle, orange], [square, blue]]}]  # close, but false
        distractors: []          # open-form: look-alikes whose answer is N/A

A hint forces objects (``any`` for a random shape or colour) and a sign (a word, a list to
choose from, ``null`` for none, ``random`` by default). ``truth`` is a spec of
``benchmarks.truth``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from benchmarks.scenes import COLOURS, MAX_OBJECTS, SHAPES
from benchmarks.signs import SIGN_WORDS
from modules.errors import ProgramError
from modules.program import parse_program

QUERYSETS = Path(__file__).parent / "querysets"
REASONING = ("spatial", "logical", "numerical", "comparison", "knowledge")


class Hint(BaseModel):
    """Objects and a sign to force into a scene."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objects: list[tuple[str, str]] = Field(default_factory=list, max_length=MAX_OBJECTS)
    sign: str | list[str] | None = "random"

    @model_validator(mode="after")
    def _known(self) -> Hint:
        for shape, colour in self.objects:
            if shape not in SHAPES + ("any",) or colour not in COLOURS + ("any",):
                raise ValueError(f"unknown object ({shape}, {colour}); shapes {list(SHAPES)}, "
                                 f"colours {list(COLOURS)}, or 'any'")
        words = self.sign if isinstance(self.sign, list) else [self.sign]
        bad = [w for w in words if w not in SIGN_WORDS and w not in (None, "random")]
        if bad:
            raise ValueError(f"unknown sign words {bad}; valid: {list(SIGN_WORDS)}, null, random")
        return self

    def draw(self, rng: np.random.Generator) -> tuple[tuple[tuple[str, str], ...], str | None]:
        """Concrete (force objects, sign) for one scene."""
        force = tuple((SHAPES[int(rng.integers(3))] if s == "any" else s,
                       COLOURS[int(rng.integers(6))] if c == "any" else c) for s, c in self.objects)
        sign = self.sign[int(rng.integers(len(self.sign)))] if isinstance(self.sign, list) else self.sign
        return force, sign


class BenchQuery(BaseModel):
    """One benchmark query."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]{1,48}$")
    question: str = Field(min_length=5)
    reasoning: Literal["spatial", "logical", "numerical", "comparison", "knowledge"]
    program: str
    truth: Any
    positive: list[Hint] = Field(default_factory=list)
    near_misses: list[Hint] = Field(default_factory=list)
    distractors: list[Hint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _program_parses(self) -> BenchQuery:
        try:
            parse_program(self.program)
        except ProgramError as exc:
            raise ValueError(f"query {self.id!r}: program does not parse: {exc}") from exc
        if not self.positive:
            raise ValueError(f"query {self.id!r}: needs at least one positive hint")
        return self

    def monolithic_program(self, answer_type: str) -> str:
        """The one-call baseline: a single image+question model answers directly."""
        q = self.question.replace("\\", "\\\\").replace('"', '\\"')
        if answer_type == "bool":
            return f'def execute_command(image):\n    return query(image, "{q}") == "yes"\n'
        return f'def execute_command(image):\n    return query(image, "{q}")\n'


class QuerySet(BaseModel):
    """A benchmark's queries (one file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    benchmark: Literal["binary", "openform"]
    answer_type: Literal["bool", "str"]
    scenes: int = Field(gt=0, description="Default scenes per query.")
    queries: list[BenchQuery] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> QuerySet:
        ids = [q.id for q in self.queries]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate query ids {dupes}")
        if (self.benchmark == "binary") != (self.answer_type == "bool"):
            raise ValueError("binary benchmarks answer bool; openform ones answer str")
        return self


def load_queryset(path: Path | str) -> QuerySet:
    """Read and validate a query-set file; ValueError names the file and what is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
        return QuerySet.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read query set: {exc}") from exc
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid query set: {exc}") from exc


def default_queryset(benchmark: str) -> Path:
    return QUERYSETS / f"{benchmark}.yaml"
