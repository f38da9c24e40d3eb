from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from storage.records import (
    BatchResultsMarker,
    DecisionRecord,
    Label,
    ManifestItem,
    ResultRow,
    RungRecord,
    StreamInfo,
    trusted,
)

DECISION: dict[str, Any] = dict(
    call_site="c0",
    function="exists",
    backend="tiny",
    propensity=0.5,
    calls=1,
    flops=1e9,
    params=1e6,
    wall_ms=3.0,
    price=0.1,
)


def row(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        item_id="i1", status="ok", answer=True, error=None, features=[0.5], decisions=[DECISION]
    )
    return base | over


def marker(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        stream="s1",
        batch="b1",
        policy="p1",
        policy_version=0,
        program_id="prog",
        rows=0,
        sha256="0" * 64,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return base | over


def test_manifest_item_defaults_and_json_round_trip() -> None:
    item = ManifestItem(item_id="000017", image="images/000017.png")
    assert item.meta == {}
    assert ManifestItem.model_validate_json(item.model_dump_json()) == item


@pytest.mark.parametrize(
    "fields",
    [
        {"item_id": "a b", "image": "images/a.png"},
        {"item_id": "", "image": "images/a.png"},
        {"item_id": "a", "image": "../a.png"},
        {"item_id": "a", "image": "/abs.png"},
        {"item_id": "a", "image": "images/a.png", "extra": 1},
    ],
)
def test_manifest_item_rejects_bad_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ManifestItem(**fields)


def test_records_are_frozen() -> None:
    label = Label(item_id="a", answer=True)
    with pytest.raises(ValidationError):
        label.answer = False  # type: ignore[misc]  # frozen: the point of the test


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ('"red"', "red"), ('"true"', "true")]
)
def test_label_answer_keeps_json_type(raw: str, expected: bool | str) -> None:
    label = Label.model_validate_json(f'{{"item_id": "a", "answer": {raw}}}')
    assert label.answer == expected and type(label.answer) is type(expected)


@pytest.mark.parametrize("raw", ["1", "null", "[true]"])
def test_label_answer_rejects_other_types(raw: str) -> None:
    with pytest.raises(ValidationError):
        Label.model_validate_json(f'{{"item_id": "a", "answer": {raw}}}')


def test_stream_info_answer_type_is_bool_or_str() -> None:
    fields = dict(
        stream="s1", query_id="q", question="any red cube?", program="p", monolithic_program="m"
    )
    assert StreamInfo(answer_type="bool", **fields).answer_type == "bool"
    with pytest.raises(ValidationError):
        StreamInfo(answer_type="int", **fields)


@pytest.mark.parametrize(
    "over",
    [
        {"propensity": 0.0},
        {"propensity": 1.01},
        {"calls": 0},
        {"flops": -1.0},
        {"price": float("inf")},
    ],
)
def test_decision_record_bounds(over: dict[str, Any]) -> None:
    assert DecisionRecord(**DECISION).propensity == 0.5
    with pytest.raises(ValidationError):
        DecisionRecord(**(DECISION | over))


def test_decision_rows_written_before_escalation_read_with_no_rungs() -> None:
    old = DecisionRecord.model_validate_json(json.dumps(DECISION))
    assert (old.tried, old.rungs) == ([], [])
    cascade = DecisionRecord(**DECISION, tried=["tiny-s"], rungs=[
        RungRecord(backend="tiny-s", confidence=0.6, positive=False, agreed=False),
        RungRecord(backend="tiny", positive=True)])
    again = DecisionRecord.model_validate_json(cascade.model_dump_json())
    assert again == cascade and again.rungs[1].confidence is None
    with pytest.raises(ValidationError):
        RungRecord(backend="tiny", confidence=1.5, positive=True)


def test_a_trusted_record_is_the_validated_record_field_for_field() -> None:
    rungs: list[dict[str, Any]] = [dict(backend="tiny-s", confidence=0.6, positive=False, agreed=False),
                                   dict(agreed=None, positive=True, confidence=None, backend="tiny")]
    values: dict[str, Any] = dict(reversed(list(DECISION.items()))) | {"tried": ["tiny-s"]}
    made = trusted(DecisionRecord, values | {"rungs": [trusted(RungRecord, r) for r in rungs]})
    valid = DecisionRecord(**values, rungs=[RungRecord(**r) for r in rungs])
    assert made == valid
    assert list(made.__dict__) == list(valid.__dict__) == list(DecisionRecord.model_fields)
    assert made.__pydantic_fields_set__ == valid.__pydantic_fields_set__ == set(DecisionRecord.model_fields)
    assert made.model_dump_json() == valid.model_dump_json()
    assert made.model_copy(update={"propensity": 1.0}).propensity == 1.0
    with pytest.raises(ValidationError):  # frozen like any record
        made.propensity = 1.0  # type: ignore[misc]
    with pytest.raises(KeyError, match="tried"):  # every field must be given
        trusted(DecisionRecord, DECISION | {"rungs": []})


def test_result_row_accepts_ok_and_failed() -> None:
    assert ResultRow(**row()).decisions[0].backend == "tiny"
    failed = ResultRow(**row(status="failed", answer=None, error="boom", decisions=[]))
    assert (failed.answer, failed.error) == (None, "boom")


@pytest.mark.parametrize(
    "over",
    [
        {"answer": None},
        {"error": "x"},
        {"status": "failed", "answer": None, "error": None},
        {"status": "failed", "answer": True, "error": "x"},
        {"features": [float("nan")]},
    ],
)
def test_result_row_rejects_inconsistent_rows(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ResultRow(**row(**over))


@pytest.mark.parametrize(
    "over",
    [{"sha256": "ABC"}, {"rows": -1}, {"created_at": datetime(2026, 1, 1)}, {"batch": "a/b"}],
)
def test_marker_rejects_bad_fields(over: dict[str, Any]) -> None:
    assert BatchResultsMarker(**marker()).rows == 0
    with pytest.raises(ValidationError):
        BatchResultsMarker(**marker(**over))
