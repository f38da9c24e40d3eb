"""The stream registry in the object store: which streams exist, for discovery and feedback.

Describing a stream (``batches.write_stream_info``: ``fmp stream create``, ``fmp stream
publish``) registers it under ``registry/streams/<stream>.json``; scheduled discovery and
feedback iterate over the registered streams whose ``stream.json`` exists, so a new stream
needs no edit to ``prefect.yaml``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from storage import layout
from storage.base import ObjectStore
from storage.errors import StorageError
from storage.jsonl import parse_one
from storage.records import Id


class StreamEntry(BaseModel):
    """A registered stream (``registry/streams/<stream>.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: Id = Field(description="stream id")
    registered_at: AwareDatetime = Field(description="when the stream was first registered")


class UnknownStream(StorageError):
    """A stream name that is not registered; the message lists the known ones."""


def register_stream(store: ObjectStore, stream: str) -> bool:
    """Register ``stream`` (once). Returns True when it was not registered before."""
    key = layout.registry_key(stream)
    if store.exists(key):
        return False
    entry = StreamEntry(stream=stream, registered_at=datetime.now(UTC))
    store.put(key, entry.model_dump_json(indent=2).encode())
    return True


def read_entry(store: ObjectStore, stream: str) -> StreamEntry:
    """The stream's registry entry.

    Raises:
        ObjectNotFound: the stream is not registered.
        RecordError: the entry is not a valid StreamEntry.
    """
    key = layout.registry_key(stream)
    return parse_one(store.get(key), key, StreamEntry)


def registered_streams(store: ObjectStore) -> list[str]:
    """Sorted ids of the registered streams whose ``stream.json`` exists."""
    names = []
    for key in store.list(layout.REGISTRY_PREFIX):
        name = key[len(layout.REGISTRY_PREFIX):]
        if "/" in name or not name.endswith(".json"):
            continue
        stream = name.removesuffix(".json")
        try:
            layout.check_id("stream", stream)
        except ValueError:
            continue
        if store.exists(layout.stream_info_key(stream)):
            names.append(stream)
    return sorted(names)


def require_stream(store: ObjectStore, stream: str) -> None:
    """Check that ``stream`` is registered and described.

    Raises:
        UnknownStream: it is not; the message lists the known streams and the store.
    """
    layout.check_id("stream", stream)
    if store.exists(layout.registry_key(stream)) and store.exists(layout.stream_info_key(stream)):
        return
    known = registered_streams(store)
    listed = ", ".join(known) if known else "none yet (fmp stream create, or fmp stream publish)"
    raise UnknownStream(f"unknown stream {stream!r} in {store.url}; known streams: {listed}")


__all__ = ["StreamEntry", "UnknownStream", "read_entry", "register_stream", "registered_streams",
           "require_stream"]
