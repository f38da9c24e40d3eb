"""S3 faults cost neither unbounded time nor computed work: a frozen endpoint (moto stopped
with SIGSTOP) fails a call with one line within the bound; results computed before a failed
write are kept and written by the next run without recomputing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config

from benchmarks.scenes import encode_png
from flows import _batch
from flows._batch import kept_results, process_batch
from flows.settings import Settings
from modules.registry import Registry
from modules.tasks import local_round_runner
from storage import batches
from storage.errors import StorageError, StoreUnavailable
from storage.moto import MotoServer
from storage.records import ManifestItem, StreamInfo
from storage.s3 import S3Store

pytestmark = pytest.mark.faults

#: The bound an operator is promised for a call to a frozen endpoint.
HUNG_CALL_BOUND_S = 30.0
CATALOG = Path(__file__).parents[1] / "integration" / "fake_catalog.yaml"
PROGRAM = '''def execute_command(image):
    if not exists(image, "circle"):
        return False
    return verify_property(image, "circle", "red")
'''
MONO = 'def execute_command(image):\n    return query(image, "Is there a red circle?") == "yes"\n'


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    """A moto server of the test's own (it gets frozen)."""
    with MotoServer() as server:
        yield server
        _thaw(server)


def _pid(server: MotoServer) -> int:
    assert server._proc is not None
    return server._proc.pid


def _freeze(server: MotoServer) -> None:
    os.kill(_pid(server), signal.SIGSTOP)


def _thaw(server: MotoServer) -> None:
    if server.running:
        os.kill(_pid(server), signal.SIGCONT)


def test_a_call_to_a_frozen_endpoint_fails_with_one_line_within_the_bound(moto: MotoServer) -> None:
    store = S3Store("frozen", endpoint_url=moto.endpoint_url)  # the client as open_store makes it
    store.ensure_bucket()
    store.put("a/b.json", b"{}")
    _freeze(moto)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        store.get("a/b.json")
    waited = time.monotonic() - start
    print(f"\nfrozen endpoint: the call failed after {waited:.1f} s: {info.value}")
    assert waited < HUNG_CALL_BOUND_S
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("cannot read s3://frozen/a/b.json: Read timeout on endpoint URL")
    _thaw(moto)
    assert store.get("a/b.json") == b"{}"  # the store is fine again, and so is the client


def test_results_computed_before_a_failed_write_are_kept_and_written_later(
        moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a client that gives up fast, so that the test does not wait out the real bounds
    client = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                          config=Config(connect_timeout=1, read_timeout=1,
                                        retries={"mode": "standard", "total_max_attempts": 2}))
    store = S3Store("results", endpoint_url=moto.endpoint_url, client=client)
    store.ensure_bucket()
    batches.write_stream_info(store, StreamInfo(
        stream="s1", query_id="red_circle", question="Is there a red circle?", answer_type="bool",
        program=PROGRAM, monolithic_program=MONO))
    rng = np.random.default_rng(0)
    batches.write_batch(store, "s1", "b0001", [
        (ManifestItem(item_id=f"i{k}", image=f"images/i{k}.png"),
         encode_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))) for k in range(5)])
    monkeypatch.setattr(_batch, "WRITE_PAUSES_S", (0.1, 0.1))
    settings = Settings(home=tmp_path, catalog=CATALOG)
    registry = Registry.from_catalog(CATALOG)
    answer = local_round_runner(registry)
    calls: list[int] = []

    def freeze_after_reading(requests):  # the images are read: the store freezes mid-batch
        calls.append(len(requests))
        _freeze(moto)
        return answer(requests)

    published: list[tuple[int, list[Any]]] = []  # what the flow would post as its artifact

    def publish(summary: Any, rows: list[Any]) -> None:
        published.append((summary.items, rows))

    with pytest.raises(StorageError) as info:
        process_batch(settings, store, registry, "s1", "b0001", "learned", freeze_after_reading,
                      written=publish)
    assert published == []  # no artifact for results that are not in the store
    message = str(info.value)
    assert message.startswith("s1/b0001: results of 5 items not written to s3://results/")
    assert f"kept in {kept_results(settings).url}, the next run of the batch writes them" in message
    kept = batches.read_results(kept_results(settings), "s1", "learned", "b0001")
    assert kept is not None and len(kept[1]) == 5
    _thaw(moto)
    assert batches.read_results(store, "s1", "learned", "b0001") is None  # nothing half-written
    computed = len(calls)
    assert computed > 0

    summary = process_batch(settings, store, registry, "s1", "b0001", "learned", freeze_after_reading,
                            written=publish)
    assert len(calls) == computed  # written, not recomputed
    assert (summary.items, summary.failed) == (5, 0)
    written = batches.read_results(store, "s1", "learned", "b0001")
    assert written is not None
    marker, rows = written
    assert rows == kept[1] and marker.created_at == kept[0].created_at
    assert published == [(5, rows)]  # the artifact shows the rows the store now holds
    assert batches.read_results(kept_results(settings), "s1", "learned", "b0001") is None
