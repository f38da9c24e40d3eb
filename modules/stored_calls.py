"""Backend calls kept outside memory: a call's key, its output as JSON, and the version of the
backend that computed it.

A backend is a deterministic function of (function, args, pixels), so a computed call can be
kept and answered again without running the model. Two users keep calls: the benchmarks' call
table (``benchmarks.calltable``, files on disk) and the ``confirmed`` policy's audits in the
flows (``policies.audit_calls``, objects in the store). Both key a call by :func:`call_key`,
write it as one JSON row (:func:`encode_call` / :func:`decode_call`) and tag it with its
backend's :func:`backend_version`, so a call kept under another version is computed again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from modules.backends.base import Call, CallFailure, Output, Usage
from modules.catalog import WEIGHTS_DIR, BackendSpec
from modules.registry import KINDS

#: A call's key: (backend, function, args, image shape or None, pixel digest).
CallKey = tuple[str, str, tuple[str, ...], tuple[int, ...] | None, bytes]

#: Part of every backend version: raising it recomputes every kept call.
_VERSION_FORMAT = 1
#: Libraries whose version can change a backend's answers, per backend kind.
_LIBRARIES = {"torch_vision": ("torch", "numpy"), "mobilenet": ("torch", "numpy"),
              "text_encoder": ("torch", "numpy", "transformers", "tokenizers"),
              "transformers": ("torch", "transformers", "tokenizers"),
              "ocr": ("numpy", "onnxruntime", "rapidocr-onnxruntime", "opencv-python-headless",
                      "ddddocr"),
              "fact_table": (), "fake": (), "openai": ("openai",)}


class Unstorable(ValueError):
    """A call output that cannot be written exactly (it stays in memory only)."""


def call_key(backend: str, call: Call) -> CallKey:
    """The key of ``call`` on ``backend``: what decides its answer, the pixels as a digest."""
    img = call.image
    if img is None:
        return backend, call.function, call.args, None, b""
    pix = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest()
    return backend, call.function, call.args, img.shape, pix


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
    h = hashlib.sha256(f"fmp-calls/{_VERSION_FORMAT}\n{spec.model_dump_json()}\n".encode())
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


def encode_call(key: CallKey, output: Output, wall_ms: float) -> list[Any]:
    """One computed call as a JSON row (its backend is not in it: rows are kept per backend):
    function, args, image shape, pixel digest (hex), value, FLOPs, params, price, tokens,
    confidence, wall ms.

    Raises:
        Unstorable: the output holds a value or number JSON cannot give back exactly.
    """
    _, function, args, shape, pix = key
    u = output.usage
    if type(u.params) is not int or type(u.tokens) is not int or type(u.cached) is not bool:
        raise Unstorable("usage holds a count that is not an int")
    return [function, list(args), None if shape is None else list(shape), pix.hex(),
            _encode_value(function, output.value), _encode_number(u.flops), u.params,
            _encode_number(u.price), u.tokens, _encode_number(u.confidence),
            _encode_number(wall_ms)]


def decode_call(backend: str, row: list[Any]) -> tuple[CallKey, Output, float]:
    """``encode_call``'s row of a call on ``backend``: (key, output, wall ms).

    Raises:
        ValueError, TypeError: the row is not one ``encode_call`` wrote.
    """
    function, args, shape, pix, value, flops, params, price, tokens, confidence, wall_ms = row
    key: CallKey = (backend, function, tuple(args), None if shape is None else tuple(shape),
                    bytes.fromhex(pix))
    usage = Usage(_decode_number(flops), params, _decode_number(price), tokens,
                  _decode_number(confidence))
    return key, Output(_decode_value(function, value), usage), _decode_number(wall_ms)


__all__ = ["CallKey", "Unstorable", "backend_version", "call_key", "decode_call", "encode_call"]
