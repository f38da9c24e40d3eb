"""The calls the ``confirmed`` policy's audits computed, kept across feedback runs.

A feedback run replays audited items under the configurations the descent tries; a later
run tries other configurations on the same items, and most of their calls (same backend,
function, arguments and pixels) were computed before. Each feedback run that computed calls
writes them to one object, ``layout.audit_calls_key(stream, policy, batch, step)``, before it
saves its policy version; later runs of the same (stream, policy) answer those calls from it.

Exactly once: the ledger transaction that saves a version also charges its audits' calls. An
object's first line names its learning step (the version it started from, the batch and the
label versions it learns, ``LearningStep``); a step names at most one saved version, so

* the calls of an object whose step was saved were charged: reused, they cost nothing more;
* the calls of an object whose step never was (the run died or lost a race before its
  transaction committed) were computed but never charged: a run that reuses one charges it,
  and writes it into its own object.

A rerun of a killed step (same version, batch and labels) overwrites the killed run's object.
Every line after the first holds one backend's calls at one backend version
(``modules.stored_calls``); calls of another version are computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from modules.backends.base import Output
from modules.registry import Registry
from modules.stored_calls import CallKey, Unstorable, backend_version, decode_call, encode_call
from policy_store.records import LearningStep
from storage import layout
from storage.base import ObjectStore

_FORMAT = 1

log = logging.getLogger("fmp.audits")


@dataclass(frozen=True)
class KeptCall:
    """A call an earlier feedback run computed: its output, wall ms, and whether the ledger
    charged it (its run's version was saved)."""

    output: Output
    wall_ms: float
    charged: bool


def step_id(step: LearningStep) -> str:
    """The object name of a learning step: the version it started from and a digest of its
    label versions (``v7-<16 hex>``)."""
    labels = json.dumps(sorted(step.labels), separators=(",", ":")).encode()
    return f"v{step.parent or 0}-{hashlib.sha256(labels).hexdigest()[:16]}"


def write_calls(store: ObjectStore, registry: Registry, stream: str, policy: str, step: LearningStep,
                calls: dict[CallKey, tuple[Output, float]]) -> str | None:
    """Write the calls ``step``'s audits charged (key -> (output, wall ms)) as one object; the
    key written, or None when there was nothing to keep. Outputs that cannot be written
    exactly are left out (a later run computes them again)."""
    by_backend: dict[str, list[list[Any]]] = {}
    for key, (output, wall_ms) in calls.items():
        try:
            row = encode_call(key, output, wall_ms)
        except Unstorable:
            continue
        by_backend.setdefault(key[0], []).append(row)
    if not by_backend:
        return None
    head = {"format": _FORMAT, "stream": stream, "policy": policy, "batch": step.batch,
            "parent": step.parent, "labels": sorted([item, seq] for item, seq in step.labels)}
    lines = [head] + [{"backend": b, "version": backend_version(registry.spec(b)), "calls": rows}
                      for b, rows in sorted(by_backend.items())]
    where = layout.audit_calls_key(stream, policy, step.batch, step_id(step))
    store.put(where, b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines))
    return where


def load_calls(store: ObjectStore, registry: Registry, stream: str, policy: str,
               saved: set[LearningStep]) -> dict[CallKey, KeptCall]:
    """Every call the audits of (stream, policy) kept at its backend's current version;
    ``saved``: the saved versions' learning steps (``PolicyStore.learning_steps``), which
    decide what was charged. A call kept by a saved step and by one never saved is charged."""
    versions: dict[str, str] = {}
    out: dict[CallKey, KeptCall] = {}
    for where in store.list(layout.audit_calls_prefix(stream, policy)):
        lines = store.get(where).splitlines()
        try:
            head = json.loads(lines[0])
            if head.get("format") != _FORMAT:
                raise ValueError(f"format {head.get('format')!r}, not {_FORMAT}")
            step = LearningStep(None if head["parent"] is None else int(head["parent"]), str(head["batch"]),
                                frozenset((str(item), int(seq)) for item, seq in head["labels"]))
        except (IndexError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s %s: not an audit calls object, its calls are computed again (%s)",
                        store.url, where, exc)
            continue
        charged = step in saved
        for line in lines[1:]:
            try:
                block = json.loads(line)
                backend = block["backend"]
                if backend not in registry.specs:
                    continue
                if backend not in versions:
                    versions[backend] = backend_version(registry.spec(backend))
                if block["version"] != versions[backend]:
                    continue
                for row in block["calls"]:
                    call, output, wall_ms = decode_call(backend, row)
                    if charged or call not in out:
                        out[call] = KeptCall(output, float(wall_ms), charged)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s %s: a line that does not parse, its calls are computed again (%s)",
                            store.url, where, exc)
    return out


__all__ = ["KeptCall", "load_calls", "step_id", "write_calls"]
