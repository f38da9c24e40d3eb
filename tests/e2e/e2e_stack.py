"""A real local stack for the end-to-end test: Prefect server, worker, REST polling, Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
T = TypeVar("T")


def base_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment of every subprocess: quiet, untracked, isolated Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


class Process:
    """A background subprocess whose output goes to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._file = self.log.open("wb")
        self.proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=self._file,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, sig: int, timeout_s: float = 30) -> None:
        """Send ``sig`` (SIGINT for a worker, SIGTERM for the server); kill after the timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._file.close()


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float,
             explain: Callable[[], str] = lambda: "", every_s: float = 1.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{explain()}")


def run(args: list[str], env: dict[str, str], timeout_s: float = 120) -> str:
    """Run a command to completion in the repository root; its output, or an error with it."""
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Api:
    """The few REST calls the test needs (plain HTTP, independent of any Prefect client context)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    def healthy(self) -> bool:
        try:
            return self.http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def flow_run(self, name: str) -> dict[str, Any] | None:
        runs = self.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
        return runs[0] if runs else None

    def task_run_names(self, flow_run_id: str) -> list[str]:
        runs = self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        return sorted(r["name"] for r in runs)

    def artifact_keys(self) -> list[str]:
        return sorted({a["key"] for a in self.post("/artifacts/filter", {}) if a.get("key")})

    def deployment(self, name: str) -> dict[str, Any]:
        response = self.http.get(f"/deployments/name/{name}")
        response.raise_for_status()
        return response.json()

    def runs_overview(self) -> str:
        runs = self.post("/flow_runs/filter", {})
        return "\n".join(f"{r['name']}: {r['state_type']} {r['state_name']}" for r in runs)


def chromium(url: str, screenshot: Path, needles: tuple[str, ...] = (),
             budgets_ms: tuple[int, ...] = (15000, 30000, 60000)) -> str:
    """Load ``url`` in headless Chromium; its DOM, once every needle is in it.

    The single-page UI renders after its API calls return, which on a loaded machine can
    outlast the virtual-time budget, so a page missing a needle is loaded again with a
    larger budget. The screenshot is taken by the same load as the DOM.
    """
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    dom = ""
    for budget in budgets_ms:
        args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--virtual-time-budget={budget}", "--window-size=1600,1000",
                f"--screenshot={screenshot}", "--dump-dom", url]
        dom = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
        if all(n in dom for n in needles):
            break
    return dom
