"""Errors raised by the storage package.

    StorageError                          root: an object store operation failed
    ├── StoreUnavailable                  the store did not answer (down, frozen, unreachable)
    ├── ObjectNotFound (KeyError)         a key does not exist in the store
    ├── RecordError (ValueError)          one stored record (a JSONL line / JSON file) is invalid
    └── StoreConfigError (ValueError)     a bad store URL, key, or stream/batch/policy id

Every message names the store URL or key (and line) involved and, where one
exists, the fix.
"""

from __future__ import annotations

from typing import Any


class StorageError(Exception):
    """Root of the storage package's errors (also raised for torn writes and I/O failures)."""


class StoreUnavailable(StorageError):
    """The store did not answer in time or refused the connection, after retries.

    A fault of the store, not of the object: callers retry later rather than record the
    object as bad.
    """


class ObjectNotFound(StorageError, KeyError):
    """A key does not exist in a store.

    Attributes:
        store_url: the store's URL.
        key: the missing key (relative to the store).
        hint: how to fix it ("" when there is no specific hint).
    """

    def __init__(self, store_url: str, key: str, hint: str = "") -> None:
        self.store_url = store_url
        self.key = key
        self.hint = hint
        super().__init__(store_url, key, hint)

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the first argument; give a readable sentence instead.
        msg = f"no object {self.key!r} in store {self.store_url}"
        return f"{msg}; {self.hint}" if self.hint else msg

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.store_url, self.key, self.hint))


class RecordError(StorageError, ValueError):
    """A stored record failed to parse or validate.

    Attributes:
        key: the object holding the record.
        line: 1-based line number (1 for single-record JSON files).
        problem: what was wrong, without the location.
    """

    def __init__(self, key: str, line: int, problem: str) -> None:
        self.key = key
        self.line = line
        self.problem = problem
        super().__init__(f"{key} line {line}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.line, self.problem))


class StoreConfigError(StorageError, ValueError):
    """A store URL, object key, or stream/batch/policy id is invalid."""
