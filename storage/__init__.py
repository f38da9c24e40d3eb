"""Object storage for fmp: bytes in, typed records out (knows nothing of models or policies).

    open_store(url) -> ObjectStore        LocalStore (folder / file://) or S3Store (s3://)
    storage.records                       the pydantic records kept in the store
    storage.layout                        where each record lives (key builders)
    storage.batches                       typed verbs: write_batch, read_manifest, write_results...
    storage.moto                          a local moto S3 server for tests and demos

Heavy dependencies (boto3) are imported only when an S3 client is first needed.
"""

from __future__ import annotations

from storage.base import ObjectStore
from storage.errors import ObjectNotFound, RecordError, StorageError, StoreConfigError, StoreUnavailable
from storage.local import LocalStore
from storage.s3 import S3Store
from storage.url import open_store

__all__ = [
    "LocalStore",
    "ObjectNotFound",
    "ObjectStore",
    "RecordError",
    "S3Store",
    "StorageError",
    "StoreConfigError",
    "StoreUnavailable",
    "open_store",
]
