"""JSON Lines encoding of records: tolerant parsing that reports bad lines by number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from storage.errors import RecordError

T = TypeVar("T", bound=BaseModel)


@dataclass
class ParsedLines(Generic[T]):
    """The outcome of tolerant JSONL parsing: good records and one error per bad line."""

    records: list[T] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    def strict(self) -> list[T]:
        """Return the records, or raise the first RecordError if any line was bad."""
        if self.errors:
            first = self.errors[0]
            more = f" (and {len(self.errors) - 1} more bad lines)" if len(self.errors) > 1 else ""
            raise RecordError(first.key, first.line, first.problem + more)
        return self.records


def describe(exc: ValidationError) -> str:
    """A one-line summary of a pydantic ValidationError: ``field: message; ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            parts.append(f"not valid JSON ({err['msg']})")
            continue
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_jsonl(data: bytes, key: str, model: type[T], unique: str | None = None) -> ParsedLines[T]:
    """Parse JSONL bytes into records, keeping good lines and reporting bad ones.

    Args:
        data: the file's bytes; blank lines are ignored.
        key: the object key, for error messages.
        model: the record type of every line.
        unique: a field whose value must not repeat; the later duplicate is the error.

    Returns:
        The parsed records in file order and a RecordError per bad line.
    """
    out: ParsedLines[T] = ParsedLines()
    seen: dict[object, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = model.model_validate_json(raw)
        except ValidationError as exc:
            out.errors.append(RecordError(key, number, describe(exc)))
            continue
        if unique is not None:
            value = getattr(record, unique)
            if value in seen:
                problem = f"duplicate {unique} {value!r} (first on line {seen[value]})"
                out.errors.append(RecordError(key, number, problem))
                continue
            seen[value] = number
        out.records.append(record)
    return out


def dump_jsonl(records: Sequence[BaseModel], key: str, unique: str | None = None) -> bytes:
    """Serialise records one JSON object per line (each line ends in '\\n').

    Args:
        records: the records, in file order.
        key: the object key they will be written to, for error messages.
        unique: a field whose value must not repeat.

    Returns:
        UTF-8 JSONL bytes.

    Raises:
        RecordError: two records share the ``unique`` field (line numbers as written).
    """
    seen: dict[object, int] = {}
    lines = []
    for number, record in enumerate(records, start=1):
        if unique is not None:
            value = getattr(record, unique)
            if value in seen:
                raise RecordError(
                    key, number, f"duplicate {unique} {value!r} (first on line {seen[value]})"
                )
            seen[value] = number
        lines.append(record.model_dump_json() + "\n")
    return "".join(lines).encode()


def parse_one(data: bytes, key: str, model: type[T]) -> T:
    """Parse a single-record JSON object (reported as line 1 when invalid).

    Raises:
        RecordError: the bytes are not a valid ``model``.
    """
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise RecordError(key, 1, describe(exc)) from exc
