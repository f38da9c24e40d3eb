"""The evaluation's call table on disk: every backend call's output, usage and wall time,
computed once and read back by every policy of every later run.

A backend is a deterministic function of (function, args, pixels), so its answers can be
kept: :class:`CallTable` stores, per benchmark and query, one JSON-lines file
(``<dir>/<benchmark>/<query>.jsonl``) of the calls the harness computed, keyed as the
in-memory :class:`~benchmarks.counterfactual.CallCache` keys them (backend, function, args,
image shape, pixel digest), so any seed or number of scenes reuses whatever it shares with an
earlier run. Each line is one flush of one backend's new calls (one JSON row each,
:func:`modules.stored_calls.encode_call`'s), tagged with that backend's **version**
(:func:`modules.stored_calls.backend_version`: its catalog entry, the source of its kind's module and of
the backend base class, the files under ``modules/weights/`` it names and the versions of the
libraries that compute it); lines of any other version are ignored on load, so retraining a
model, editing its catalog entry or its code, or upgrading torch recomputes its calls.
Appends hold an exclusive ``flock``; a line that does not parse (a run killed mid-write) is
skipped and its calls are computed again.

``unit_flops.json`` in the same folder keeps the unit FLOPs the policies' arm costs are made of
(one representative call per backend version and function), so that a re-run measures nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.counterfactual import Answered
from modules.registry import Registry
from modules.stored_calls import CallKey, Unstorable, backend_version, decode_call, encode_call

#: Where the harness keeps its call table unless told otherwise (``--call-table``).
DEFAULT_DIR = Path(".fmp/calls")
_FORMAT = 1

__all__ = ["DEFAULT_DIR", "CallTable", "Unstorable", "backend_version", "load_unit_flops",
           "save_unit_flops"]


def _encode(key: CallKey, got: Answered) -> list[Any]:
    return encode_call(key, got.output, got.wall_ms)


def _decode(backend: str, row: list[Any]) -> tuple[CallKey, Answered]:
    key, output, wall_ms = decode_call(backend, row)
    return key, Answered(output, wall_ms)


# -- the table -------------------------------------------------------------------------------
class CallTable:
    """One benchmark's stored calls under ``root``, one file per query."""

    def __init__(self, root: Path | str, registry: Registry, benchmark: str) -> None:
        self.root = Path(root)
        self.registry = registry
        self.benchmark = benchmark
        self._versions: dict[str, str] = {}

    def version(self, backend: str) -> str:
        if backend not in self._versions:
            self._versions[backend] = backend_version(self.registry.spec(backend))
        return self._versions[backend]

    def path(self, query: str) -> Path:
        return self.root / self.benchmark / f"{query}.jsonl"

    def load(self, query: str) -> dict[CallKey, Answered]:
        """The stored calls of ``query`` whose backend version is current (the first entry of
        a key wins, as in memory)."""
        out: dict[CallKey, Answered] = {}
        path = self.path(query)
        if not path.exists():
            return out
        with path.open("rb") as f:
            for line in f:
                try:
                    block = json.loads(line)
                    backend = block["backend"]
                    if block.get("format") != _FORMAT or backend not in self.registry.specs:
                        continue
                    if block["version"] != self.version(backend):
                        continue
                    for row in block["calls"]:
                        key, got = _decode(backend, row)
                        out.setdefault(key, got)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn or foreign line: its calls are computed again
        return out

    def append(self, query: str, answers: Iterable[tuple[CallKey, Answered]]) -> int:
        """Store new calls (those it cannot store exactly stay out); returns how many."""
        by_backend: dict[str, list[list[Any]]] = {}
        for key, got in answers:
            try:
                by_backend.setdefault(key[0], []).append(_encode(key, got))
            except Unstorable:
                continue
        if not by_backend:
            return 0
        data = b"".join(json.dumps({"format": _FORMAT, "backend": b, "version": self.version(b),
                                    "calls": rows}, separators=(",", ":")).encode() + b"\n"
                        for b, rows in sorted(by_backend.items()))
        path = self.path(query)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)  # closing releases the lock
        return sum(len(rows) for rows in by_backend.values())


# -- unit FLOPs ------------------------------------------------------------------------------
def load_unit_flops(root: Path | str, registry: Registry) -> dict[tuple[str, str], float]:
    """Stored unit FLOPs of the registry's backends at their current versions:
    (backend, function) → FLOPs."""
    path = Path(root) / "unit_flops.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, spec in registry.specs.items():
        for function, flops in stored.get(backend_version(spec), {}).items():
            if isinstance(flops, float):
                out[(name, function)] = flops
    return out


def save_unit_flops(root: Path | str, registry: Registry, known: dict[tuple[str, str], float]) -> None:
    """Merge ``known`` (backend, function) → FLOPs into ``unit_flops.json`` (atomic replace)."""
    path = Path(root) / "unit_flops.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        stored: dict[str, dict[str, float]] = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    for (name, function), flops in known.items():
        if name in registry.specs:
            stored.setdefault(backend_version(registry.spec(name)), {})[function] = float(flops)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(stored, indent=0, sort_keys=True))
    tmp.replace(path)
