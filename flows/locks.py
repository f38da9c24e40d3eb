"""One writer for the policy store: a Prefect global concurrency limit with one slot.

DuckDB lets one process at a time hold its file. The store already retries while the
lock is taken, but two feedback runs racing would still interleave "what is pending?"
and "learn from it" decisions. Every run that writes takes the slot of
``fmp-store-writer`` first, so writers queue in Prefect (visible in the UI under
Concurrency) instead of inside DuckDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

WRITER_LIMIT = "fmp-store-writer"


def ensure_limit(name: str = WRITER_LIMIT, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` with ``limit`` slots unless it exists.

    An existing limit is left as it is, so an operator may raise or disable it in the UI.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit))
            except ObjectAlreadyExists:
                pass  # another run created it a moment ago


@contextmanager
def store_writer(timeout_s: float | None = None) -> Iterator[None]:
    """Hold the single writer slot of the policy store for the duration of the block.

    Args:
        timeout_s: how long to wait for the slot; ``None`` waits as long as it takes.

    Raises:
        TimeoutError: the slot was not free within ``timeout_s``.
    """
    from prefect.concurrency.sync import concurrency

    ensure_limit()
    with concurrency(WRITER_LIMIT, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield
