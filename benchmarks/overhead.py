"""What orchestration costs next to the models: ``python -m benchmarks.overhead``.

For ``stream_batch`` and ``ingest_feedback`` at 64, 256 and 1,024 items (the real catalog,
the first demo query, policy ``learned`` or ``--policy``), the same work runs twice in one process, side by
side: as the Prefect flow (against the ephemeral server, or ``PREFECT_API_URL``; in this
process, as the CLI and the demo run them: ``flows._runtime.in_process_runs``) and as the
plain Python the flow wraps (``flows._batch.process_batch`` with the local round runner,
``flows._feedback.ingest_batch``, the feedback report and the trend chart), each on its own copy of the
object store and the policy store.

Per size a stream gets a warm-up batch of 40 items (run and learned from in both copies,
so the measured batch routes with a learned version and the models are loaded), then the
measured batch of ``size`` items. Model compute is the wall time during which at least one
module call group was computing (the union of the groups' intervals, taken around
``answer_group``); everything else is the rest of the run's wall time. The plain run works
on a worker thread, as the flow's module calls do on the task runner's. Before each timed
run the Prefect server is left to settle, and the CPU it spends on a run (recording its
events, also after the flow returned, up to its last batch) is reported as
``server_cpu_s``. What is not model compute is split three ways: before the first module
call group started (``head``), between groups while none computed (``gaps``), after the last
one ended (``tail``). The requests each flow run made to the Prefect server are counted, with
the wall time during which any was outstanding (``api_requests``, ``api_wait_s``). The flow's
and the plain run's answers, decisions, ledger rows and policy versions must be the same.

Writes ``.fmp/overhead.json``::

    {"stream_batch": {"256": {"overhead_ratio": …, "flow_wall_s": …, "model_s": …,
                              "plain_wall_s": …, "plain_model_s": …, "plain_overhead_ratio": …,
                              "flow_over_plain": …, "task_runs": …, "server_cpu_s": …,
                              "flow_head_s": …, "flow_gaps_s": …, "flow_tail_s": …,
                              "plain_head_s": …, "plain_gaps_s": …, "plain_tail_s": …,
                              "api_requests": …, "api_wait_s": …}, …},
     "ingest_feedback": {"256": {"flow_over_plain": …, "flow_wall_s": …, "plain_wall_s": …,
                                 "server_cpu_s": …, "api_requests": …, "api_wait_s": …}, …},
     "meta": {…}}

``overhead_ratio`` = (flow wall − model compute) ÷ model compute; ``flow_over_plain`` =
flow wall ÷ plain wall. Each measurement runs ``--repeat`` times (default 2: the batch
re-run on the same pinned version, the feedback on a restored copy of the store), plain and
flow taking turns going first, and the fastest run counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME = Path(".fmp/overhead")
OUT = Path(".fmp/overhead.json")
SIZES = (64, 256, 1024)
WARMUP_ITEMS = 40
POLICY = "learned"


def _prefect_env(home: Path) -> None:
    """Prefect settings for a benchmark process (before Prefect is imported)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str((home / "prefect").absolute()))


class Side:
    """One copy of the stores: ``plain`` or ``flow``."""

    def __init__(self, root: Path, policy: str = POLICY) -> None:
        self.root = root
        self.policy = policy
        self.objects = root / "objects"
        self.db = root / "fmp.duckdb"
        self.params = {"storage_url": str(self.objects), "db_path": str(self.db)}

    def save_db(self) -> None:
        from policy_store.store import PolicyStore

        PolicyStore(self.db).snapshot(self.root / "saved.duckdb")

    def restore_db(self) -> None:
        self.db.with_name(self.db.name + ".wal").unlink(missing_ok=True)
        shutil.copyfile(self.root / "saved.duckdb", self.db)


def publish(src: Path, stream: str, size: int, seed: int) -> list[str]:
    """The stream: a warm-up batch of WARMUP_ITEMS and the measured batch of ``size`` items."""
    import numpy as np

    from benchmarks.publish import StreamPlan, publish_batch
    from benchmarks.queries import DEMO_QUERIES
    from storage import batches
    from storage.records import StreamInfo
    from storage.url import open_store

    query = DEMO_QUERIES[0]
    store = open_store(str(src))
    batches.write_stream_info(store, StreamInfo(
        stream=stream, query_id=query.query_id, question=query.question, answer_type="bool",
        program=query.program, monolithic_program=query.monolithic_program))
    rng = np.random.default_rng([seed, size])
    return [publish_batch(store, stream, query, bid, StreamPlan(batch_size=n, seed=seed), rng)
            for bid, n in (("b0000", WARMUP_ITEMS), ("b0001", size))]


class _Spans:
    """Intervals (start, end) recorded from any thread; ``since`` and ``span_since`` measure
    those recorded after a ``mark``."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def record(self, start: float) -> None:
        """An interval from ``start`` until now."""
        with self._lock:
            self.intervals.append((start, time.perf_counter()))

    def mark(self) -> int:
        return len(self.intervals)

    def since(self, mark: int) -> tuple[float, int]:
        """(busy seconds, intervals) of the intervals recorded since ``mark``."""
        busy, _, _, groups = self.span_since(mark)
        return busy, groups

    def span_since(self, mark: int) -> tuple[float, float, float, int]:
        """(busy seconds — their union —, first start, last end, intervals) since ``mark``."""
        with self._lock:
            spans = sorted(self.intervals[mark:])
        busy, end = 0.0, float("-inf")
        for a, b in spans:
            if b > end:
                busy += b - max(a, end)
                end = b
        first = spans[0][0] if spans else float("nan")
        return busy, first, end if spans else float("nan"), len(spans)


class ModelClock(_Spans):
    """When module call groups computed: every ``answer_group`` call's (start, end).

    Model compute of a run is the union of its groups' intervals: the wall time during
    which at least one model computed (groups of one round may run concurrently).
    """

    def __init__(self) -> None:
        import modules.executor
        import modules.tasks

        super().__init__()
        inner = modules.executor.answer_group

        def timed(registry: Any, request: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(registry, request)
            finally:
                self.record(start)

        modules.tasks.answer_group = timed  # type: ignore[attr-defined]  # run_module and the local runner call it


class RequestClock(_Spans):
    """When this process waited on the Prefect server: every HTTP request's (start, end), from
    any thread (the engine's own, ``tag_flow_run``'s, the artifact's), on httpx's sync and
    async clients. Events and logs go over a websocket and a batching thread, not requests.

    ``since`` gives the union of the requests' intervals (two requests at once count once)
    and their number."""

    def __init__(self) -> None:
        import httpx

        super().__init__()
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send
        record = self.record

        def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return sync_send(client, request, *args, **kwargs)
            finally:
                record(start)

        async def asend(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await async_send(client, request, *args, **kwargs)
            finally:
                record(start)

        httpx.Client.send = send  # type: ignore[method-assign,assignment]
        httpx.AsyncClient.send = asend  # type: ignore[method-assign,assignment]


def server_cpu_s() -> float:
    """CPU seconds used so far by this process's children (the ephemeral Prefect server)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, me = 0.0, str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def settle(at_least_s: float = 0.0, limit_s: float = 60.0) -> None:
    """Wait ``at_least_s``, then until the server has caught up (under 0.05 CPU seconds in
    half a second)."""
    deadline = time.monotonic() + max(limit_s, at_least_s)
    time.sleep(at_least_s)
    last = server_cpu_s()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server_cpu_s()
        if now - last < 0.05:
            return
        last = now


def _recorder_flush_s() -> float:
    """How long the temporary server may hold task run events before writing them (0: at once)."""
    if "PREFECT_API_URL" in os.environ:
        return 0.0
    from prefect.settings import get_current_settings

    recorder = get_current_settings().server.services.task_run_recorder
    return recorder.flush_interval + 0.5 if recorder.batch_size > 1 else 0.0


def plain_batch(side: Side, stream: str, batch: str) -> None:
    """What ``stream_batch`` does, without Prefect."""
    from flows._batch import BatchSummary, process_batch
    from flows._runtime import limit_model_threads, registry_for, settings_for, store_for
    from flows.artifacts import batch_description, batch_table
    from modules.tasks import local_round_runner
    from storage.records import ResultRow

    settings = settings_for(**side.params)
    limit_model_threads(settings.model_threads)
    store = store_for(settings)
    registry = registry_for(settings.catalog)

    def artifact(summary: BatchSummary, rows: list[ResultRow]) -> None:  # built, not posted
        batch_table(rows)
        batch_description(stream, batch, side.policy, summary.policy_version, rows)

    process_batch(settings, store, registry, stream, batch, side.policy, local_round_runner(registry),
                  written=artifact)


def plain_ingest(side: Side, stream: str, batch: str) -> None:
    """What ``ingest_feedback`` does for one batch, without Prefect."""
    from flows._batch import load_program
    from flows._feedback import ingest_batch
    from flows._runtime import held_policy_store, limit_model_threads, registry_for, settings_for, store_for
    from flows.artifacts import feedback_markdown
    from flows.feedback_report import feedback_report
    from flows.report_html import trend_markdown
    from policies.costs import register_costs
    from policy_store.charts import stream_trends
    from storage import batches

    settings = settings_for(**side.params)
    limit_model_threads(settings.model_threads)
    store = store_for(settings)
    registry = registry_for(settings.catalog)
    with held_policy_store(settings) as db:
        info = batches.read_stream_info(store, stream)
        register_costs(db, registry, load_program(info, side.policy))
        summary = ingest_batch(settings, store, registry, db, stream, batch, side.policy)
        feedback_markdown(feedback_report(store, registry, db, summary))
        trend_markdown(stream_trends(db, stream, [side.policy]))  # the flow's trend artifact, not posted


def flow_batch(side: Side, stream: str, batch: str) -> None:
    from flows.stream_batch import stream_batch

    stream_batch(stream=stream, batch=batch, policy=side.policy, **side.params)


def flow_ingest(side: Side, stream: str, batch: str) -> None:
    from flows.ingest_feedback import ingest_feedback

    ingest_feedback(stream=stream, batch=batch, policy=side.policy, **side.params)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on a worker thread, as the flows run module calls (on task-runner threads),
    so that torch runs under the same conditions on both sides."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


@dataclass
class Run:
    wall_s: float
    model_s: float = 0.0
    groups: int = 0
    server_cpu_s: float = 0.0
    #: where the time besides the models went: before the first model call, between calls
    #: while no model computed, after the last one (they add up to wall − model)
    head_s: float = 0.0
    gaps_s: float = 0.0
    tail_s: float = 0.0
    #: requests to the Prefect server during the run, and the wall time any was outstanding
    requests: int = 0
    request_s: float = 0.0


def timed(clock: ModelClock, fn: Any, *args: Any, api: RequestClock | None = None) -> Run:
    """One run after the server has settled: wall, model busy time, groups, server CPU,
    requests to the server."""
    settle()
    mark, cpu = clock.mark(), server_cpu_s()
    api_mark = api.mark() if api is not None else 0
    start = time.perf_counter()
    fn(*args)
    end = time.perf_counter()
    model, first, last, groups = clock.span_since(mark)
    request_s, requests = api.since(api_mark) if api is not None else (0.0, 0)
    # the server records the run's task runs after the flow returned, in batches it writes
    # when full or every flush interval: wait for the last one, which is the run's cost too
    settle(at_least_s=_recorder_flush_s())
    run = Run(end - start, model, groups, server_cpu_s() - cpu, requests=requests,
              request_s=request_s)
    if groups:
        run.head_s, run.gaps_s, run.tail_s = first - start, last - first - model, end - last
    return run


def results_of(side: Side, stream: str, batch: str) -> list[Any]:
    """The batch's rows without their wall times (what must not depend on orchestration)."""
    from storage import batches
    from storage.url import open_store

    loaded = batches.read_results(open_store(str(side.objects)), stream, side.policy, batch)
    if loaded is None:
        raise RuntimeError(f"{side.root}: no results for {stream}/{batch}")
    return [(r.item_id, r.status, r.answer, r.error, r.features,
             [d.model_copy(update={"wall_ms": 0.0}) for d in r.decisions]) for r in loaded[1]]


_LEDGER = """SELECT item_id, call_site, backend, calls, flops, params, price, propensity,
    policy_version, answer, label, correct, status FROM cost_ledger ORDER BY ALL"""
_VERSIONS = """SELECT v.version, v.parent, v.learner, v.config_json, v.params, v.note, l.batch
    FROM policy_versions v LEFT JOIN learned_batches l USING (stream, policy, version) ORDER BY ALL"""


def ledger_of(side: Side) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    from policy_store.store import PolicyStore

    db = PolicyStore(side.db)
    return db.query(_LEDGER)[1], db.query(_VERSIONS)[1]


def measure(clock: ModelClock, size: int, repeat: int, seed: int,
            api: RequestClock | None = None, policy: str = POLICY) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both flows at one size: (stream_batch entry, ingest_feedback entry)."""
    stream = f"overhead-{size}"
    base = HOME / str(size)
    shutil.rmtree(base, ignore_errors=True)
    src = base / "src"
    warm, measured = publish(src, stream, size, seed)
    plain, flow = Side(base / "plain", policy), Side(base / "flow", policy)
    for side in (plain, flow):
        shutil.copytree(src, side.objects)
    in_thread(plain_batch, plain, stream, warm)
    in_thread(plain_ingest, plain, stream, warm)
    flow_batch(flow, stream, warm)
    flow_ingest(flow, stream, warm)
    plain.save_db()
    flow.save_db()

    def plain_b() -> None:
        in_thread(plain_batch, plain, stream, measured)

    def plain_i() -> None:
        plain.restore_db()
        in_thread(plain_ingest, plain, stream, measured)

    def flow_i() -> None:
        flow.restore_db()
        flow_ingest(flow, stream, measured)

    runs: dict[str, list[Run]] = {"plain_batch": [], "flow_batch": [], "plain_ingest": [],
                                  "flow_ingest": []}
    order = [("plain_batch", plain_b), ("flow_batch", lambda: flow_batch(flow, stream, measured))]
    for r in range(repeat):  # the same pinned version each time: the same choices
        for name, fn in order if r % 2 == 0 else order[::-1]:  # each goes first in turn
            runs[name].append(timed(clock, fn, api=api))
    order = [("plain_ingest", plain_i), ("flow_ingest", flow_i)]
    for r in range(repeat):
        for name, fn in order if r % 2 == 0 else order[::-1]:
            runs[name].append(timed(clock, fn, api=api))

    if results_of(plain, stream, measured) != results_of(flow, stream, measured):
        raise RuntimeError(f"size {size}: the flow's answers or decisions differ from the plain run's")
    if ledger_of(plain) != ledger_of(flow):
        raise RuntimeError(f"size {size}: the flow's ledger or policy versions differ from the plain run's")

    fb = min(runs["flow_batch"], key=lambda x: x.wall_s)
    pb = min(runs["plain_batch"], key=lambda x: x.wall_s)
    sb = {"items": size, "overhead_ratio": _r((fb.wall_s - fb.model_s) / fb.model_s),
          "flow_wall_s": _r(fb.wall_s), "model_s": _r(fb.model_s),
          "plain_wall_s": _r(pb.wall_s), "plain_model_s": _r(pb.model_s),
          "plain_overhead_ratio": _r((pb.wall_s - pb.model_s) / pb.model_s),
          "flow_over_plain": _r(fb.wall_s / pb.wall_s), "task_runs": fb.groups,
          "server_cpu_s": _r(fb.server_cpu_s),
          "flow_head_s": _r(fb.head_s), "flow_gaps_s": _r(fb.gaps_s), "flow_tail_s": _r(fb.tail_s),
          "plain_head_s": _r(pb.head_s), "plain_gaps_s": _r(pb.gaps_s), "plain_tail_s": _r(pb.tail_s),
          "api_requests": fb.requests, "api_wait_s": _r(fb.request_s),
          "runs": {k: [[_r(x.wall_s), _r(x.model_s)] for x in runs[k]]
                   for k in ("flow_batch", "plain_batch")}}
    fi = min(runs["flow_ingest"], key=lambda x: x.wall_s)
    pi = min(runs["plain_ingest"], key=lambda x: x.wall_s)
    fe = {"items": size, "flow_over_plain": _r(fi.wall_s / pi.wall_s), "flow_wall_s": _r(fi.wall_s),
          "plain_wall_s": _r(pi.wall_s), "server_cpu_s": _r(fi.server_cpu_s),
          "api_requests": fi.requests, "api_wait_s": _r(fi.request_s),
          "runs": {k: [_r(x.wall_s) for x in runs[k]] for k in ("flow_ingest", "plain_ingest")}}
    return sb, fe


def _r(x: float) -> float:
    return round(float(x), 4)


def import_seconds() -> float:
    """Wall time of importing both flow modules in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import flows.stream_batch, flows.ingest_feedback"],
                   check=True)
    return time.perf_counter() - start


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{'flow':<16}{'items':>6}{'flow s':>9}{'model s':>9}{'overhead':>10}"
             f"{'plain s':>9}{'plain ovh':>10}{'flow/plain':>11}"]
    for size, s in report["stream_batch"].items():
        lines.append(f"{'stream_batch':<16}{size:>6}{s['flow_wall_s']:>9.2f}{s['model_s']:>9.2f}"
                     f"{s['overhead_ratio']:>10.3f}{s['plain_wall_s']:>9.2f}"
                     f"{s['plain_overhead_ratio']:>10.3f}{s['flow_over_plain']:>11.2f}")
    for size, s in report["ingest_feedback"].items():
        lines.append(f"{'ingest_feedback':<16}{size:>6}{s['flow_wall_s']:>9.2f}{'':>9}{'':>10}"
                     f"{s['plain_wall_s']:>9.2f}{'':>10}{s['flow_over_plain']:>11.2f}")
    lines += ["", "stream_batch besides the models, ms: before the first model call / between calls "
              "while none computed / after the last (flow | plain)"]
    for size, s in report["stream_batch"].items():
        lines.append(f"{size:>6}  " + " | ".join(
            " / ".join(f"{1000 * s[f'{side}_{part}_s']:.0f}" for part in ("head", "gaps", "tail"))
            for side in ("flow", "plain")))
    if any("api_requests" in s for s in report["stream_batch"].values()):
        lines += ["", "requests to the Prefect server per flow run (ms while any was outstanding): "
                  "stream_batch | ingest_feedback"]
        for size, s in report["stream_batch"].items():
            f = report["ingest_feedback"].get(size, {})
            lines.append(f"{size:>6}  {s['api_requests']} ({1000 * s['api_wait_s']:.0f})"
                         + (f" | {f['api_requests']} ({1000 * f['api_wait_s']:.0f})" if f else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from policies.specs import POLICIES  # imports neither Prefect nor torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated batch sizes (default 64,256,1024)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per measurement, plain and flow taking turns going first; the "
                             "fastest counts (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", default=POLICY, choices=sorted(POLICIES),
                        help=f"the policy both flows run (default {POLICY}; fmp: the flows' default, "
                             "whose feedback also audits)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    _prefect_env(HOME)
    imports = import_seconds()
    load = os.getloadavg()
    report: dict[str, Any] = {"stream_batch": {}, "ingest_feedback": {}}
    start = time.perf_counter()
    clock, api = ModelClock(), RequestClock()
    from flows._runtime import in_process_runs

    with in_process_runs():  # as the CLI and the demo run the flows
        for size in sizes:
            sb, fb = measure(clock, size, args.repeat, args.seed, api, args.policy)
            report["stream_batch"][str(size)] = sb
            report["ingest_feedback"][str(size)] = fb
            print(f"size {size}: stream_batch overhead {sb['overhead_ratio']:.3f}, "
                  f"ingest_feedback flow/plain {fb['flow_over_plain']:.2f}", flush=True)
    import prefect
    import torch

    report["meta"] = {
        "policy": args.policy, "warmup_items": WARMUP_ITEMS, "repeat": args.repeat, "seed": args.seed,
        "import_flows_s": _r(imports), "total_s": _r(time.perf_counter() - start),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "prefect": prefect.__version__, "python": platform.python_version(),
        "prefect_api": os.environ.get("PREFECT_API_URL", "ephemeral"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print()
    print(format_table(report))
    print(f"\nwritten to {args.out}")
    from flows._runtime import quiet_teardown

    quiet_teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
