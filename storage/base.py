"""The object store interface: flat '/'-separated keys mapping to bytes.

Implementations provide the ``_``-prefixed primitives; the public methods here
validate keys first, so every store rejects the same bad keys the same way.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod

from storage.errors import StoreConfigError

#: Last-segment prefix reserved for in-flight temporary files (see LocalStore).
TEMP_PREFIX = ".fmp-tmp-"


def validate_key(key: str, *, what: str = "key") -> str:
    """Check that ``key`` is a relative, normalised, '/'-separated object key.

    Args:
        key: the key to check, e.g. ``"streams/s1/stream.json"``.
        what: how to name the key in the error message.

    Returns:
        The key unchanged.

    Raises:
        StoreConfigError: empty key, leading '/', '..' or '.' or empty segments, a
            backslash, or a last segment using the reserved temp-file prefix.
    """
    if not isinstance(key, str) or not key:
        raise StoreConfigError(f"{what} must be a non-empty string, got {key!r}")
    if key.startswith("/"):
        raise StoreConfigError(f"{what} {key!r} must be relative (drop the leading '/')")
    if "\\" in key:
        raise StoreConfigError(f"{what} {key!r} must use '/' separators, not '\\'")
    segments = key.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise StoreConfigError(f"{what} {key!r} has an empty, '.' or '..' segment")
    if segments[-1].startswith(TEMP_PREFIX):
        raise StoreConfigError(f"{what} {key!r} uses the reserved prefix {TEMP_PREFIX!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Check a listing prefix: "" (everything) or a key prefix, optionally ending in '/'.

    Args:
        prefix: the prefix to check.

    Returns:
        The prefix unchanged.

    Raises:
        StoreConfigError: the prefix (without a trailing '/') is not a valid key.
    """
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix, what="prefix")
    return prefix


class ObjectStore(ABC):
    """A bucket-like store of immutable-per-write byte objects."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The store's URL (``file:///...`` or ``s3://bucket/prefix``), used in messages."""

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically: readers see the old or the new object, never part.

        Args:
            key: object key.
            data: the full object contents.
        """
        self._put(validate_key(key), bytes(data))

    def get(self, key: str) -> bytes:
        """Read a whole object.

        Args:
            key: object key.

        Returns:
            The object's bytes.

        Raises:
            ObjectNotFound: no object at ``key``.
        """
        return self._get(validate_key(key))

    def exists(self, key: str) -> bool:
        """Return whether an object exists at ``key``."""
        return self._exists(validate_key(key))

    def list(self, prefix: str = "") -> list[str]:
        """List keys starting with ``prefix`` (a plain string prefix, recursive).

        Args:
            prefix: "" for every key, or e.g. ``"streams/s1/batches/"``.

        Returns:
            The full keys, sorted.
        """
        return sorted(self._list(validate_prefix(prefix)))

    def delete(self, key: str) -> None:
        """Delete the object at ``key``; deleting a missing key is not an error."""
        self._delete(validate_key(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _list(self, prefix: str) -> builtins.list[str]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...
