"""Typed verbs the flows use: streams, batches, labels and results in an ObjectStore.

Write order is the completion protocol: a batch's images go before its
``manifest.jsonl``, a result's ``results.jsonl`` before its ``_SUCCESS`` marker, so
a reader that finds the last object may trust everything it points to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from storage import layout
from storage.base import ObjectStore
from storage.errors import ObjectNotFound, RecordError, StorageError
from storage.faultpoints import fault_point
from storage.jsonl import ParsedLines, dump_jsonl, parse_jsonl, parse_one
from storage.records import BatchResultsMarker, Label, ManifestItem, ResultRow, StreamInfo
from storage.registry import register_stream


def write_stream_info(store: ObjectStore, info: StreamInfo) -> str:
    """Publish a stream's description and register the stream. Returns the key written."""
    key = layout.stream_info_key(info.stream)
    store.put(key, info.model_dump_json(indent=2).encode())
    register_stream(store, info.stream)
    return key


def read_stream_info(store: ObjectStore, stream: str) -> StreamInfo:
    """Read ``stream.json``.

    Raises:
        ObjectNotFound: the stream was never published (hint says so).
        RecordError: the file is not a valid StreamInfo.
    """
    key = layout.stream_info_key(stream)
    try:
        data = store.get(key)
    except ObjectNotFound as exc:
        raise ObjectNotFound(exc.store_url, key, f"publish the stream {stream!r} first") from exc
    return parse_one(data, key, StreamInfo)


def write_batch(
    store: ObjectStore, stream: str, batch: str, items: Sequence[tuple[ManifestItem, bytes]]
) -> str:
    """Write a batch: every image first, ``manifest.jsonl`` last (its presence = batch complete).

    Args:
        store: target store.
        stream: stream id.
        batch: batch id; an existing batch is overwritten.
        items: (manifest item, image bytes) pairs; item ids must be unique.

    Returns:
        The manifest key.
    """
    key = layout.manifest_key(stream, batch)
    manifest = dump_jsonl([item for item, _ in items], key, unique="item_id")
    images = [layout.image_key(stream, batch, item.image) for item, _ in items]
    first: dict[str, int] = {}
    for number, image in enumerate(images, start=1):
        if first.setdefault(image, number) != number:
            raise RecordError(key, number, f"image {image!r} already used on line {first[image]}")
    for image, (_, data) in zip(images, items, strict=True):
        store.put(image, data)
    store.put(key, manifest)
    return key


def read_manifest(store: ObjectStore, stream: str, batch: str) -> ParsedLines[ManifestItem]:
    """Read a batch's manifest tolerantly (bad or duplicate lines become RecordErrors).

    Raises:
        ObjectNotFound: the batch has no manifest (missing or not yet complete).
    """
    key = layout.manifest_key(stream, batch)
    return parse_jsonl(store.get(key), key, ManifestItem, unique="item_id")


def read_image(store: ObjectStore, stream: str, batch: str, item: ManifestItem) -> bytes:
    """Read one item's image bytes.

    Raises:
        ObjectNotFound: the manifest names an image that is not in the store.
    """
    key = layout.image_key(stream, batch, item.image)
    try:
        return store.get(key)
    except ObjectNotFound as exc:
        hint = f"item {item.item_id!r} of manifest {layout.manifest_key(stream, batch)} names it"
        raise ObjectNotFound(exc.store_url, key, hint) from exc


def write_labels(store: ObjectStore, stream: str, batch: str, labels: Sequence[Label]) -> str:
    """Write a batch's ground-truth labels (unique item ids). Returns the key written."""
    key = layout.labels_key(stream, batch)
    store.put(key, dump_jsonl(labels, key, unique="item_id"))
    return key


def read_labels(store: ObjectStore, stream: str, batch: str) -> ParsedLines[Label]:
    """Read a batch's labels tolerantly.

    Raises:
        ObjectNotFound: no feedback was written for the batch.
    """
    key = layout.labels_key(stream, batch)
    return parse_jsonl(store.get(key), key, Label, unique="item_id")


def write_results(
    store: ObjectStore,
    stream: str,
    policy: str,
    batch: str,
    rows: Sequence[ResultRow],
    *,
    policy_version: int,
    program_id: str,
    created_at: datetime | None = None,
) -> BatchResultsMarker:
    """Write a batch's results: ``results.jsonl`` first, the ``_SUCCESS`` marker last.

    An existing marker is deleted first, so while results are rewritten readers see
    "not done" rather than an old marker over new data.

    Args:
        store: target store.
        stream: stream id.
        policy: policy id.
        batch: batch id.
        rows: one row per item (unique item ids).
        policy_version: version of the policy that produced the rows.
        program_id: id of the program that ran.
        created_at: marker timestamp (timezone-aware); now (UTC) when None.

    Returns:
        The marker written (rows count and sha256 of the results bytes).
    """
    data_key = layout.results_key(stream, policy, batch)
    marker_key = layout.success_key(stream, policy, batch)
    data = dump_jsonl(rows, data_key, unique="item_id")
    marker = BatchResultsMarker(
        stream=stream,
        batch=batch,
        policy=policy,
        policy_version=policy_version,
        program_id=program_id,
        rows=len(rows),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=created_at or datetime.now(UTC),
    )
    fault_point("results-before")
    store.delete(marker_key)
    store.put(data_key, data)
    fault_point("results-between")
    store.put(marker_key, marker.model_dump_json(indent=2).encode())
    fault_point("results-after")
    return marker


def read_results(
    store: ObjectStore, stream: str, policy: str, batch: str
) -> tuple[BatchResultsMarker, list[ResultRow]] | None:
    """Read a batch's results if they are complete.

    Returns:
        (marker, rows) when ``_SUCCESS`` exists; None when it does not (not run or in progress).

    Raises:
        StorageError: the data is missing or disagrees with the marker (a torn write).
        RecordError: the marker or a row is invalid.
    """
    marker_key = layout.success_key(stream, policy, batch)
    try:
        marker = parse_one(store.get(marker_key), marker_key, BatchResultsMarker)
    except ObjectNotFound:
        return None
    where = f"{store.url} {marker_key}"
    if (marker.stream, marker.policy, marker.batch) != (stream, policy, batch):
        raise StorageError(
            f"{where} is for {marker.stream}/{marker.policy}/{marker.batch}; copied by hand?"
        )
    data_key = layout.results_key(stream, policy, batch)
    try:
        data = store.get(data_key)
    except ObjectNotFound as exc:
        raise StorageError(
            f"torn write: {where} exists but {data_key} does not; rerun the batch"
        ) from exc
    if hashlib.sha256(data).hexdigest() != marker.sha256:
        raise StorageError(
            f"torn write: sha256 of {data_key} differs from {where}; rerun the batch"
        )
    rows = parse_jsonl(data, data_key, ResultRow, unique="item_id").strict()
    if len(rows) != marker.rows:
        raise StorageError(
            f"torn write: {data_key} has {len(rows)} rows, {where} says {marker.rows};"
            " rerun the batch"
        )
    return marker, rows


def _ids_with(store: ObjectStore, prefix: str, suffix: str) -> list[str]:
    """Sorted ids X for which ``<prefix>X/<suffix>`` exists (X is one key segment)."""
    ids = []
    for key in store.list(prefix):
        rest = key[len(prefix) :]
        head, sep, tail = rest.partition("/")
        if sep and tail == suffix:
            ids.append(head)
    return sorted(ids)


def list_batches(store: ObjectStore, stream: str) -> list[str]:
    """Sorted ids of the stream's complete batches (those with a manifest)."""
    return _ids_with(store, layout.batches_prefix(stream), layout.MANIFEST)


def list_feedback(store: ObjectStore, stream: str) -> list[str]:
    """Sorted ids of the stream's batches that have labels."""
    return _ids_with(store, layout.feedback_prefix(stream), layout.LABELS)


def list_results(store: ObjectStore, stream: str, policy: str) -> list[str]:
    """Sorted ids of the batches with complete results (a ``_SUCCESS`` marker) for a policy."""
    return _ids_with(store, layout.policy_results_prefix(stream, policy), layout.SUCCESS)
