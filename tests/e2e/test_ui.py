"""End to end: prefect server, `prefect deploy --all`, a process worker, S3 (moto), the UI.

What a new user does by following docs/operations.md, with the fake catalog so the batch
is quick: publish a stream to S3, let discovery start the batch's run on the worker,
ingest its feedback, then look at the Runs page, the task runs and the artifacts in
headless Chromium. Screenshots land in ``.fmp/e2e/``.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.moto import free_port

from e2e_stack import BIN, CHROMIUM, REPO, Api, Process, base_env, chromium, run, wait_for

pytestmark = pytest.mark.e2e

STREAM = "red_circle_left_of_blue_square"
BATCH_RUN = f"stream_batch/{STREAM}/b0000"
FEEDBACK_RUN = f"ingest_feedback/{STREAM}/b0000"
BATCH_KEY = "batch-red-circle-left-of-blue-square-fmp"
FEEDBACK_KEY = "feedback-red-circle-left-of-blue-square-fmp"
TREND_KEY = "trend-red-circle-left-of-blue-square-fmp"
FAKE_BACKENDS = ("det-cheap", "det-big", "attr-cheap", "attr-big")
SHOTS = REPO / ".fmp" / "e2e"


@dataclass
class Stack:
    ui: str
    api: Api
    env: dict[str, str]
    worker: Process


def _wait_completed(stack: Stack, name: str, timeout_s: float = 90) -> dict:
    def probe() -> dict | None:
        run_ = stack.api.flow_run(name)
        if run_ and run_["state_type"] in ("FAILED", "CRASHED", "CANCELLED"):
            raise AssertionError(f"{name} ended {run_['state_name']}\n{stack.worker.tail()}")
        return run_ if run_ and run_["state_type"] == "COMPLETED" else None

    return wait_for(f"flow run {name} to complete", probe, timeout_s,
                    lambda: stack.api.runs_overview() + "\n" + stack.worker.tail())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Stack]:
    """Server, work pool, deployments, a published stream, a worker; one batch and its feedback."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (make install does it as root)")
    root = tmp_path_factory.mktemp("e2e")
    (root / "logs").mkdir()
    port = free_port()
    ui, api_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    server_env = base_env(root / "prefect")
    # the UI must call this server, not the default port; schedules are asserted, not waited for
    server_env.update(PREFECT_UI_API_URL=api_url, PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false")
    server = Process("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)], server_env, root / "logs")
    worker = None
    api = Api(api_url)
    try:
        wait_for("the Prefect server to answer /api/health", api.healthy, 120, server.tail)
        env = base_env(root / "prefect", api_url)
        env.update(FMP_CATALOG=str(REPO / "tests/integration/fake_catalog.yaml"),
                   FMP_HOME=str(root / "home"), FMP_STORAGE_URL="s3://fmp-e2e/streams",
                   FMP_S3_ENDPOINT_URL=s3_endpoint, PREFECT_WORKER_QUERY_SECONDS="2")
        run([str(BIN / "prefect"), "work-pool", "create", "fmp-process", "--type", "process"], env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, timeout_s=300)
        run([str(BIN / "fmp"), "stream", "publish", STREAM, "--batches", "1", "--batch-size", "4",
             "--create-bucket"], env)
        worker = Process("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "fmp-process"],
                         env, root / "logs")
        stack_ = Stack(ui, api, env, worker)
        run([str(BIN / "prefect"), "deployment", "run", "discover_batches/discover",
             "--param", f"stream={STREAM}"], env)
        _wait_completed(stack_, BATCH_RUN)
        run([str(BIN / "prefect"), "deployment", "run", "ingest_feedback/ingest-feedback",
             "--param", f"stream={STREAM}", "--param", "batch=b0000"], env)
        _wait_completed(stack_, FEEDBACK_RUN)
        yield stack_
    finally:
        if worker is not None:
            worker.stop(signal.SIGINT)
        server.stop(signal.SIGTERM)
        api.close()


def test_deploy_created_the_pool_schedules_and_parameters(stack: Stack) -> None:
    discover = stack.api.deployment("discover_batches/discover")
    assert discover["work_pool_name"] == "fmp-process"
    # one schedule each for discovery and feedback, over every registered stream
    for name, slug in (("discover_batches/discover", "discover-all-streams"),
                       ("ingest_feedback_all/feedback", "feedback-all-streams")):
        (schedule,) = stack.api.deployment(name)["schedules"]
        assert schedule["slug"] == slug and schedule["parameters"] == {}
        assert schedule["schedule"]["interval"] == 60.0 and schedule["active"]
    assert not stack.api.deployment("ingest_feedback/ingest-feedback")["schedules"]
    batch = stack.api.deployment("stream_batch/stream-batch")
    described = batch["parameter_openapi_schema"]["properties"]["batch"]["description"]
    assert described.startswith("the batch id; ``None`` takes the oldest batch")


def test_runs_page_lists_the_batch_run_with_its_tags(stack: Stack) -> None:
    dom = chromium(f"{stack.ui}/runs", SHOTS / "runs.png", (BATCH_RUN, FEEDBACK_RUN))
    assert BATCH_RUN in dom and FEEDBACK_RUN in dom and f"discover/{STREAM}" in dom
    assert f"stream:{STREAM}" in dom and f"query:{STREAM}" in dom
    assert (SHOTS / "runs.png").stat().st_size > 10_000


def test_task_runs_are_named_by_call_site_and_backend(stack: Stack) -> None:
    flow_run = stack.api.flow_run(BATCH_RUN)
    names = stack.api.task_run_names(flow_run["id"])
    assert names and all(n.startswith("exists@") and n.endswith(
        tuple(f"[{b}]" for b in FAKE_BACKENDS)) for n in names), names
    dom = chromium(f"{stack.ui}/runs?tab=task-runs", SHOTS / "task-runs.png", tuple(names))
    missing = [n for n in names if n not in dom]
    assert not missing, f"the Runs page's task runs tab does not show {missing}"
    chromium(f"{stack.ui}/runs/flow-run/{flow_run['id']}", SHOTS / "flow-run.png", tuple(names))


def test_artifacts_page_lists_the_batch_table_and_the_feedback_report(stack: Stack) -> None:
    assert stack.api.artifact_keys() == [BATCH_KEY, FEEDBACK_KEY, TREND_KEY]
    dom = chromium(f"{stack.ui}/artifacts", SHOTS / "artifacts.png", (BATCH_KEY, FEEDBACK_KEY))
    assert BATCH_KEY in dom and FEEDBACK_KEY in dom
    artifact = stack.api.post("/artifacts/filter", {"artifacts": {"key": {"any_": [FEEDBACK_KEY]}}})[0]
    dom = chromium(f"{stack.ui}/artifacts/artifact/{artifact['id']}", SHOTS / "feedback.png",
                   ("How its choices moved",))
    assert "savings vs monolithic so far" in dom and "How its choices moved" in dom


def test_the_trend_artifact_shows_its_chart_as_an_image(stack: Stack) -> None:
    artifact = stack.api.post("/artifacts/filter", {"artifacts": {"key": {"any_": [TREND_KEY]}}})[0]
    dom = chromium(f"{stack.ui}/artifacts/artifact/{artifact['id']}", SHOTS / "trend.png",
                   ("data:image/svg+xml;base64,",))
    assert "<img" in dom and 'src="data:image/svg+xml;base64,' in dom
    assert "cost, savings and accuracy over time" in dom and "savings" in dom


def test_fmp_report_html_renders_its_chart_in_chromium(stack: Stack, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    out = run([str(BIN / "fmp"), "report", STREAM, "--html", str(page)], stack.env)
    assert out.startswith(f"wrote {page}: {STREAM}, 1 batch, policies fmp")
    dom = chromium(page.as_uri(), SHOTS / "report.png", ('id="trend-chart"', STREAM))
    assert f"<h1>{STREAM}</h1>" in dom and '<svg xmlns="http://www.w3.org/2000/svg" id="trend-chart"' in dom
    assert dom.count('<g class="panel">') == 3 and ">fmp</text>" in dom
    assert (SHOTS / "report.png").stat().st_size > 10_000


def test_the_ledger_answers_in_sql_after_the_worker_ran(stack: Stack) -> None:
    out = run([str(BIN / "fmp"), "ledger", "SELECT policy, items_run, monolithic_flops, "
               "savings >= 0.96 AS saved FROM ledger_savings"], stack.env)
    assert out.splitlines()[2].split() == ["fmp", "4", "200000", "True"]
    assert Path(stack.env["FMP_HOME"], "fmp.duckdb").exists()
