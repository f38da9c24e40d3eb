"""A failing command prints its one error line and nothing from the interpreter's teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults

CATALOG = Path(__file__).parents[1] / "integration" / "fake_catalog.yaml"


def _fmp(prefect_api: str, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "FMP_HOME": str(tmp_path / "home"),
           "FMP_CATALOG": str(CATALOG), "PREFECT_LOGGING_LEVEL": "CRITICAL"}
    # the console script's entry point, as `fmp` runs it
    return subprocess.run([sys.executable, "-c", "from flows.cli import run; run()", *argv], env=env,
                          capture_output=True, text=True, timeout=240)


def test_a_failing_flow_command_prints_one_error_line_and_no_nanobind_chatter(prefect_api, tmp_path) -> None:
    stream = "red_circle_left_of_blue_square"
    published = _fmp(prefect_api, tmp_path, "stream", "publish", stream, "--batches", "1",
                     "--batch-size", "2")
    assert published.returncode == 0, published.stderr
    # feedback for a batch that has no results: fails inside the flow, with duckdb loaded
    failed = _fmp(prefect_api, tmp_path, "feedback", stream, "--batch", "b0000")
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert "nanobind" not in failed.stderr, failed.stderr[-2000:]
    assert [ln for ln in lines if "error" in ln.lower()] == [
        f"fmp feedback: error: {stream}/b0000: no complete results for policy 'fmp'; "
        "run stream_batch first"]
