"""A writer killed inside its block (kill -9) blocks no later writer for long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flows.locks import WRITER_LIMIT, lock_path, store_writer

pytestmark = pytest.mark.faults

#: The bound an operator is promised: a stale writer slot is reclaimed within this.
RECLAIM_BOUND_S = 60.0

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from flows.locks import store_writer
    with store_writer(database=Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(600)
""")


def _holder(prefect_api: str, database: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(database)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    proc.stdout.close()
    assert line == "held", "the holder never got the writer slot"
    return proc


def _active_slots() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(WRITER_LIMIT).active_slots


def test_a_writer_killed_inside_its_block_is_replaced_within_the_bound(prefect_api, tmp_path) -> None:
    database = tmp_path / "fmp.duckdb"
    proc = _holder(prefect_api, database)
    assert _active_slots() == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _active_slots() == 1  # the dead holder's slot is still taken on the server
    start = time.monotonic()
    with store_writer(timeout_s=RECLAIM_BOUND_S, database=database):
        waited = time.monotonic() - start
        assert _active_slots() == 1  # ours
    print(f"\nstale writer slot reclaimed after {waited:.1f} s")
    assert waited < RECLAIM_BOUND_S
    assert _active_slots() == 0


def test_a_live_writer_is_waited_for_not_reclaimed(prefect_api, tmp_path) -> None:
    database = tmp_path / "fmp.duckdb"
    proc = _holder(prefect_api, database)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=rf"{lock_path(database)}: the store writer lock is "
                                               rf"held by pid {proc.pid} \(waited 4s\)"):
            with store_writer(timeout_s=4, database=database):
                pass
        assert 4 <= time.monotonic() - start < 10
        assert _active_slots() == 1  # the live holder keeps its slot
    finally:
        proc.kill()
        proc.wait()
    with store_writer(timeout_s=RECLAIM_BOUND_S, database=database):
        pass
    assert _active_slots() == 0


def test_a_free_slot_is_taken_in_one_request_and_a_missing_limit_created(prefect_api, tmp_path,
                                                                          monkeypatch) -> None:
    import httpx

    sent: list[tuple[str, str]] = []
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(client, request, *args, **kwargs):
        sent.append((request.method, request.url.path))
        return sync_send(client, request, *args, **kwargs)

    async def asend(client, request, *args, **kwargs):
        sent.append((request.method, request.url.path))
        return await async_send(client, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", asend)
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:  # as on a fresh server: no limit yet
        try:
            client.delete_global_concurrency_limit_by_name(WRITER_LIMIT)
        except ObjectNotFound:
            pass
    database = tmp_path / "fmp.duckdb"
    sent.clear()
    with store_writer(database=database):
        assert _active_slots() == 1
    limits = [(m, p) for m, p in sent if "concurrency_limits" in p and "/leases/" not in p]
    assert ("POST", "/api/v2/concurrency_limits/") in limits  # created on first use
    sent.clear()
    with store_writer(database=database):
        pass
    limits = [(m, p) for m, p in sent if "concurrency_limits" in p]
    # the slot free: taken and given back, the limit never read, the lease not renewed at once
    assert limits == [("POST", "/api/v2/concurrency_limits/increment-with-lease"),
                      ("POST", "/api/v2/concurrency_limits/decrement-with-lease")]
    assert _active_slots() == 0


def test_a_held_slot_has_its_lease_renewed_until_it_is_given_back(prefect_api, tmp_path, monkeypatch,
                                                                  caplog) -> None:
    import httpx

    import flows.locks

    renewed: list[str] = []
    sync_send = httpx.Client.send

    def send(client, request, *args, **kwargs):
        if request.url.path.endswith("/renew"):
            renewed.append(request.url.path)
            if len(renewed) == 2:  # one renewal fails: a warning, and the block goes on
                raise httpx.ConnectError("refused", request=request)
        return sync_send(client, request, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(flows.locks, "RENEW_AT", 0.5 / flows.locks.LEASE_S)  # every 0.5 s
    database = tmp_path / "fmp.duckdb"
    with store_writer(database=database):
        time.sleep(1.8)
        assert _active_slots() == 1
    during = len(renewed)
    time.sleep(1.0)
    assert 3 <= during <= 4 and len(renewed) == during  # none after the slot was given back
    assert len(set(renewed)) == 1  # one lease
    assert _active_slots() == 0
    assert any("could not renew the lease of the fmp-store-writer slot (ConnectError" in r.getMessage()
               for r in caplog.records)
