"""Plain records the store takes and returns.

Results are ingested as the bucket's own records: ``storage.records.ResultRow`` lines, each
carrying its ``DecisionRecord``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.records import ResultRow


@dataclass(frozen=True)
class CallSiteInfo:
    """One call site of a program: ``call_site`` id, generic function, source position."""

    call_site: str
    function: str
    line: int
    col: int


@dataclass(frozen=True)
class BackendCost:
    """A backend's catalog cost profile; ``functions`` are the generic functions it serves."""

    name: str
    kind: str
    functions: tuple[str, ...]
    flops: float
    params: float
    wall_ms: float
    price: float


@dataclass(frozen=True)
class PolicyVersion:
    """One saved learner state of (stream, policy); versions count from 1."""

    stream: str
    policy: str
    version: int
    learner: str
    config_json: str
    params: bytes
    parent: int | None
    created_at: datetime
    note: str


@dataclass(frozen=True)
class IngestBatch:
    """A policy's results for one batch (its ``results.jsonl`` rows) plus the batch's labels
    (item_id -> answer)."""

    stream: str
    policy: str
    batch: str
    policy_version: int
    program_id: str
    rows: list[ResultRow]
    labels: dict[str, str | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest wrote; ``unknown_labels`` are label item_ids absent from the batch."""

    items: int
    failed: int
    labelled: int
    decisions: int
    unknown_labels: list[str]
