"""Open an ObjectStore from a URL or a plain path."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from storage.base import ObjectStore
from storage.errors import StoreConfigError
from storage.local import LocalStore
from storage.s3 import S3Store

#: Environment variable naming the S3 endpoint when the URL gives none (e.g. a moto server).
ENDPOINT_ENV = "FMP_S3_ENDPOINT_URL"
SUPPORTED = "a folder path, file:///abs/path, or s3://bucket[/prefix][?endpoint_url=...&region=...]"
_S3_PARAMS = {"endpoint_url", "region"}


def open_store(url: str) -> ObjectStore:
    """Open the store a URL names.

    Args:
        url: a plain folder path (``./data``), ``file:///abs/folder``, or
            ``s3://bucket/prefix`` with optional ``endpoint_url`` and ``region``
            query parameters. Without ``endpoint_url`` the env var
            ``FMP_S3_ENDPOINT_URL`` is used, else AWS's default endpoint; the region
            defaults to ``AWS_DEFAULT_REGION`` or ``us-east-1``.

    Returns:
        A LocalStore or an S3Store (the bucket is not created; see ``S3Store.ensure_bucket``).

    Raises:
        StoreConfigError: empty URL, unsupported scheme, or malformed file/s3 URL.
    """
    if not url or not url.strip():
        raise StoreConfigError(f"empty store URL; use {SUPPORTED}")
    if "://" not in url:
        return LocalStore(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _open_file(url, parts.netloc, parts.path, parts.query)
    if parts.scheme == "s3":
        return _open_s3(url, parts.netloc, parts.path, parts.query)
    raise StoreConfigError(
        f"unsupported store URL scheme {parts.scheme!r} in {url!r}; use {SUPPORTED}"
    )


def _open_file(url: str, netloc: str, path: str, query: str) -> LocalStore:
    if netloc not in ("", "localhost") or not path or query:
        raise StoreConfigError(
            f"bad file URL {url!r}; use file:///absolute/folder (no host, no query)"
        )
    return LocalStore(Path(unquote(path)))


def _open_s3(url: str, bucket: str, path: str, query: str) -> S3Store:
    if not bucket:
        raise StoreConfigError(f"S3 URL {url!r} has no bucket; use s3://bucket/prefix")
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - _S3_PARAMS)
    if unknown:
        raise StoreConfigError(
            f"unknown S3 URL parameter(s) {unknown} in {url!r}; allowed: {sorted(_S3_PARAMS)}"
        )
    endpoint = _single(params, "endpoint_url", url) or os.environ.get(ENDPOINT_ENV) or None
    region = _single(params, "region", url) or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return S3Store(bucket, unquote(path), endpoint_url=endpoint, region=region)


def _single(params: dict[str, list[str]], name: str, url: str) -> str | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) != 1 or not values[0]:
        raise StoreConfigError(
            f"S3 URL parameter {name!r} must be given once, non-empty, in {url!r}"
        )
    return values[0]
