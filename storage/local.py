"""An object store backed by a local folder (one file per key)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from storage.base import TEMP_PREFIX, ObjectStore
from storage.errors import ObjectNotFound, StorageError


class LocalStore(ObjectStore):
    """Objects are files under ``root``; key ``a/b.json`` is ``root/a/b.json``.

    Args:
        root: the folder holding the objects; created on first write.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target then rename: os.replace is atomic within one
            # filesystem, so a reader never opens a half-written object.
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {key!r} in store {self.url}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp makes 0600; objects are shared data
                fh.write(data)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {key!r} in store {self.url}: {exc}") from exc
            raise

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(self.url, key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} in store {self.url}: {exc}") from exc

    def _exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _list(self, prefix: str) -> list[str]:
        # Walk only the deepest folder the prefix names, then filter by string prefix,
        # so "streams/s1/bat" matches like an S3 prefix would.
        folder = prefix.rpartition("/")[0]
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return []
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    continue  # an in-flight or abandoned put, not an object
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return keys

    def _delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            return  # a "folder" is not an object; nothing to delete
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r} in store {self.url}: {exc}") from exc
