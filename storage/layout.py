"""Key builders for the bucket layout (the only place that spells out key paths).

streams/<stream>/stream.json                              StreamInfo
streams/<stream>/batches/<batch>/images/<item_id>.png     image bytes (written first)
streams/<stream>/batches/<batch>/manifest.jsonl           ManifestItem lines (LAST = complete)
streams/<stream>/feedback/<batch>/labels.jsonl            Label lines
streams/<stream>/results/<policy>/<batch>/results.jsonl   ResultRow lines (data first)
streams/<stream>/results/<policy>/<batch>/_SUCCESS        BatchResultsMarker (LAST)
streams/<stream>/audits/<policy>/<batch>/<step>.jsonl     calls an audit computed (one per feedback run)
registry/streams/<stream>.json                            StreamEntry (the stream registry)
policies/...                                              reserved
"""

from __future__ import annotations

import re

from storage.base import validate_key
from storage.errors import StoreConfigError
from storage.records import ID_PATTERN

MANIFEST = "manifest.jsonl"
LABELS = "labels.jsonl"
RESULTS = "results.jsonl"
SUCCESS = "_SUCCESS"
_ID_RE = re.compile(ID_PATTERN)


def check_id(kind: str, value: str) -> str:
    """Check a stream/batch/policy id.

    Args:
        kind: what the id names ("stream", "batch", "policy"), for the message.
        value: the id.

    Returns:
        The id unchanged.

    Raises:
        StoreConfigError: the id does not match ``^[A-Za-z0-9_.-]{1,64}$`` or is '.'/'..'.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value) or value in (".", ".."):
        raise StoreConfigError(
            f"bad {kind} id {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . - (not '.' or '..')"
        )
    return value


def stream_prefix(stream: str) -> str:
    """``streams/<stream>/``."""
    return f"streams/{check_id('stream', stream)}/"


def stream_info_key(stream: str) -> str:
    """``streams/<stream>/stream.json``."""
    return f"{stream_prefix(stream)}stream.json"


def batches_prefix(stream: str) -> str:
    """``streams/<stream>/batches/`` (parent of every batch folder)."""
    return f"{stream_prefix(stream)}batches/"


def batch_prefix(stream: str, batch: str) -> str:
    """``streams/<stream>/batches/<batch>/`` (ManifestItem.image is relative to it)."""
    return f"{batches_prefix(stream)}{check_id('batch', batch)}/"


def manifest_key(stream: str, batch: str) -> str:
    """``streams/<stream>/batches/<batch>/manifest.jsonl``."""
    return batch_prefix(stream, batch) + MANIFEST


def image_relative(item_id: str) -> str:
    """The conventional ManifestItem.image for an item: ``images/<item_id>.png``."""
    return validate_key(f"images/{item_id}.png", what="image")


def image_key(stream: str, batch: str, relative: str) -> str:
    """Full key of an image given its batch-relative key (ManifestItem.image).

    Args:
        stream: stream id.
        batch: batch id.
        relative: key relative to the batch folder, e.g. ``images/000017.png``.

    Returns:
        ``streams/<stream>/batches/<batch>/<relative>``.
    """
    return batch_prefix(stream, batch) + validate_key(relative, what="image")


def feedback_prefix(stream: str) -> str:
    """``streams/<stream>/feedback/``."""
    return f"{stream_prefix(stream)}feedback/"


def labels_key(stream: str, batch: str) -> str:
    """``streams/<stream>/feedback/<batch>/labels.jsonl``."""
    return f"{feedback_prefix(stream)}{check_id('batch', batch)}/{LABELS}"


def policy_results_prefix(stream: str, policy: str) -> str:
    """``streams/<stream>/results/<policy>/``."""
    return f"{stream_prefix(stream)}results/{check_id('policy', policy)}/"


def results_key(stream: str, policy: str, batch: str) -> str:
    """``streams/<stream>/results/<policy>/<batch>/results.jsonl``."""
    return f"{policy_results_prefix(stream, policy)}{check_id('batch', batch)}/{RESULTS}"


def success_key(stream: str, policy: str, batch: str) -> str:
    """``streams/<stream>/results/<policy>/<batch>/_SUCCESS``."""
    return f"{policy_results_prefix(stream, policy)}{check_id('batch', batch)}/{SUCCESS}"


def audit_calls_prefix(stream: str, policy: str) -> str:
    """``streams/<stream>/audits/<policy>/``."""
    return f"{stream_prefix(stream)}audits/{check_id('policy', policy)}/"


def audit_calls_key(stream: str, policy: str, batch: str, step: str) -> str:
    """``streams/<stream>/audits/<policy>/<batch>/<step>.jsonl``: the calls the ``confirmed``
    policy's audits computed in the feedback run (``step``) that learned from ``batch``."""
    return f"{audit_calls_prefix(stream, policy)}{check_id('batch', batch)}/{check_id('step', step)}.jsonl"


#: Prefix of the stream registry: one small object per stream, so discovery and feedback find
#: every stream without listing the streams' images.
REGISTRY_PREFIX = "registry/streams/"


def registry_key(stream: str) -> str:
    """``registry/streams/<stream>.json``."""
    return f"{REGISTRY_PREFIX}{check_id('stream', stream)}.json"
