"""Add images from a folder or an S3 prefix to a stream: batches and manifests written for you.

``add_images`` lists the JPEG and PNG files under a source (a folder path, ``file://`` or
``s3://bucket/prefix`` URL, opened like the object store itself), leaves out those already in
one of the stream's batches, and writes the rest as new batches in the layout the batch flows
read (``storage.layout``): each batch's images first, its ``manifest.jsonl`` last. An item's
id is the image's path relative to the source (``animals/cat.jpg``), so adding the same
images again adds nothing, and labels name items by the paths their owners know.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from storage import batches, layout
from storage.base import ObjectStore, validate_key
from storage.errors import StorageError, StoreConfigError
from storage.records import ITEM_ID_MAX, ITEM_ID_PATTERN, ManifestItem
from storage.url import open_store

#: File name endings taken as images (case aside).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The first bytes of the formats accepted.
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
_BATCH_RE = re.compile(r"^b(\d+)$")
_ITEM_RE = re.compile(ITEM_ID_PATTERN)
DEFAULT_BATCH_SIZE = 32


class NoImages(StorageError, ValueError):
    """A source with no JPEG or PNG image under it."""


@dataclass(frozen=True)
class SourceListing:
    """The images under a source, and what was left out."""

    images: list[str]
    """Keys relative to the source, sorted: the item ids."""
    bad_names: list[str] = field(default_factory=list)
    """Image files whose paths are not valid item ids (characters outside A-Z a-z 0-9 _ . - /)."""
    other_files: int = 0
    """Files that are not JPEG or PNG by name (or hidden), left out."""


@dataclass(frozen=True)
class AddSummary:
    """What ``add_images`` wrote."""

    stream: str
    source: str
    batches: list[str]
    added: int
    already: int
    bad_names: list[str]
    not_images: list[str]
    other_files: int


def open_source(url: str) -> ObjectStore:
    """The store under a source URL; a folder must exist.

    Raises:
        StoreConfigError: the URL is malformed, or names a folder that does not exist.
    """
    store = open_store(url)
    root = getattr(store, "root", None)
    if isinstance(root, Path) and not root.is_dir():
        raise StoreConfigError(f"no folder {root} (SOURCE is a folder or an s3:// prefix of images)")
    return store


def valid_item_id(key: str) -> bool:
    """Is ``key`` usable as an item id: '/'-separated names of A-Z a-z 0-9 _ . -, none '.'/'..'."""
    return (len(key) <= ITEM_ID_MAX and _ITEM_RE.fullmatch(key) is not None
            and all(part not in (".", "..") for part in key.split("/")))


def list_source(source: ObjectStore) -> SourceListing:
    """The JPEG and PNG files under ``source`` by name (hidden files and folders left out).

    An S3 key ending in '/' (the zero-byte "folder" the S3 console creates) is no file: skipped.
    """
    images, bad, others = [], [], 0
    for key in source.list(""):
        if key.endswith("/"):
            continue
        if any(part.startswith(".") for part in key.split("/")) or \
                not key.lower().endswith(IMAGE_SUFFIXES):
            others += 1
        elif valid_item_id(key):
            images.append(key)
        else:
            bad.append(key)
    return SourceListing(sorted(images), sorted(bad), others)


def image_format(data: bytes) -> str | None:
    """``"JPEG"`` or ``"PNG"`` from the first bytes; None for anything else."""
    return next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)


def stream_items(store: ObjectStore, stream: str) -> dict[str, str]:
    """Every item id in the stream's complete batches, with its batch."""
    items: dict[str, str] = {}
    for batch in batches.list_batches(store, stream):
        for item in batches.read_manifest(store, stream, batch).records:
            items.setdefault(item.item_id, batch)
    return items


def next_batch_ids(existing: Iterable[str]) -> Callable[[], str]:
    """A generator of new batch ids ``b0000``, ``b0001``, ... after the highest existing one."""
    numbers = [int(m[1]) for b in existing if (m := _BATCH_RE.match(b))]
    counter = iter(range(max(numbers, default=-1) + 1, 10**9))

    def new_id() -> str:
        return f"b{next(counter):04d}"

    return new_id


def manifest_item(item_id: str, data: bytes, source_url: str) -> ManifestItem:
    """The manifest line of an added image: stored as ``images/<item id>`` in its batch.

    Its ``meta.source`` is where the image came from: ``source_url`` (without its query, such
    as an S3 URL's ``?endpoint_url=...``) joined with the item id.
    """
    where = source_url.split("?", 1)[0].rstrip("/")
    return ManifestItem(item_id=item_id, image=validate_key(f"images/{item_id}", what="image"),
                        meta={"source": f"{where}/{item_id}",
                              "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})


def add_images(store: ObjectStore, stream: str, source_url: str,
               batch_size: int = DEFAULT_BATCH_SIZE,
               on_batch: Callable[[str, int], None] | None = None) -> AddSummary:
    """Write the source's images that are not yet in ``stream`` as new batches.

    Args:
        store: the object store the flows read.
        stream: a described stream (``stream.json`` written).
        source_url: a folder path, ``file://`` URL or ``s3://bucket/prefix`` of images.
        batch_size: images per batch (the last batch may be smaller).
        on_batch: called with each batch id and its size once the batch is written.

    Returns:
        The batches written and what was added, already there, or left out (files whose
        contents are not JPEG or PNG, names that are not item ids, other files).

    Raises:
        StoreConfigError: a bad source URL or batch size.
        NoImages: the source has no JPEG or PNG image at all.
    """
    if batch_size < 1:
        raise StoreConfigError(f"batch size must be at least 1, got {batch_size}")
    layout.check_id("stream", stream)
    source = open_source(source_url)
    listing = list_source(source)
    if not listing.images:
        named = f" with a valid name ({len(listing.bad_names)} without)" if listing.bad_names else ""
        raise NoImages(f"no .jpg, .jpeg or .png file{named} under {source.url}")
    known = stream_items(store, stream)
    new = [key for key in listing.images if key not in known]
    new_id = next_batch_ids(batches.list_batches(store, stream))
    written: list[str] = []
    not_images: list[str] = []
    pending: list[tuple[ManifestItem, bytes]] = []

    def flush() -> None:
        batch = new_id()
        batches.write_batch(store, stream, batch, pending)
        written.append(batch)
        if on_batch is not None:
            on_batch(batch, len(pending))
        pending.clear()

    added = 0
    for key in new:
        data = source.get(key)
        if image_format(data) is None:
            not_images.append(key)
            continue
        pending.append((manifest_item(key, data, source.url), data))
        added += 1
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return AddSummary(stream=stream, source=source.url, batches=written, added=added,
                      already=len(listing.images) - len(new), bad_names=listing.bad_names,
                      not_images=not_images, other_files=listing.other_files)
