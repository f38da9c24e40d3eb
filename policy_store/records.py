"""Plain records the store takes and returns.

Results are ingested as the bucket's own records: ``storage.records.ResultRow`` lines, each
carrying its ``DecisionRecord``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

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
class LearningStep:
    """What one saved version learned from labels: the version it was saved on (``parent``),
    the batch, and the label versions (item_id, seq) it was trained on. A label version is
    learned once per (stream, policy), so a step names at most one saved version."""

    parent: int | None
    batch: str
    labels: frozenset[tuple[str, int]]


@dataclass(frozen=True)
class IngestBatch:
    """A policy's results for one batch (its ``results.jsonl`` rows) plus the batch's labels
    (item_id -> answer).

    ``answer_type`` is the stream's: labels are read against it (``answers.normalise_label``)
    and one that does not fit is rejected; ``None`` only normalises their text.
    ``label_lines`` (item_id -> line of ``labels.jsonl``) lets rejections name their line.
    ``results_sha256`` and ``labels_sha256`` identify the files read (``feedback_state``).
    """

    stream: str
    policy: str
    batch: str
    policy_version: int
    program_id: str
    rows: list[ResultRow]
    labels: dict[str, str | bool] = field(default_factory=dict)
    answer_type: Literal["bool", "str"] | None = None
    label_lines: dict[str, int] = field(default_factory=dict)
    results_sha256: str = ""
    labels_sha256: str = ""


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest wrote.

    ``unknown_labels`` are label item_ids absent from the batch; ``rejected`` maps the
    item_id of each label whose value does not fit the stream to why (with its line); ``normalised`` counts
    accepted labels that were not in their canonical form. ``new_labels`` and ``corrected``
    count the label versions this ingest added (an item's first label; a changed one).
    ``results``: ``new`` (first ingest), ``unchanged`` (ledger rows kept) or ``replaced``
    (the results changed since, e.g. a rerun batch: rows rewritten; ``replaced_rows`` is the
    previous (results, decisions) count).
    """

    items: int
    failed: int
    labelled: int
    decisions: int
    unknown_labels: list[str]
    normalised: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    new_labels: int = 0
    corrected: int = 0
    results: Literal["new", "unchanged", "replaced"] = "new"
    replaced_rows: tuple[int, int] | None = None


#: Call-site suffix of ledger decisions that learning ran itself (the ``confirmed`` policy's
#: audits, ``{site}+audit[{backend}]``): written with a policy version, not from
#: ``results.jsonl``, so re-ingesting a batch's results keeps them.
AUDIT_SUFFIX = "+audit"
