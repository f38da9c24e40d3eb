"""Ingest one batch's labels: ledger rows, rewards, a learner update, a new policy version.

Plain Python, wrapped by the ingest_feedback flow. This is the only code that writes the
policy store.

Exactly once, by content, never by timestamps: a batch is pending for a policy when the
sha256 of its ``results.jsonl`` or ``labels.jsonl`` differs from what its ledger rows were
built from (``feedback_state``), or when a current label version has not been learned.
Ingesting brings the ledger rows in line with both files (a rerun batch's rows are replaced,
late and corrected labels are written); the learner is then trained on exactly the label
versions this policy has not learned (an item's first label, or a changed one), once each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from flows._batch import load_program
from flows.settings import Settings
from modules.images import decode_image
from modules.program import Program
from modules.registry import Registry
from policies.audit_calls import load_calls, write_calls
from policies.learning import audit, learn
from policies.specs import policy_spec
from policy_store.answers import normalise_label
from policy_store.records import CallSiteInfo, IngestBatch, IngestSummary, LearningStep, PolicyVersion
from policy_store.store import PolicyStore
from storage import batches, layout
from storage.base import ObjectStore
from storage.errors import ObjectNotFound
from storage.jsonl import ParsedLines, parse_jsonl, parse_one
from storage.records import BatchResultsMarker, Label, ManifestItem, ResultRow


@dataclass(frozen=True)
class FeedbackSummary:
    """One batch's feedback for one policy.

    ``labelled``: items with a current, accepted label; ``learned``: those whose current
    label version this policy has learned (after this run; ``learned == labelled`` means
    the batch is fully learned); ``trained``: label versions the learner was trained on in
    this run (``new_labels`` first labels, ``corrected`` changed ones, across runs of any
    policy). ``normalised``: accepted labels rewritten to their canonical form (``"False"``
    → no on a bool stream); ``rejected_lines``: the ``labels.jsonl`` lines not used
    (malformed, duplicate, unknown item, a value that does not fit the stream).
    ``results``: ``new``, ``unchanged`` or ``replaced`` (a rerun batch's ledger rows).
    """

    stream: str
    batch: str
    policy: str
    items: int
    labelled: int
    new_version: int | None
    errors: list[str]
    learned: int = 0
    trained: int = 0
    new_labels: int = 0
    corrected: int = 0
    normalised: int = 0
    rejected_lines: list[int] = field(default_factory=list)
    results: Literal["new", "unchanged", "replaced"] = "new"


def pending_feedback(store: ObjectStore, db: PolicyStore, stream: str, policy: str) -> list[str]:
    """Batches with results whose ledger rows or learner lag behind their files: never
    ingested (and labelled), results or labels changed since (by sha256), or labels this
    policy has not learned."""
    state = db.feedback_state(stream, policy)
    unlearned = db.unlearned_labels(stream, policy)
    labelled = set(batches.list_feedback(store, stream))
    todo = []
    for b in batches.list_results(store, stream, policy):
        if b not in state:
            if b in labelled:
                todo.append(b)
            continue
        results_sha = _results_sha(store, stream, policy, b)
        if results_sha is None:  # being rewritten (the marker goes first); the next run sees it
            continue
        if b in unlearned or state[b] != (results_sha, _sha(_labels_bytes(store, stream, b))):
            todo.append(b)
    return todo


def ingest_batch(settings: Settings, store: ObjectStore, registry: Registry, db: PolicyStore,
                 stream: str, batch: str, policy: str) -> FeedbackSummary:
    """Bring a batch's ledger rows in line with its results and labels, then train the
    learner on the label versions it has not learned (one new policy version, or none)."""
    loaded = batches.read_results(store, stream, policy, batch)
    if loaded is None:
        raise FileNotFoundError(f"{stream}/{batch}: no complete results for policy {policy!r}; "
                                f"run stream_batch first")
    marker, rows = loaded
    data = _labels_bytes(store, stream, batch)
    parsed = parse_jsonl(data, layout.labels_key(stream, batch), Label, unique="item_id")
    lines = _record_lines(data, parsed)
    info = batches.read_stream_info(store, stream)
    program = load_program(info, policy)
    db.register_program(info.query_id, program.source,
                        [CallSiteInfo(s.id, s.function, s.line, s.col) for s in program.call_sites])
    summary = db.ingest_batch(IngestBatch(
        stream=stream, policy=policy, batch=batch, policy_version=marker.policy_version,
        program_id=marker.program_id, rows=rows,
        labels={lab.item_id: lab.answer for lab in parsed.records}, answer_type=info.answer_type,
        label_lines=lines, results_sha256=marker.sha256, labels_sha256=_sha(data)))
    errors = _errors(stream, batch, parsed, lines, summary)
    pending = db.unlearned_labels(stream, policy, batch).get(batch, {})
    new_version = None
    if pending:
        new_version = _learn(settings, store, registry, db, stream, batch, policy, program,
                             info.answer_type, rows, pending)
    rejected = {e.line for e in parsed.errors} | {
        lines[i] for i in [*summary.unknown_labels, *summary.rejected] if i in lines}
    return FeedbackSummary(
        stream, batch, policy, len(rows), summary.labelled, new_version, errors,
        learned=summary.labelled - (0 if new_version is not None else len(pending)),
        trained=len(pending) if new_version is not None else 0, new_labels=summary.new_labels,
        corrected=summary.corrected, normalised=summary.normalised,
        rejected_lines=sorted(rejected), results=summary.results)


def _errors(stream: str, batch: str, parsed: ParsedLines[Label], lines: dict[str, int],
            summary: IngestSummary) -> list[str]:
    where = f"{stream}/{batch}"
    errors = [f"{where}: {e}" for e in parsed.errors]
    errors += [f"{where}: line {lines[item]}: label for unknown item {item!r} (recorded in label_errors)"
               if item in lines else f"{where}: label for unknown item {item!r} (recorded in label_errors)"
               for item in summary.unknown_labels]
    errors += [f"{where}: {reason} (recorded in label_errors)" for reason in summary.rejected.values()]
    if summary.results == "replaced" and summary.replaced_rows is not None:
        old_results, old_decisions = summary.replaced_rows
        errors.append(
            f"{where}: results changed since the last ingest (a rerun batch): ledger rows replaced, "
            f"{old_results} results and {old_decisions} decisions before, {summary.items} and "
            f"{summary.decisions} now; labels already learned are not learned again")
    return errors


def _learn(settings: Settings, store: ObjectStore, registry: Registry, db: PolicyStore, stream: str,
           batch: str, policy: str, program: Program, answer_type: Literal["bool", "str"],
           rows: list[ResultRow], pending: dict[str, tuple[int, str]]) -> int:
    """Train on the ``pending`` label versions (item_id -> (seq, text)); save the version."""
    labels = {item: normalise_label(text, answer_type).value for item, (_, text) in pending.items()}
    latest = db.latest_version(stream, policy)
    if policy_spec(policy).learner_for(answer_type) == "confirmed":
        return _audit(settings, store, registry, db, stream, batch, policy, program, answer_type,
                      rows, pending, labels, latest)
    pinned, n_examples = learn(registry, program, policy, latest, settings.lam, settings.seed,
                               answer_type, rows, labels)
    corrected = sum(seq > 1 for seq, _ in pending.values())
    note = f"learned from {batch}: {n_examples} examples, {len(pending)} labels"
    note += f" ({corrected} corrected)" if corrected else ""
    return db.save_learned_version(
        stream, policy, pinned.learner.name, pinned.config.model_dump_json(),
        pinned.learner.to_bytes(), parent=latest.version if latest else None, note=note,
        batch=batch, labels=[(item, seq) for item, (seq, _) in pending.items()])


def _audit(settings: Settings, store: ObjectStore, registry: Registry, db: PolicyStore, stream: str,
           batch: str, policy: str, program: Program, answer_type: Literal["bool", "str"],
           rows: list[ResultRow], pending: dict[str, tuple[int, str]],
           labels: dict[str, bool | str], latest: PolicyVersion | None) -> int:
    """The ``confirmed`` policy's learning: audits replayed with the real backends (items'
    images read from the store as a batch run reads them), charged to the policy in the
    ledger in the same transaction that saves the new pins. Calls earlier feedback runs
    computed are answered from the store (``policies.audit_calls``): free when charged then,
    charged now when their run never saved its version. This run's charged calls are written
    before its version is saved."""
    manifests: dict[str, dict[str, ManifestItem]] = {}

    def image(b: str, item_id: str) -> np.ndarray:
        if b not in manifests:
            manifests[b] = {m.item_id: m for m in batches.read_manifest(store, stream, b).records}
        return decode_image(batches.read_image(store, stream, b, manifests[b][item_id]))

    kept = load_calls(store, registry, stream, policy, db.learning_steps(stream, policy))
    done = audit(registry, program, policy, latest, settings.lam, settings.seed, answer_type, batch,
                 rows, labels, image, kept)
    parent = latest.version if latest else None
    step = LearningStep(parent, batch, frozenset((item, seq) for item, (seq, _) in pending.items()))
    write_calls(store, registry, stream, policy, step, done.calls)
    flops = sum(d.flops for _, _, d in done.charges)
    note = (f"audited from {batch}: {len(pending)} labels, {done.audited} items audited so far, "
            f"{done.replays} replays ({flops / 1e9:.3f} GFLOPs charged, {done.reused} calls of "
            f"{done.reused_flops / 1e9:.3f} GFLOPs reused from earlier feedback runs)")
    return db.save_learned_version(
        stream, policy, done.pinned.learner.name, done.pinned.config.model_dump_json(),
        done.pinned.learner.to_bytes(), parent=parent, note=note,
        batch=batch, labels=[(item, seq) for item, (seq, _) in pending.items()],
        charges=done.charges)


def _labels_bytes(store: ObjectStore, stream: str, batch: str) -> bytes:
    """The batch's ``labels.jsonl``; empty when none was written (yet)."""
    try:
        return store.get(layout.labels_key(stream, batch))
    except ObjectNotFound:
        return b""


def _results_sha(store: ObjectStore, stream: str, policy: str, batch: str) -> str | None:
    """The sha256 of the batch's ``results.jsonl``, from its ``_SUCCESS`` marker (None: no
    marker)."""
    key = layout.success_key(stream, policy, batch)
    try:
        return parse_one(store.get(key), key, BatchResultsMarker).sha256
    except ObjectNotFound:
        return None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_lines(data: bytes, parsed: ParsedLines[Label]) -> dict[str, int]:
    """item_id -> line number of each good record (``parse_jsonl`` turns every non-blank
    line into one record or one error, in file order)."""
    bad = {e.line for e in parsed.errors}
    numbers = [n for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip() and n not in bad]
    return {rec.item_id: n for rec, n in zip(parsed.records, numbers, strict=True)}
