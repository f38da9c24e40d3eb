"""An object store backed by an S3 bucket (or an S3-compatible server such as moto).

Credentials come only from the environment / boto3's default chain, never from code.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from storage.base import ObjectStore, validate_key
from storage.errors import ObjectNotFound, StorageError, StoreConfigError, StoreUnavailable

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# S3's rules for new bucket names (lowercase, digits, '.', '-'; 3-63 characters).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Seconds to open a connection and to wait for each read of a response. Without them botocore
#: waits 60 s per read, and a frozen endpoint (one that accepts connections but never answers)
#: held a call for minutes.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 6.0
#: Tries per call (botocore's "standard" mode: the first plus retries, exponential backoff with
#: jitter, at most 2 s then 4 s). A call that never gets an answer fails after at most
#: 3 × 6 s + 6 s = 24 s (plus connects), with one line naming the endpoint.
ATTEMPTS = 3


class S3Store(ObjectStore):
    """Objects are S3 objects ``<prefix>/<key>`` in ``bucket``.

    Args:
        bucket: bucket name.
        prefix: key prefix inside the bucket ("" for the bucket root); slashes trimmed.
        endpoint_url: S3 endpoint (e.g. a moto server); None for AWS's default.
        region: AWS region for the client and for ``ensure_bucket``.
        client: a ready boto3 S3 client (tests share one); created lazily when None.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client: Any = None,
    ) -> None:
        if not _BUCKET_RE.fullmatch(bucket):
            raise StoreConfigError(
                f"bad S3 bucket name {bucket!r}: use 3-63 lowercase letters, digits, '.' or '-'"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix, what="S3 prefix")
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = client
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        base = f"s3://{self.bucket}/{self.prefix}"
        if self.endpoint_url:
            return f"{base}?endpoint_url={quote(self.endpoint_url, safe=':/')}"
        return base

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use (boto3 is imported only then)."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                                retries={"mode": "standard", "total_max_attempts": ATTEMPTS})
                self._client = boto3.client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
                )
            return self._client

    def __getstate__(self) -> dict[str, Any]:
        # Clients and locks do not pickle; a copy (e.g. in a worker) makes its own.
        state = self.__dict__.copy()
        state["_client"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent)."""
        from botocore.exceptions import ClientError

        with self._errors("check bucket", ""):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":  # us-east-1 rejects an explicit constraint
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.client.create_bucket(**kwargs)
            except ClientError as exc:
                if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        """``s3://bucket/prefix/key`` for messages (``key`` "" names the prefix itself)."""
        return f"s3://{self.bucket}/{self._full(key)}".rstrip("/")

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn botocore failures into StorageError naming the bucket and key."""
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            yield
        except (BotoConnectionError, HTTPClientError) as exc:  # timeouts, refused, reset
            raise StoreUnavailable(f"cannot {action} {self._where(key)}: {exc}") from exc
        except (ClientError, BotoCoreError) as exc:
            where = self._where(key)
            hint = ""
            if isinstance(exc, ClientError) and _code(exc) == "NoSuchBucket":
                at = f" at {self.endpoint_url}" if self.endpoint_url else ""
                hint = (f" (no bucket {self.bucket!r}{at}: check the URL, or create it first, "
                        "e.g. S3Store.ensure_bucket())")
            raise StorageError(f"cannot {action} {where}: {exc}{hint}") from exc

    def _put(self, key: str, data: bytes) -> None:
        # A single PutObject is atomic: readers see the old object or the new one.
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def _get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        with self._errors("read", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    raise ObjectNotFound(self.url, key) from exc
                raise
            body: bytes = response["Body"].read()
            return body

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors("check", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._full(key))
                return True
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    return False
                raise

    def _list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._full(prefix)
            )
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return keys

    def _delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))


def _code(exc: Any) -> str:
    """The error code of a botocore ClientError ("" when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))
