"""Shared pytest fixtures. Sections are owned by different people; append, don't reorder."""

from __future__ import annotations

import os

# Before anything imports Prefect: no analytics, no tracking, room for a slow first start.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storage.moto import MotoServer
from storage.s3 import S3Store

# ---------------------------------------------------------------------------
# S3 (storage): one moto server per session, a fresh bucket per test.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server shared by the session (sets dummy AWS env vars if unset)."""
    with MotoServer() as server:
        yield server.endpoint_url


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    """One boto3 S3 client for the session (creating a client costs ~0.1 s)."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def s3_store(s3_endpoint: str, s3_client: Any) -> S3Store:
    """An S3Store on a new, uniquely named, existing bucket."""
    store = S3Store(f"fmp-test-{uuid.uuid4().hex[:16]}", endpoint_url=s3_endpoint, client=s3_client)
    store.ensure_bucket()
    return store


# ---------------------------------------------------------------------------
# Prefect: one real, temporary server for the whole session. Integration and fault tests share
# it: Prefect's client services (events, task-run records) are per process, so two servers in
# one test process would send one's records to the other.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """Prefect's test harness (startup allowed 120 s); yields its API URL (for child processes)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        url = PREFECT_API_URL.value()
        assert url
        yield str(url)


@pytest.fixture(scope="session")
def prefect_harness(prefect_api: str) -> Iterator[None]:
    """Run flows in this process against the session's Prefect server."""
    yield
