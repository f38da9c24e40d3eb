"""The evaluation's call table on disk: every backend call's output, usage and wall time,
computed once and read back by every policy of every later run.

A backend is a deterministic function of (function, args, pixels), so its answers can be
kept: :class:`CallTable` stores, per benchmark and query, one JSON-lines file
(``<dir>/<benchmark>/<query>.jsonl``) of the calls the harness computed, keyed as the
in-memory :class:`~benchmarks.counterfactual.CallCache` keys them (backend, function, args,
image shape, pixel digest), so any seed or number of scenes reuses whatever it shares with an
earlier run. Each line is one flush of one backend's new calls, tagged with that backend's
**version** (:func:`backend_version`: its catalog entry, the source of its kind's module and of
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
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.counterfactual import Answered, CallKey
from modules.backends.base import CallFailure, Output, Usage
from modules.catalog import WEIGHTS_DIR, BackendSpec
from modules.registry import KINDS, Registry

#: Where the harness keeps its call table unless told otherwise (``--call-table``).
DEFAULT_DIR = Path(".fmp/calls")
_FORMAT = 1
#: Libraries whose version can change a backend's answers, per backend kind.
_LIBRARIES = {"torch_vision": ("torch", "numpy"), "mobilenet": ("torch", "numpy"),
              "text_encoder": ("torch", "numpy", "transformers", "tokenizers"),
              "transformers": ("torch", "transformers", "tokenizers"),
              "ocr": ("numpy", "onnxruntime", "rapidocr-onnxruntime", "opencv-python-headless",
                      "ddddocr"),
              "fact_table": (), "fake": (), "openai": ("openai",)}


class Unstorable(ValueError):
    """A call output the table cannot store exactly (it stays in memory only)."""


# -- backend versions ----------------------------------------------------------------------
def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.cache
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return _sha(Path(path))


def _digest(path: Path) -> str:
    st = path.stat()
    return _file_digest(str(path), st.st_mtime_ns, st.st_size)


@functools.cache
def _library(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@functools.cache
def _tesseract() -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        return "-"
    try:
        got = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (got.stdout or got.stderr).splitlines()[0] if (got.stdout or got.stderr) else "?"


def backend_version(spec: BackendSpec) -> str:
    """A digest of everything that decides a backend's answers: its catalog entry, the source
    of its kind's module and of ``modules/backends/base.py``, the files under
    ``modules/weights/`` its entry names (and a ``.json`` beside a weights file: an answer
    vocabulary), and the versions of the libraries that compute it."""
    h = hashlib.sha256(f"fmp-calls/{_FORMAT}\n{spec.model_dump_json()}\n".encode())
    module = KINDS.get(spec.kind, "").partition(":")[0]
    for name in (module, "modules.backends.base"):
        found = importlib.util.find_spec(name) if name else None
        if found is not None and found.origin:
            h.update(f"{name}:{_digest(Path(found.origin))}\n".encode())
    for value in spec.model_dump().values():
        if isinstance(value, str) and value and "/" not in value and (WEIGHTS_DIR / value).is_file():
            path = WEIGHTS_DIR / value
            h.update(f"{value}:{_digest(path)}\n".encode())
            vocab = path.with_suffix(".json")
            if vocab != path and vocab.is_file():
                h.update(f"{vocab.name}:{_digest(vocab)}\n".encode())
    package = getattr(spec, "model", None) if spec.kind == "text_encoder" else None
    for lib in (*_LIBRARIES.get(spec.kind, ()), *((package,) if package else ())):
        h.update(f"{lib}=={_library(lib)}\n".encode())
    if getattr(spec, "engine", None) == "tesseract":
        h.update(f"tesseract: {_tesseract()}\n".encode())
    return h.hexdigest()[:16]


# -- values ----------------------------------------------------------------------------------
def _encode_value(function: str, value: Any) -> Any:
    if isinstance(value, CallFailure):
        return {"failure": value.message}
    if function == "find":
        if not isinstance(value, list) or not all(
                isinstance(b, tuple) and len(b) == 4 and all(type(v) is int for v in b) for b in value):
            raise Unstorable(f"find answered {type(value).__name__}, not a list of int boxes")
        return [list(b) for b in value]
    if value is None or type(value) in (bool, int, str):
        return value
    raise Unstorable(f"{function} answered a {type(value).__name__}")


def _decode_value(function: str, value: Any) -> Any:
    if isinstance(value, dict):
        return CallFailure(value["failure"])
    if function == "find":
        return [tuple(b) for b in value]
    return value


def _encode_number(x: Any) -> Any:
    """A float, or a numpy float tagged with its type (arithmetic on it must stay in its type)."""
    if x is None or type(x) in (float, int):
        return x
    if isinstance(x, np.floating):
        return {x.dtype.str.lstrip("<>="): float(x)}
    raise Unstorable(f"a number of type {type(x).__name__}")


def _decode_number(x: Any) -> Any:
    if isinstance(x, dict):
        ((dtype, value),) = x.items()
        return np.dtype(dtype).type(value)
    return x


def _encode(key: CallKey, got: Answered) -> list[Any]:
    _, function, args, shape, pix = key
    u = got.output.usage
    if type(u.params) is not int or type(u.tokens) is not int or type(u.cached) is not bool:
        raise Unstorable("usage holds a count that is not an int")
    return [function, list(args), None if shape is None else list(shape), pix.hex(),
            _encode_value(function, got.output.value), _encode_number(u.flops), u.params,
            _encode_number(u.price), u.tokens, _encode_number(u.confidence),
            _encode_number(got.wall_ms)]


def _decode(backend: str, row: list[Any]) -> tuple[CallKey, Answered]:
    function, args, shape, pix, value, flops, params, price, tokens, confidence, wall_ms = row
    key: CallKey = (backend, function, tuple(args), None if shape is None else tuple(shape),
                    bytes.fromhex(pix))
    usage = Usage(_decode_number(flops), params, _decode_number(price), tokens,
                  _decode_number(confidence))
    return key, Answered(Output(_decode_value(function, value), usage), _decode_number(wall_ms))


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
