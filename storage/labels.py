"""Label files from users: JSONL ``{"item": ..., "label": ...}`` or CSV ``item,label``.

``parse_label_file`` reads either format (by the file name's ending, else by its first line)
and rejects a file with malformed lines, naming every bad line's number. ``write_stream_labels``
files the labels where the feedback flow reads them (``streams/<s>/feedback/<batch>/labels.jsonl``,
one file per batch), merged with the labels already there: labels may name any subset of
the stream's items and arrive at any time; a later label for an item replaces the earlier one.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from storage import batches
from storage.base import ObjectStore
from storage.errors import ObjectNotFound, StorageError
from storage.records import Label
from storage.sources import stream_items, valid_item_id

AnswerType = Literal["bool", "str"]
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
#: At most this many bad lines are spelled out in the error (all are counted).
SHOWN_ERRORS = 5


class LabelFileError(StorageError, ValueError):
    """A label file with malformed lines; ``lines`` holds (line number, problem) for each."""

    def __init__(self, name: str, lines: list[tuple[int, str]]) -> None:
        self.name = name
        self.lines = lines
        shown = "; ".join(f"line {n}: {problem}" for n, problem in lines[:SHOWN_ERRORS])
        more = f"; and {len(lines) - SHOWN_ERRORS} more" if len(lines) > SHOWN_ERRORS else ""
        super().__init__(f"{name}: {len(lines)} malformed line{'s' if len(lines) != 1 else ''}, "
                         f"nothing written: {shown}{more}")


class UnknownItems(StorageError, ValueError):
    """Labels for items that are in none of the stream's batches."""


@dataclass(frozen=True)
class LabelLine:
    """One label as read: its line number in the file, the item id, the answer."""

    line: int
    item: str
    answer: bool | str


@dataclass(frozen=True)
class LabelsWritten:
    """What ``write_stream_labels`` changed, per batch: new, changed and unchanged labels."""

    stream: str
    new: dict[str, int]
    changed: dict[str, int]
    unchanged: int

    @property
    def batches(self) -> list[str]:
        return sorted(set(self.new) | set(self.changed))


def convert_answer(value: object, answer_type: AnswerType) -> bool | str:
    """A label value as the stream's answer type: yes/no/true/false/1/0 for ``bool``.

    Raises:
        ValueError: the value does not read as that type.
    """
    if answer_type == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"label {value!r} is not yes/no (the stream's answers are yes/no: "
                         "true, false, yes, no, 1 or 0)")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"label {value!r} is not a non-empty text (the stream's answers are text)")
    return value.strip()


def _check_item(item: object) -> str:
    if not isinstance(item, str) or not valid_item_id(item):
        raise ValueError(f"item {item!r} is not an item id (an image path relative to the "
                         "source: names of A-Z a-z 0-9 _ . - separated by /)")
    return item


def _jsonl(text: str, answer_type: AnswerType) -> tuple[list[LabelLine], list[tuple[int, str]]]:
    good, bad = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            bad.append((number, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict) or set(record) != {"item", "label"}:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            bad.append((number, f'expected an object with keys "item" and "label", got {keys}'))
            continue
        try:
            good.append(LabelLine(number, _check_item(record["item"]),
                                  convert_answer(record["label"], answer_type)))
        except ValueError as exc:
            bad.append((number, str(exc)))
    return good, bad


def _csv(text: str, answer_type: AnswerType) -> tuple[list[LabelLine], list[tuple[int, str]]]:
    good, bad = [], []
    reader = csv.reader(io.StringIO(text))
    first = True
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if first and [c.lower() for c in cells] == ["item", "label"]:
            first = False  # the header
            continue
        first = False
        if len(cells) != 2:
            bad.append((number, f"expected 2 fields item,label, got {len(cells)}"))
            continue
        try:
            good.append(LabelLine(number, _check_item(cells[0]), convert_answer(cells[1], answer_type)))
        except ValueError as exc:
            bad.append((number, str(exc)))
    return good, bad


def parse_label_file(data: bytes, name: str, answer_type: AnswerType) -> list[LabelLine]:
    """Parse a label file: JSONL when ``name`` ends in .jsonl/.json or the first line starts
    with ``{``, else CSV (an ``item,label`` header line is optional).

    Raises:
        LabelFileError: any line is malformed (bad JSON or CSV fields, a bad item id, a label
            that is not of the stream's answer type, an item labelled twice); names each line.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(name, [(data[:exc.start].count(b"\n") + 1, "not UTF-8 text")]) from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    is_jsonl = name.lower().endswith((".jsonl", ".json")) or (
        not name.lower().endswith(".csv") and first.startswith("{"))
    good, bad = (_jsonl if is_jsonl else _csv)(text, answer_type)
    seen: dict[str, int] = {}
    for label in good:
        if label.item in seen:
            bad.append((label.line, f"item {label.item!r} is labelled again (first on line "
                                    f"{seen[label.item]})"))
        seen.setdefault(label.item, label.line)
    if bad:
        raise LabelFileError(name, sorted(bad))
    if not good:
        raise LabelFileError(name, [(1, "no labels in the file")])
    return good


def write_stream_labels(store: ObjectStore, stream: str, labels: list[LabelLine]) -> LabelsWritten:
    """File labels under their items' batches, merged with the labels already there.

    Raises:
        UnknownItems: a label names an item in none of the stream's batches (nothing written).
    """
    where = stream_items(store, stream)
    unknown = [lab.item for lab in labels if lab.item not in where]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:SHOWN_ERRORS])
        more = f" and {len(unknown) - SHOWN_ERRORS} more" if len(unknown) > SHOWN_ERRORS else ""
        raise UnknownItems(f"{len(unknown)} label{'s' if len(unknown) != 1 else ''} for items not in "
                           f"stream {stream!r}: {shown}{more}; nothing written (add the images "
                           "first: fmp stream add)")
    by_batch: dict[str, list[LabelLine]] = {}
    for lab in labels:
        by_batch.setdefault(where[lab.item], []).append(lab)
    new: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    unchanged = 0
    for batch, group in sorted(by_batch.items()):
        current = _current_labels(store, stream, batch)
        before = dict(current)
        for lab in group:
            current[lab.item] = lab.answer
            if lab.item not in before:
                new[batch] += 1
            elif before[lab.item] != lab.answer or type(before[lab.item]) is not type(lab.answer):
                changed[batch] += 1
            else:
                unchanged += 1
        if current != before:
            batches.write_labels(store, stream, batch,
                                 [Label(item_id=item, answer=answer) for item, answer in current.items()])
    return LabelsWritten(stream, dict(new), dict(changed), unchanged)


def _current_labels(store: ObjectStore, stream: str, batch: str) -> dict[str, bool | str]:
    """The batch's labels now (bad lines in an existing file are dropped on rewrite)."""
    try:
        parsed = batches.read_labels(store, stream, batch)
    except ObjectNotFound:
        return {}
    return {lab.item_id: lab.answer for lab in parsed.records}
