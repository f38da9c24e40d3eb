"""``make cluster-demo`` / ``python -m benchmarks.cluster``: one machine standing for many.

Starts, under ``--root`` (default ``.fmp/cluster/``, emptied first), every service a scale-out
deployment has, each a child process that dies with this one:

- **Postgres** (``initdb`` + ``postgres`` on a free loopback port, as ``nobody`` when run as root)
  holding two databases: ``prefect`` (the Prefect server's) and ``fmp_lake`` (the DuckLake
  catalog of the policy store and ledger);
- a **Prefect server** on that Postgres, a ``process`` work pool, the ``stream_batch`` and
  ``ingest_feedback`` flows deployed to it from this checkout;
- **moto S3** (``storage.moto``) holding the streams, their batches, labels and results;
- the **DuckLake store** (``FMP_STORE_URL=ducklake:postgres:…``, Parquet data under the root);
- N ``prefect worker`` processes (``--limit 1``: one flow run each at a time) per round.

Each round publishes the same ``--streams`` streams (same queries, seeds and items) under its
own names, submits one ``stream_batch`` run per batch, then one ``ingest_feedback`` run per
stream, all under a fixed policy (``--policy``, default ``largest``: choices never move with
feedback, so rounds are comparable), and waits for them. A run whose process died (its pid
gone while Prefect still shows it PENDING or RUNNING, as after ``kill -9`` of a worker) is
marked CRASHED and its batch submitted again, as are failed runs (up to ``MAX_ATTEMPTS``).

Then it counts, from the ledger's keys against the results in the object store: items
without a result row and (stream, batch, item, call site) keys missing from ``decisions``
(lost); duplicate keys, label versions learned twice, versions learned from no label
(doubled, ``benchmarks.faults.DOUBLED_SQL``); policy versions whose parent is not the version
before (broken chain); and per (stream, batch, item, call site) the backend, calls, FLOPs,
parameters and price against the 1-worker round (differing). It prints those counts, the
throughput table and the measured per-item costs, writes them to ``<root>/cluster.json``,
and exits 1 if anything was lost, doubled, broken or differs.

This module imports nothing from ``flows/``: the flows run in the workers' processes.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.faults import (
    DOUBLED_SQL,
    FaultSetupError,
    Run,
    Services,
    Workspace,
    _executable,
    alive,
    descendants,
    moto,
)
from benchmarks.publish import StreamPlan, publish_stream
from benchmarks.queries import QUERIES
from policy_store.records import AUDIT_SUFFIX
from policy_store.store import PolicyStore
from storage import batches, layout
from storage.base import ObjectStore
from storage.children import die_with_parent
from storage.moto import free_port

CHECKOUT = Path(__file__).resolve().parents[1]
#: The trained backends the flows run (``modules/catalog.yaml``): the rounds' ledgers carry
#: real model costs, and the throughput table real model compute.
DEFAULT_CATALOG = CHECKOUT / "modules" / "catalog.yaml"
#: Scripted backends (no trained weights, deterministic answers and costs): the kill test's.
SCRIPTED_CATALOG = CHECKOUT / "tests" / "integration" / "fake_catalog.yaml"
POOL = "fmp-cluster"
BUCKET = "s3://fmp-cluster/objects"
#: Runs per batch (or per stream's feedback) before the round gives up on it.
MAX_ATTEMPTS = 3
#: A PENDING run with no process after this long was lost with its worker.
PENDING_LOST_S = 60.0
_TERMINAL_BAD = {"FAILED", "CRASHED", "CANCELLED"}
_ACTIVE = {"PENDING", "RUNNING"}
#: Deploys the two flows from this checkout to a pool; prints "<name> <deployment id>" lines.
DEPLOY_SCRIPT = """\
import sys
from prefect import flow
for name, entrypoint in (("stream-batch", "flows/stream_batch.py:stream_batch"),
                         ("ingest-feedback", "flows/ingest_feedback.py:ingest_feedback")):
    deployment = flow.from_source(source=sys.argv[1], entrypoint=entrypoint)
    print(name, deployment.deploy(name=name, work_pool_name=sys.argv[2], print_next_steps=False))
"""


class ClusterError(RuntimeError):
    """A service did not start, or a round did not finish (the message says which and why)."""


# --- Postgres -------------------------------------------------------------------------------------

def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``postgres`` (Debian's 15, or whatever is on PATH), or None."""
    for folder in (Path("/usr/lib/postgresql/15/bin"),
                   Path(shutil.which("pg_ctl") or "/nonexistent/pg_ctl").parent):
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None


def reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` may walk down to ``path``: every existing folder above it is owned by
    ``user`` or lets others search it (o+x)."""
    uid = pwd.getpwnam(user).pw_uid
    for folder in path.resolve().parents:
        st = folder.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            return False
    return True


class Postgres:
    """A throwaway Postgres cluster in ``root`` on a free loopback port (trust auth, user fmp,
    fsync off), its postmaster a child of this process that stops when this process ends.

    Run as root, the cluster runs as ``nobody`` (Postgres refuses root); when ``nobody`` cannot
    reach ``root`` (a checkout under a private folder, e.g. ``mktemp -d`` or a home of mode
    700) the data folder goes to a fresh folder under the system's temporary folder instead,
    removed at ``stop``."""

    def __init__(self, root: Path) -> None:
        found = postgres_bin()
        if found is None:
            raise ClusterError("no Postgres binaries (initdb, postgres) in /usr/lib/postgresql/15/bin "
                               "or on PATH; apt-get install postgresql-15")
        self.bin = found
        self.root = root
        self.port = free_port()
        self.user = "nobody" if os.geteuid() == 0 else None  # postgres refuses to run as root
        self._proc: subprocess.Popen[bytes] | None = None
        self._temporary: Path | None = None

    def _run(self, *argv: str) -> str:
        done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], capture_output=True, text=True,
                              timeout=120, user=self.user)
        if done.returncode != 0:
            raise ClusterError(f"Postgres {argv[0]} failed: {(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout

    def start(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user and not reachable_by(self.user, self.root):
            self._temporary = self.root = Path(tempfile.mkdtemp(prefix="fmp-cluster-pg-"))
        if self.user:
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, -1)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "fmp", "--no-sync")
        log = (self.root / "postgres.log").open("wb")
        # SIGINT is Postgres' fast shutdown: when this process ends, however, the postmaster
        # aborts open transactions and stops (its backends follow it).
        self._proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
             "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=log, stderr=subprocess.STDOUT, user=self.user,
            preexec_fn=die_with_parent(signal.SIGINT))
        log.close()
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                             timeout=30).returncode != 0:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"Postgres did not start on 127.0.0.1:{self.port}; see "
                                   f"{self.root / 'postgres.log'}")
            time.sleep(0.2)
        return self

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "fmp", name)

    def commits(self, database: str) -> int:
        """Transactions committed in ``database`` so far (``pg_stat_database``), reads included."""
        out = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "fmp", "-d", "postgres",
                        "-Atc", "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM "
                        f"pg_stat_database WHERE datname = '{database}'")
        return int(out.split()[-1])

    def conninfo(self, database: str) -> str:
        return f"dbname={database} host=127.0.0.1 port={self.port} user=fmp"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+asyncpg://fmp@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        temporary, self._temporary = self._temporary, None
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


class ClusterServices(Services):
    """``benchmarks.faults``' Prefect server, on Postgres instead of SQLite."""

    def __init__(self, root: Path, database_url: str) -> None:
        super().__init__(root)
        self.database_url = database_url

    def base_env(self) -> dict[str, str]:
        return {**super().base_env(), "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url}


# --- the Prefect API ------------------------------------------------------------------------------

def _call(api_url: str, path: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{api_url}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def _runs(api_url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 200):
        chunk = ids[start:start + 200]
        for run in _call(api_url, "/flow_runs/filter",
                         {"flow_runs": {"id": {"any_": chunk}}, "limit": len(chunk)}):
            found[str(run["id"])] = run
    return found


def _state(run: dict[str, Any]) -> str:
    state = run.get("state")
    return str(state.get("type")) if isinstance(state, dict) else "NONE"


def _pid(run: dict[str, Any]) -> int | None:
    text = str(run.get("infrastructure_pid") or "").rsplit(":", 1)[-1]
    return int(text) if text.isdigit() else None


# --- one round ------------------------------------------------------------------------------------

@dataclass
class Job:
    """One batch's ``stream_batch`` runs (``batch`` set) or one stream's ``ingest_feedback`` runs."""

    stream: str
    batch: str | None
    runs: list[str] = field(default_factory=list)
    done: bool = False
    pending_since: float | None = None

    @property
    def label(self) -> str:
        return f"{self.stream}/{self.batch}" if self.batch else f"{self.stream} feedback"


@dataclass
class Kill:
    """The worker killed in a round: its pid, the processes under it, the run it was running."""

    worker: int
    processes: int
    run: str
    batch: str
    results_before: bool


@dataclass
class Round:
    """What a round did and found."""

    workers: int
    streams: list[str]
    items: int = 0
    batches: int = 0
    batch_s: float = 0.0
    feedback_s: float = 0.0
    runs: int = 0
    resubmitted: list[str] = field(default_factory=list)
    killed: Kill | None = None
    lost: int = 0
    doubled: int = 0
    versions: int = 0
    broken_links: int = 0
    differing: int | None = None
    details: list[str] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.broken_links or self.differing)

    @property
    def items_per_s(self) -> float:
        return self.items / self.batch_s if self.batch_s else 0.0

    @property
    def end_to_end_per_s(self) -> float:
        total = self.batch_s + self.feedback_s
        return self.items / total if total else 0.0


@dataclass
class Options:
    streams: int = 4
    batches: int = 2
    batch_size: int = 50
    policy: str = "largest"
    catalog: Path = DEFAULT_CATALOG
    round_timeout_s: float = 600.0


class Cluster:
    """The services of the module's docstring, started by ``start()`` and stopped by ``close()``."""

    def __init__(self, root: Path, options: Options) -> None:
        self.root = root
        self.options = options
        self._stack = ExitStack()
        self._workers: list[subprocess.Popen[bytes]] = []
        self.deployments: dict[str, str] = {}
        self.keys: dict[int, dict[tuple[str, ...], tuple[Any, ...]]] = {}

    # -- services
    def start(self, echo: Any = print) -> Cluster:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        t0 = time.monotonic()
        self.pg = Postgres(self.root / "postgres").start()
        self._stack.callback(self.pg.stop)
        self.pg.create_database("prefect")
        self.pg.create_database("fmp_lake")
        echo(f"postgres: 127.0.0.1:{self.pg.port} (data in {self.pg.root}), databases prefect and fmp_lake "
             f"({time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
        self.services = ClusterServices(self.root, self.pg.sqlalchemy_url("prefect"))
        self._stack.callback(self.services.stop)
        self.services.start()
        echo(f"prefect server: {self.services.api_url} on Postgres ({time.monotonic() - t0:.1f} s)")
        self.ws: Workspace = self.services.workspace("home")
        self._stack.enter_context(moto(self.ws, free_port()))
        self.lake_url = (f"ducklake:postgres:{self.pg.conninfo('fmp_lake')}"
                         f"?data_path={self.root / 'lake-data'}/")
        self.ws.env.update(FMP_STORAGE_URL=BUCKET, FMP_STORE_URL=self.lake_url,
                           FMP_CATALOG=str(self.options.catalog.resolve()),
                           PREFECT_WORKER_QUERY_SECONDS="1")
        self.ws.store.ensure_bucket()  # type: ignore[attr-defined]  # an S3Store
        echo(f"moto S3: {self.ws.env['FMP_S3_ENDPOINT_URL']}, streams in {BUCKET}")
        PolicyStore(self.lake_url).init()  # the lake's tables and views, before any worker
        echo(f"policy store: {self.lake_url}")
        t0 = time.monotonic()
        self._prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        deployed = subprocess.run([sys.executable, "-c", DEPLOY_SCRIPT, str(CHECKOUT), POOL], cwd=CHECKOUT,
                                  env=self.ws.env, capture_output=True, text=True, timeout=300)
        self.ws.check(Run(["deploy"], deployed.returncode, deployed.stdout, deployed.stderr, 0.0))
        for line in deployed.stdout.splitlines():
            name, _, ident = line.rpartition(" ")
            if name.strip() in ("stream-batch", "ingest-feedback"):
                self.deployments[name.strip()] = ident
        if set(self.deployments) != {"stream-batch", "ingest-feedback"}:
            raise ClusterError(f"deploying the flows printed no deployment ids: {deployed.stdout[-300:]}")
        echo(f"work pool {POOL}: stream-batch and ingest-feedback deployed ({time.monotonic() - t0:.1f} s)")
        return self

    def close(self) -> None:
        self.stop_workers()
        self._stack.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prefect(self, *argv: str) -> None:
        done = subprocess.run([*_executable("prefect"), "--no-prompt", *argv], env=self.ws.env,
                              capture_output=True, text=True, timeout=300)
        self.ws.check(Run(list(argv), done.returncode, done.stdout, done.stderr, 0.0))

    # -- workers
    def start_workers(self, n: int, tag: str) -> None:
        names = [f"{tag}-w{k}" for k in range(n)]
        for name in names:
            log = (self.root / f"{name}.log").open("wb")
            self._workers.append(subprocess.Popen(
                [*_executable("prefect"), "worker", "start", "--pool", POOL, "--limit", "1", "--name", name],
                env=self.ws.env, cwd=CHECKOUT, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent()))
            log.close()
        deadline = time.monotonic() + 180
        while True:
            listed = _call(self.services.api_url, f"/work_pools/{POOL}/workers/filter", {"limit": 200})
            online = {str(w["name"]) for w in listed if w.get("status") == "ONLINE"}
            if set(names) <= online:
                return
            dead = [w for w in self._workers if w.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise ClusterError(f"workers {sorted(set(names) - online)} did not come online; see "
                                   f"{self.root}/{tag}-w*.log")
            time.sleep(0.5)

    def stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)  # a worker stops cleanly on SIGINT
        for worker in workers:
            under = descendants(worker.pid)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            for pid in under:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)

    def kill_worker_running(self, run: dict[str, Any], batch: str) -> Kill | None:
        """``kill -9`` the worker whose flow-run process runs ``run``, and every process under
        it (a machine lost); None when that process is no worker's."""
        pid = _pid(run)
        for worker in self._workers:
            under = descendants(worker.pid)
            if pid is not None and pid in under and worker.poll() is None:
                stream = str(run["parameters"]["stream"])
                marker = self.ws.store.exists(layout.success_key(stream, self.options.policy, batch))
                for p in [worker.pid, *under]:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                worker.wait()
                return Kill(worker.pid, len(under), str(run["name"]), f"{stream}/{batch}", marker)
        return None

    # -- a round
    def publish(self, names: list[str]) -> int:
        plan = StreamPlan(n_batches=self.options.batches, batch_size=self.options.batch_size, seed=0)
        queries = list(QUERIES.values())
        for i, name in enumerate(names):
            # the same query and seed for the i-th stream of every round: the same items
            publish_stream(self.ws.store, name, queries[i % len(queries)],
                           StreamPlan(plan.n_batches, plan.batch_size, seed=i))
        return len(names) * plan.n_batches * plan.batch_size

    def _submit(self, job: Job) -> None:
        params: dict[str, Any] = {"stream": job.stream, "policy": self.options.policy}
        deployment = "ingest-feedback"
        if job.batch is not None:
            params["batch"] = job.batch
            deployment = "stream-batch"
        name = f"{deployment}/{job.label.replace(' feedback', '')}#{len(job.runs) + 1}"
        run = _call(self.services.api_url, f"/deployments/{self.deployments[deployment]}/create_flow_run",
                    {"parameters": params, "name": name})
        job.runs.append(str(run["id"]))
        job.pending_since = None

    def _crash(self, run_id: str, why: str) -> None:
        _call(self.services.api_url, f"/flow_runs/{run_id}/set_state",
              {"state": {"type": "CRASHED", "message": why}, "force": True})

    def _wait(self, jobs: list[Job], result: Round, kill: bool) -> None:
        """Until every job's last run completed: resubmit lost and failed runs; with ``kill``,
        kill the worker of the first batch run seen running for a second."""
        deadline = time.monotonic() + self.options.round_timeout_s
        first_running: dict[str, float] = {}
        while not all(j.done for j in jobs):
            if time.monotonic() > deadline:
                left = [j.label for j in jobs if not j.done]
                raise ClusterError(f"round with {result.workers} workers: {len(left)} jobs not done after "
                                   f"{self.options.round_timeout_s:g} s ({', '.join(left[:5])}); see "
                                   f"{self.root}/*.log")
            runs = _runs(self.services.api_url, [j.runs[-1] for j in jobs if not j.done])
            now = time.monotonic()
            for job in (j for j in jobs if not j.done):
                run = runs.get(job.runs[-1])
                if run is None:
                    continue
                state, pid = _state(run), _pid(run)
                lost = ""
                if state == "COMPLETED":
                    done = job.batch is None or self.ws.store.exists(
                        layout.success_key(job.stream, self.options.policy, job.batch))
                    if done:
                        job.done = True
                        continue
                    lost = "completed without results"
                elif state in _TERMINAL_BAD:
                    lost = f"run {state}"
                elif state in _ACTIVE and pid is not None and not alive(pid):
                    lost = f"its process {pid} is gone"
                    self._crash(job.runs[-1], f"the flow-run process {pid} died (its worker was lost)")
                elif state == "PENDING" and pid is None:
                    job.pending_since = job.pending_since or now
                    if now - job.pending_since > PENDING_LOST_S:
                        lost = f"PENDING without a process for {PENDING_LOST_S:g} s"
                        self._crash(job.runs[-1], lost)
                if state == "RUNNING" and kill and result.killed is None and job.batch is not None:
                    first_running.setdefault(job.runs[-1], now)
                    if now - first_running[job.runs[-1]] >= 1.0:
                        result.killed = self.kill_worker_running(run, job.batch)
                if lost:
                    if len(job.runs) >= MAX_ATTEMPTS:
                        raise ClusterError(f"{job.label}: {len(job.runs)} runs and none finished "
                                           f"(last: {lost}); see {self.root}/*.log")
                    result.resubmitted.append(f"{job.label} ({lost})")
                    self._submit(job)
            time.sleep(1.0)
        result.runs += sum(len(j.runs) for j in jobs)

    def run_round(self, workers: int, *, kill: bool = False, echo: Any = print) -> Round:
        """Publish the streams, start ``workers`` workers, run every batch then every stream's
        feedback through them, stop the workers and count."""
        tag = f"w{workers}"
        names = [f"{tag}-s{i}" for i in range(self.options.streams)]
        result = Round(workers, names)
        t0 = time.monotonic()
        result.items = self.publish(names)
        result.batches = self.options.streams * self.options.batches
        echo(f"round {tag}: published {len(names)} streams, {result.items} items "
             f"({time.monotonic() - t0:.1f} s); starting {workers} worker(s)")
        self.start_workers(workers, tag)
        try:
            lake_before = self.pg.commits("fmp_lake")
            snapshots_before = self._snapshots()
            prefect_before = self.pg.commits("prefect")
            jobs = [Job(s, b) for s in names for b in batches.list_batches(self.ws.store, s)]
            t0 = time.monotonic()
            for job in jobs:
                self._submit(job)
            self._wait(jobs, result, kill)
            result.batch_s = time.monotonic() - t0
            prefect_mid = self.pg.commits("prefect")
            feedback = [Job(s, None) for s in names]
            t0 = time.monotonic()
            for job in feedback:
                self._submit(job)
            self._wait(feedback, result, kill=False)
            result.feedback_s = time.monotonic() - t0
            lake_after = self.pg.commits("fmp_lake")
            snapshots_after = self._snapshots()
            prefect_after = self.pg.commits("prefect")
            stats = self._run_stats(jobs, feedback)
        finally:
            self.stop_workers()
        self._count(result)
        result.costs.update(stats)
        result.costs.update({
            "prefect_db_tx_per_batch_run": (prefect_mid - prefect_before) / len(jobs),
            "prefect_db_tx_per_feedback_run": (prefect_after - prefect_mid) / len(feedback),
            "catalog_tx_per_batch": (lake_after - lake_before) / result.batches,
            "lake_commits_per_batch": (snapshots_after - snapshots_before) / result.batches})
        return result

    def _snapshots(self) -> int:
        """DuckLake snapshots so far: one per committed write."""
        return _scalar(PolicyStore(self.lake_url), "SELECT count(*) FROM lake.snapshots()")

    def _run_stats(self, jobs: list[Job], feedback: list[Job]) -> dict[str, float]:
        """Measured from the runs that completed each job: seconds a batch run ran (Prefect's
        total run time), seconds from a worker taking it (PENDING) to its flow starting
        (RUNNING: the process start), seconds a stream's feedback ran per batch ingested."""
        api = self.services.api_url
        batch_runs = list(_runs(api, [j.runs[-1] for j in jobs]).values())
        feedback_runs = list(_runs(api, [j.runs[-1] for j in feedback]).values())

        def process_start(run: dict[str, Any]) -> float:
            states = {str(st["type"]): datetime.fromisoformat(str(st["timestamp"]))
                      for st in _call(api, f"/flow_run_states/?flow_run_id={run['id']}")}
            if "PENDING" not in states or "RUNNING" not in states:
                return 0.0
            return (states["RUNNING"] - states["PENDING"]).total_seconds()

        return {
            "batch_run_s": sum(float(r["total_run_time"]) for r in batch_runs) / len(batch_runs),
            "process_start_s": sum(map(process_start, batch_runs)) / len(batch_runs),
            "feedback_run_s_per_batch": sum(float(r["total_run_time"]) for r in feedback_runs)
            / max(1, len(jobs))}

    # -- counting
    def _count(self, result: Round) -> None:
        policy, store = self.options.policy, self.ws.store
        db = PolicyStore(self.lake_url)
        streams = result.streams
        where = " AND ".join([f"policy = '{policy}'",
                              "stream IN (" + ", ".join(f"'{s}'" for s in streams) + ")"])
        expected_items, expected_keys = _expected(store, streams, policy)
        _, rows = db.query(f"SELECT stream, batch, item_id FROM results WHERE {where}")
        have_items = {tuple(map(str, r)) for r in rows}
        _, rows = db.query(
            "SELECT stream, batch, item_id, call_site, function, backend, calls, flops, params, price "
            f"FROM decisions WHERE {where} AND call_site NOT LIKE '%{AUDIT_SUFFIX}[%'")
        have_keys = {tuple(map(str, r[:4])) for r in rows}
        missing_items = expected_items - have_items
        missing_keys = expected_keys - have_keys
        result.lost = len(missing_items) + len(missing_keys)
        if missing_items:
            result.details.append(f"{len(missing_items)} items without a result row "
                                  f"(e.g. {'/'.join(min(missing_items))})")
        if missing_keys:
            result.details.append(f"{len(missing_keys)} decision keys missing "
                                  f"(e.g. {'/'.join(min(missing_keys))})")
        extra = have_keys - expected_keys
        if extra:
            result.details.append(f"{len(extra)} decision keys in the ledger that no results file has")
        result.doubled = len(extra)
        for name, sql in DOUBLED_SQL.items():
            n = _scalar(db, _scoped(sql, streams))
            if n:
                result.details.append(f"{n} {name}")
            result.doubled += n
        _, versions = db.query(f"SELECT stream, version, parent FROM policy_versions WHERE {where} "
                               "ORDER BY stream, version")
        result.versions = len(versions)
        result.broken_links = sum(_broken_links([(int(v), p) for t, v, p in versions if t == s])
                                  for s in streams)
        if result.broken_links:
            result.details.append(f"{result.broken_links} policy versions whose parent is not the "
                                  "version before (or numbers with gaps)")
        # per (stream index, batch, item, call site): what ran and what it cost
        self.keys[result.workers] = {(r[0].split("-", 1)[1], *map(str, r[1:4])):
                                     (r[4], r[5], int(r[6]), float(r[7]), float(r[8]), round(float(r[9]), 12))
                                     for r in rows}
        result.totals = {"items": len(have_items), "decisions": len(rows),
                         "calls": sum(int(r[6]) for r in rows),
                         "gflops": sum(float(r[7]) for r in rows) / 1e9,
                         "price": sum(float(r[9]) for r in rows)}
        _, wall = db.query(f"SELECT sum(wall_ms) FROM decisions WHERE {where}")
        result.costs["model_ms_per_item"] = float(wall[0][0] or 0.0) / max(1, len(have_items))

    def compare(self, result: Round, reference: int) -> None:
        """Count the (stream, batch, item, call site) keys whose backend or costs differ from
        the ``reference`` round's (or that only one of the two has)."""
        mine, theirs = self.keys[result.workers], self.keys[reference]
        differing = {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
        result.differing = len(differing)
        if differing:
            result.details.append(f"{len(differing)} keys differ from the {reference}-worker round "
                                  f"(e.g. {'/'.join(min(differing))})")


def _expected(store: ObjectStore, streams: list[str], policy: str
              ) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """Items of the streams' manifests, and the (stream, batch, item, call site) keys of the
    decisions in their results files."""
    items: set[tuple[str, ...]] = set()
    keys: set[tuple[str, ...]] = set()
    for s in streams:
        for b in batches.list_batches(store, s):
            items |= {(s, b, item.item_id) for item in batches.read_manifest(store, s, b).records}
            loaded = batches.read_results(store, s, policy, b)
            for row in loaded[1] if loaded else []:
                keys |= {(s, b, row.item_id, d.call_site) for d in row.decisions}
    return items, keys


def _broken_links(chain: list[tuple[int, Any]]) -> int:
    """Versions (sorted) not numbered 1, 2, … or whose parent is not the version before."""
    return sum(1 for i, (version, parent) in enumerate(chain)
               if version != i + 1 or parent != (chain[i - 1][0] if i else None))


def _scoped(sql: str, streams: list[str]) -> str:
    """One of ``DOUBLED_SQL``'s counts, on the round's streams only: its tables replaced by
    subqueries that keep those streams' rows."""
    names = ", ".join(f"'{s}'" for s in streams)
    for table in ("results", "decisions", "learned_labels", "policy_versions"):
        sql = sql.replace(f"FROM {table}", f"FROM (SELECT * FROM {table} WHERE stream IN ({names}))")
    return sql


def _scalar(db: PolicyStore, sql: str) -> int:
    _, rows = db.query(sql)
    return int(rows[0][0] or 0) if rows else 0


@contextmanager
def cluster(root: Path, options: Options, echo: Any = print) -> Iterator[Cluster]:
    """A started ``Cluster``, closed (workers, moto, the Prefect server, Postgres) at the end."""
    c = Cluster(root, options)
    try:
        yield c.start(echo)
    finally:
        c.close()


# --- the report -----------------------------------------------------------------------------------

def report(rounds: list[Round]) -> str:
    base = rounds[0]
    first = f"{base.workers} worker{'s' if base.workers > 1 else ''}"
    lines = ["", "round        items  batches  runs  resubmitted  lost  doubled  versions  broken chain  "
             f"differ from {first}"]
    for r in rounds:
        lines.append(f"{r.workers} worker(s) {r.items:>7} {r.batches:>8} {r.runs:>5} "
                     f"{len(r.resubmitted):>12} "
                     f"{r.lost:>5} {r.doubled:>8} {r.versions:>9} {r.broken_links:>13} "
                     f"{'-' if r.differing is None else r.differing:>21}")
    lines += ["", "ledger totals (identical rounds have identical totals)",
              "round        items  decisions   calls      GFLOPs        price"]
    for r in rounds:
        t = r.totals
        lines.append(f"{r.workers} worker(s) {int(t['items']):>7} {int(t['decisions']):>10} "
                     f"{int(t['calls']):>7} {t['gflops']:>11.6f} {t['price']:>12.6f}")
    lines += ["", "throughput (this machine has 2 CPU cores, shared with the Prefect server, Postgres and "
              "moto, so more than 2 workers cannot add compute; the ratio shows what overlapping "
              "process starts and I/O buys)",
              f"workers  items  batch phase s  items/s  vs {first}  feedback s  "
              "end-to-end items/s"]
    for r in rounds:
        ratio = r.items_per_s / base.items_per_s if base.items_per_s else 0.0
        lines.append(f"{r.workers:>7} {r.items:>6} {r.batch_s:>14.1f} {r.items_per_s:>8.1f} {ratio:>11.2f}x "
                     f"{r.feedback_s:>11.1f} {r.end_to_end_per_s:>19.1f}")
    lines += ["", "measured costs (means over each round's runs; a batch is "
              f"{base.items // max(1, base.batches)} items)",
              "workers  model ms/item  batch run s  process start s  feedback s/batch  lake commits/batch  "
              "catalog tx/batch  prefect-db tx/batch run  prefect-db tx/feedback run"]
    for r in rounds:
        c = r.costs
        lines.append(f"{r.workers:>7} {c['model_ms_per_item']:>14.3f} {c['batch_run_s']:>12.2f} "
                     f"{c['process_start_s']:>16.2f} {c['feedback_run_s_per_batch']:>17.2f} "
                     f"{c['lake_commits_per_batch']:>19.1f} "
                     f"{c['catalog_tx_per_batch']:>17.1f} {c['prefect_db_tx_per_batch_run']:>24.1f} "
                     f"{c['prefect_db_tx_per_feedback_run']:>27.1f}")
    for r in rounds:
        if r.killed:
            k = r.killed
            lines.append(f"{r.workers} workers: killed (kill -9) worker pid {k.worker} and {k.processes} "
                         f"process(es) under it while it ran {k.run} ({k.batch}; results written before "
                         f"the kill: {'yes' if k.results_before else 'no'})")
        for line in r.resubmitted:
            lines.append(f"{r.workers} workers: resubmitted {line}")
        for line in r.details:
            lines.append(f"{r.workers} workers: {line}")
    return "\n".join(lines)


def run(root: Path, workers: list[int], options: Options, kill: bool = False,
        echo: Any = print) -> list[Round]:
    """Start the cluster, run one round per worker count (the first is the reference the
    others are compared with), stop it; the rounds."""
    rounds: list[Round] = []
    with cluster(root, options, echo) as c:
        for n in workers:
            r = c.run_round(n, kill=kill and n == max(workers), echo=echo)
            if rounds:
                c.compare(r, rounds[0].workers)
            rounds.append(r)
            echo(f"round w{n}: {r.items} items in {r.batch_s:.1f} s + feedback {r.feedback_s:.1f} s; "
                 f"lost {r.lost}, doubled {r.doubled}")
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(".fmp/cluster"),
                        help="where the services keep their files (emptied first)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3],
                        help="worker counts, one round each; the first is the reference")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--batches", type=int, default=2, help="batches per stream")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--policy", default="largest", help="a fixed policy (cheapest, largest, random)")
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    parser.add_argument("--kill-worker", action="store_true",
                        help="kill -9 one worker mid-run in the round with the most workers")
    args = parser.parse_args(argv)
    if len(set(args.workers)) != len(args.workers) or min(args.workers) < 1:
        parser.error(f"--workers {args.workers}: distinct counts of 1 or more")
    from policies.specs import FIXED_LEARNERS, policy_spec

    if policy_spec(args.policy).learner not in FIXED_LEARNERS:
        parser.error(f"--policy {args.policy} learns from feedback, so rounds would not be comparable; "
                     f"pick one of {sorted(p for p in ('cheapest', 'largest', 'random'))}")
    if not args.catalog.exists():
        parser.error(f"--catalog {args.catalog}: no such file")
    options = Options(args.streams, args.batches, args.batch_size, args.policy, args.catalog)
    try:
        rounds = run(args.root.resolve(), args.workers, options, args.kill_worker,
                     lambda line: print(line, flush=True))
    except (ClusterError, FaultSetupError) as exc:
        print(f"cluster-demo: error: {exc}", file=sys.stderr)
        return 1
    print(report(rounds))
    (args.root / "cluster.json").write_text(json.dumps([asdict(r) for r in rounds], indent=2) + "\n")
    bad = [f"{r.workers} workers" for r in rounds if not r.ok]
    verdict = ("FAILED: " + ", ".join(bad) if bad else
               "every round: lost 0, doubled 0, chains intact, same ledger as the first round")
    print(f"\n{verdict}; details in {args.root / 'cluster.json'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
