"""Helper servers die with the process that started them: kill -9 or SIGTERM of the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.faults import alive as _alive
from benchmarks.faults import children as _children
from storage.moto import free_port

pytestmark = pytest.mark.faults

#: How long a child may outlive its parent.
BOUND_S = 10.0


def _gone_within(pid: int, bound_s: float) -> float:
    start = time.monotonic()
    while _alive(pid):
        assert time.monotonic() - start < bound_s, f"child {pid} still running {bound_s}s after its parent"
        time.sleep(0.1)
    return time.monotonic() - start


def _started(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    assert text in line, line
    return line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_moto_server_dies_with_storage_moto(sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "storage.moto", "--port", str(free_port())],
                            stdout=subprocess.PIPE, text=True)
    _started(proc, "moto S3 on")
    (server,) = _children(proc.pid)
    os.kill(proc.pid, sig)
    proc.wait(timeout=BOUND_S)
    print(f"\nmoto_server gone {_gone_within(server, BOUND_S):.1f} s after {sig.name} of its parent")


SERVER_PARENT = textwrap.dedent("""
    import time
    from flows._server import adopt_temporary_server
    from prefect.client.orchestration import get_client
    from prefect.server.api.server import SubprocessASGIServer

    adopt_temporary_server()
    with get_client(sync_client=True) as client:
        client.hello()  # the temporary server is up and answering
    print("server", SubprocessASGIServer._instances[None].server_process.pid, flush=True)
    time.sleep(600)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_temporary_prefect_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    proc = subprocess.Popen([sys.executable, "-c", SERVER_PARENT], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        server = int(_started(proc, "server").split()[1])
        assert _alive(server)
    finally:
        proc.kill()
        proc.wait()
    print(f"\ntemporary Prefect server gone {_gone_within(server, BOUND_S):.1f} s after kill -9 "
          "of its parent")
