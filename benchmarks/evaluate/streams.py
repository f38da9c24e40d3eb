"""Drawn streams kept between runs: a query's items as the harness uses them (pixels, labels,
difficulties, embeddings), one file per (query, seed, scenes), beside the call table.

Why. A re-run from a warm call table computes no model call, and drawing the scenes again was
what remained of its per-query work: rejection sampling renders ~1.1 scenes per item at about
3 ms each, 6–7 s per 2,000-item query (over half of a re-run of one learner at one λ).

A file is named by a digest of everything that draws its items: the sources of the scene,
sign, sampling, truth-spec and query-set modules and of those they read (vocabulary, answers,
fact normalisation, the embedding), the query's definition, the answer type, the fact table,
the seed, the number of scenes and the versions of numpy and Pillow (the random streams and
the sign font). Any change to one of them draws the stream again and replaces the file; a file
that cannot be read is drawn again too. Writes go to a temporary file renamed into place, so
two runs never see a torn one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

#: The modules whose source decides what a stream's items are (relative to the repository).
SOURCES = ("benchmarks/scenes.py", "benchmarks/signs.py", "benchmarks/sampling.py", "benchmarks/truth.py",
           "benchmarks/queryset.py", "modules/vocab.py", "modules/answers.py", "modules/backends/facts.py",
           "modules/embedding.py")
ROOT = Path(__file__).resolve().parents[2]
_FORMAT = 1


def _sources_digest() -> bytes:
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return h.digest()


def stream_key(query_json: str, answer_type: str, scenes: int, seed: int, facts: dict[str, str]) -> str:
    """The digest naming a stream's file (see the module docstring)."""
    import PIL

    h = hashlib.sha256(_sources_digest())
    for part in (query_json, answer_type, json.dumps(facts, sort_keys=True), str(seed), str(scenes),
                 np.__version__, PIL.__version__, str(_FORMAT)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:32]


class StreamFiles:
    """The drawn streams of one benchmark under ``root`` (``<root>/<query>-s<seed>-n<scenes>-<key>.npz``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, query_id: str, seed: int, scenes: int, key: str) -> Path:
        return self.root / f"{query_id}-s{seed}-n{scenes}-{key}.npz"

    def has(self, query_id: str, seed: int, scenes: int, key: str) -> bool:
        """Whether a file for ``key`` is kept (``get`` may still find it unreadable)."""
        return self._path(query_id, seed, scenes, key).is_file()

    def get(self, query_id: str, seed: int, scenes: int, key: str) -> dict[str, Any] | None:
        """The stored items (``images`` one array, ``features``, ``labels``,
        ``difficulties``), or None when there is no readable file for ``key``."""
        path = self._path(query_id, seed, scenes, key)
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
                images, features = npz["images"], npz["features"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile):
            return None
        if meta.get("key") != key or len(images) != len(meta["labels"]) or len(features) != len(images):
            return None
        return {"images": images, "features": features, "labels": meta["labels"],
                "difficulties": meta["difficulties"]}

    def put(self, query_id: str, seed: int, scenes: int, key: str, images: list[np.ndarray],
            features: np.ndarray, labels: list[Any], difficulties: list[str]) -> Path | None:
        """Store a drawn stream (replacing the query's files of other keys at this seed and
        size); None when nothing was stored (images of different shapes, a label JSON cannot
        hold)."""
        if len({im.shape for im in images}) != 1:
            return None
        try:
            text = json.dumps({"key": key, "labels": labels, "difficulties": difficulties})
        except TypeError:  # a label JSON cannot hold: draw it again next time
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, images=np.stack(images), features=np.asarray(features),
                 meta=np.frombuffer(text.encode(), dtype=np.uint8))
        path = self._path(query_id, seed, scenes, key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getbuffer())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in self.root.glob(f"{query_id}-s{seed}-n{scenes}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
        return path
