"""``python -m benchmarks.faults``: inject faults against real local services and count the damage.

Every fault runs the ``fmp`` command line as an operator would, in subprocesses, against a
Prefect server, DuckDB ledger and object store of its own (moto S3 where the fault is S3's),
all under one temporary folder; this module imports nothing from ``flows/``. After each fault
the runner recovers as an operator would (``fmp run-batch STREAM --all``, ``fmp feedback
STREAM``: nothing by hand in the ledger or on the server), waits for every writer to exit,
then reads the ledger read-only and counts:

- **lost**: items of the stream without a result row in the ledger, plus current labels that
  are not in the ledger or that the learner has not learned;
- **doubled**: duplicate (stream, policy, batch, item[, call site]) keys in the ledger's
  results and decisions, label versions learned twice, and policy versions learned from no
  label version (a batch learned again).

A row **recovered** when the recovery commands succeeded within the fault's bound and lost and
doubled are 0. The table goes to stdout, ``.fmp/faults.json`` (``--json``) gets
``{"faults": [{"name", "lost", "doubled", "recovered", "recover_s", "message"}]}``, and the
exit status is 1 when any row lost or doubled something or did not recover.

Kills at exact points use the test-only fault points of ``storage.faultpoints``: the runner
sets ``FMP_TEST_KILL_AT=<point>`` in the environment of the one command it kills, and the
process sends itself SIGKILL there (as ``kill -9`` at that instant would). Nothing else reads
that variable; outside this runner and its tests it is never set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from storage import batches, layout
from storage.base import ObjectStore
from storage.children import die_with_parent
from storage.faultpoints import KILL_AT_ENV
from storage.moto import free_port, set_dummy_credentials
from storage.records import Label, ManifestItem
from storage.url import open_store

QUERY = "red_circle_left_of_blue_square"  # a bool stream of the demo queries
STREAM = "s1"
#: the flows' default policy (``policies.specs.DEFAULT_POLICY``; a test holds them equal): the
#: commands below run without ``--policy``, as an operator would
POLICY = "fmp"
#: A hung S3 call fails with one line within this (storage.s3's timeouts and retries).
HUNG_CALL_BOUND_S = 30.0
#: A writer slot left by a killed feedback run is reclaimed within this (flows/locks.py).
RECLAIM_BOUND_S = 60.0
#: Any one command of the runner: past this it is killed and its fault did not recover.
COMMAND_TIMEOUT_S = 240.0
#: Scripted backends: the faults are about orchestration, storage and the ledger, not models.
CATALOG = """\
backends:
  - {name: det-cheap, kind: fake, functions: [find, exists, count], flops_per_call: 10, n_params: 10,
     answers: {"exists|circle": true, "find|circle": [[0, 0, 4, 4]]}, default: false}
  - {name: det-big, kind: fake, functions: [find, exists, count], flops_per_call: 1000, n_params: 1000,
     answers: {"exists|circle": true, "find|circle": [[0, 0, 4, 4]]}, default: false}
  - {name: attr-cheap, kind: fake, functions: [verify_property, query], flops_per_call: 20, n_params: 20,
     answers: {"verify_property|circle|red": true}, default: false}
  - {name: attr-big, kind: fake, functions: [verify_property, query], flops_per_call: 2000, n_params: 2000,
     answers: {"verify_property|circle|red": true}, default: false}
  - {name: mono, kind: fake, functions: [query], baseline_only: true, flops_per_call: 50000,
     n_params: 50000, answers: {}, default: "yes"}
"""


@dataclass
class Fault:
    """One row of the table."""

    name: str
    lost: int
    doubled: int
    recovered: bool
    recover_s: float
    message: str

    @property
    def ok(self) -> bool:
        return self.recovered and self.lost == 0 and self.doubled == 0


@dataclass
class Run:
    """One command's outcome."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def error_line(self) -> str:
        """The command's last error line (``fmp ...: error: ...``), or its last stderr line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ": error:" in ln]
        return (errors or lines or [f"exit status {self.returncode}"])[-1]


# --- the services ---------------------------------------------------------------------------------

def _executable(name: str) -> list[str]:
    """The virtual environment's console script ``name``, else ``python -m <module>``."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", {"fmp": "flows.cli", "prefect": "prefect"}[name]]


def children(pid: int) -> list[int]:
    """The pids of the child processes of ``pid`` (Linux ``/proc``)."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Services:
    """A Prefect server of the runner's own (or the one at ``api_url``) and a folder per fault,
    under ``root``."""

    def __init__(self, root: Path, api_url: str | None = None) -> None:
        self.root = root
        self.catalog = root / "catalog.yaml"
        self.catalog.write_text(CATALOG)
        self.port = free_port()
        self.api_url = api_url or f"http://127.0.0.1:{self.port}/api"
        self.own = api_url is None
        self._server: subprocess.Popen[bytes] | None = None

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FMP_", "PREFECT_")) and k != KILL_AT_ENV}
        env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
                   PREFECT_HOME=str(self.root / "prefect"), PREFECT_LOGGING_LEVEL="WARNING",
                   PREFECT_UI_ENABLED="false")
        return env

    def start(self) -> Services:
        if not self.own:
            return self
        log = (self.root / "prefect-server.log").open("wb")
        # events reach the events API within 0.5 s (Prefect's default: 5 s): the worker row waits
        # for its run's first heartbeat there; automations see events as they arrive either way
        env = {**self.base_env(), "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5"}
        self._server = subprocess.Popen(
            [*_executable("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent())
        log.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RuntimeError(f"the Prefect server exited ({self._server.returncode}); see "
                                   f"{self.root / 'prefect-server.log'}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the Prefect server did not answer in 180 s; see "
                           f"{self.root / 'prefect-server.log'}")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn: a session of their own
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()

    def mark_zombies(self) -> str:
        """Create on the runner's own server, as ``make serve`` does on its one, the automation
        that marks flow runs without heartbeats Crashed (``python -m flows.zombies``); returns
        its error line, or "" when it exists."""
        if not self.own:
            return ""
        done = subprocess.run([sys.executable, "-m", "flows.zombies"], capture_output=True, text=True,
                              env={**self.base_env(), "PREFECT_API_URL": self.api_url},
                              cwd=Path(__file__).resolve().parents[1], timeout=COMMAND_TIMEOUT_S)
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return "" if done.returncode == 0 else lines[-1]

    def kill(self) -> None:
        """Kill the runner's own server and its uvicorn (SIGKILL, as ``kill -9`` would)."""
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    def writer_slots(self) -> int:
        """Active slots of the ``fmp-store-writer`` limit on the server (0 when it has none)."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/v2/concurrency_limits/fmp-store-writer",
                                        timeout=10) as answer:
                return int(json.load(answer)["active_slots"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return 0
            raise

    def workspace(self, name: str) -> Workspace:
        home = self.root / name
        home.mkdir(parents=True)
        env = {**self.base_env(), "PREFECT_API_URL": self.api_url, "FMP_HOME": str(home),
               "FMP_CATALOG": str(self.catalog)}
        return Workspace(home, env)


@dataclass
class Workspace:
    """One fault's ``FMP_HOME`` (ledger, objects) and the environment of its commands."""

    home: Path
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    @property
    def storage_url(self) -> str:
        return self.env.get("FMP_STORAGE_URL") or str(self.home / "objects")

    @property
    def store(self) -> ObjectStore:
        endpoint = self.env.get("FMP_S3_ENDPOINT_URL")
        if endpoint and self.storage_url.startswith("s3://"):
            set_dummy_credentials()  # moto's, in this process too
            return open_store(f"{self.storage_url}?endpoint_url={endpoint}")
        return open_store(self.storage_url)

    @property
    def database(self) -> Path:
        return self.home / "fmp.duckdb"

    def fmp(self, *argv: str, kill_at: str | None = None, timeout_s: float = COMMAND_TIMEOUT_S) -> Run:
        """Run ``fmp argv`` to its end (``kill_at``: the fault point where it kills itself)."""
        env = {**self.env, **({KILL_AT_ENV: kill_at} if kill_at else {})}
        command = [*_executable("fmp"), *argv]
        start = time.monotonic()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
            run = Run(command, done.returncode, done.stdout, done.stderr, time.monotonic() - start)
        except subprocess.TimeoutExpired as exc:
            run = Run(command, -signal.SIGKILL, _text(exc.stdout), _text(exc.stderr) +
                      f"\nfmp {argv[0]}: timed out after {timeout_s:g} s", time.monotonic() - start)
        self.runs.append(run)
        return run

    def publish(self, batches_: int = 3, size: int = 6, *extra: str) -> None:
        self.check(self.fmp("stream", "publish", QUERY, "--stream", STREAM, "--batches", str(batches_),
                            "--batch-size", str(size), *extra))

    @staticmethod
    def check(run: Run) -> Run:
        if run.returncode != 0:
            raise FaultSetupError(f"`{' '.join(run.argv[-6:])}` failed: {run.error_line()}")
        return run

    def recover(self) -> tuple[bool, float, str]:
        """What an operator does after any fault: run what is unprocessed, ingest what is
        pending. Returns (both succeeded, seconds, the first error line)."""
        start = time.monotonic()
        for argv in (("run-batch", STREAM, "--all"), ("feedback", STREAM)):
            run = self.fmp(*argv)
            if run.returncode != 0:
                return False, time.monotonic() - start, run.error_line()
        return True, time.monotonic() - start, ""


class FaultSetupError(RuntimeError):
    """A step before the fault failed: the row reports it as not recovered."""


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


# --- counting -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Counts:
    lost: int
    doubled: int
    details: list[str]


DOUBLED_SQL = {
    "duplicate result keys": """
        SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT stream, policy, batch, item_id
                                                FROM results)) FROM results""",
    "duplicate decision keys": """
        SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT stream, policy, batch, item_id,
                                                call_site FROM decisions)) FROM decisions""",
    "label versions learned twice": """
        SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT stream, policy, batch, item_id, seq
                                                FROM learned_labels)) FROM learned_labels""",
    "policy versions learned from no new label": """
        SELECT count(*) FROM policy_versions v WHERE v.note LIKE 'learned from %' AND NOT EXISTS (
            SELECT 1 FROM learned_labels l WHERE l.stream = v.stream AND l.policy = v.policy
                                             AND l.version = v.version)""",
}
UNLEARNED_SQL = """
    SELECT count(*) FROM labels c
    JOIN (SELECT stream, batch, item_id, max(seq) AS seq FROM label_versions
          GROUP BY ALL) v USING (stream, batch, item_id)
    WHERE c.stream = $stream AND NOT EXISTS (
        SELECT 1 FROM learned_labels l WHERE l.stream = v.stream AND l.batch = v.batch
               AND l.item_id = v.item_id AND l.seq = v.seq AND l.policy = $policy)"""


@contextmanager
def ledger(database: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The ledger, read only (every writer has exited when the runner counts)."""
    conn = duckdb.connect(str(database), read_only=True)
    try:
        yield conn
    finally:
        conn.close()


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, str] | None = None) -> int:
    row = conn.execute(sql, params or {}).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def count(ws: Workspace, stream: str = STREAM, policy: str = POLICY) -> Counts:
    """Lost and doubled in a workspace's ledger, against its object store."""
    store = ws.store
    expected = {(b, item.item_id) for b in batches.list_batches(store, stream)
                for item in batches.read_manifest(store, stream, b).records}
    if not ws.database.exists():
        return Counts(len(expected), 0, [f"{len(expected)} items, no ledger"])
    details: list[str] = []
    with ledger(ws.database) as conn:
        rows = conn.execute("SELECT batch, item_id FROM results WHERE stream = $stream AND policy = $policy",
                            {"stream": stream, "policy": policy}).fetchall()
        missing = expected - {(str(b), str(i)) for b, i in rows}
        unlearned = scalar(conn, UNLEARNED_SQL, {"stream": stream, "policy": policy})
        doubled = {name: scalar(conn, sql) for name, sql in DOUBLED_SQL.items()}
    if missing:
        details.append(f"{len(missing)} items without a result row (e.g. {'/'.join(min(missing))})")
    if unlearned:
        details.append(f"{unlearned} current labels not learned")
    details += [f"{n} {name}" for name, n in doubled.items() if n]
    return Counts(len(missing) + unlearned, sum(doubled.values()), details)


def row(name: str, ws: Workspace, recovered: bool, recover_s: float, message: str,
        extra_lost: int = 0, extra_doubled: int = 0, extra_details: list[str] | None = None) -> Fault:
    counts = count(ws)
    details = [*(extra_details or []), *counts.details]
    text = "; ".join([message, *details]) if details else message
    return Fault(name, counts.lost + extra_lost, counts.doubled + extra_doubled, recovered,
                 round(recover_s, 1), text)


# --- the faults -----------------------------------------------------------------------------------

def kill_run_batch(services: Services, point: str) -> Fault:
    """``fmp run-batch --all`` killed (-9) at a fault point of its first batch's results write."""
    what = {"results-before": "before results", "results-between": "between results and marker",
            "results-after": "after marker"}[point]
    ws = services.workspace(f"run-batch-{point}")
    ws.publish()
    killed = ws.fmp("run-batch", STREAM, "--all", kill_at=point)
    if not killed.killed:
        return row(f"run-batch kill -9 {what}", ws, False, 0.0,
                   f"the fault point was not reached: {killed.error_line()}")
    results = ws.store.exists(layout.results_key(STREAM, POLICY, "b0000"))
    marker = ws.store.exists(layout.success_key(STREAM, POLICY, "b0000"))
    before = count(ws)
    left = (f"left results.jsonl {'yes' if results else 'no'}, _SUCCESS {'yes' if marker else 'no'}, "
            f"lost {before.lost} before recovery")
    ok, seconds, error = ws.recover()
    return row(f"run-batch kill -9 {what}", ws, ok, seconds,
               f"{left}; rerun + feedback {'done' if ok else 'failed: ' + error}")


def kill_feedback(services: Services, point: str) -> Fault:
    """``fmp feedback`` killed (-9) before, inside or after the writer block; feedback again."""
    what = {"feedback-before": "before the writer block", "feedback-inside": "inside the writer block",
            "feedback-after": "after the writer block"}[point]
    ws = services.workspace(point)
    ws.publish()
    ws.check(ws.fmp("run-batch", STREAM, "--all"))
    slots_before = services.writer_slots()
    killed = ws.fmp("feedback", STREAM, kill_at=point)
    if not killed.killed:
        return row(f"feedback kill -9 {what}", ws, False, 0.0,
                   f"the fault point was not reached: {killed.error_line()}")
    stale = services.writer_slots() - slots_before
    before = count(ws)
    run = ws.fmp("feedback", STREAM, timeout_s=RECLAIM_BOUND_S + 60)
    ok = run.returncode == 0 and (stale == 0 or run.seconds < RECLAIM_BOUND_S)
    message = (f"lost {before.lost} before recovery, writer slot left taken: {stale}; the next feedback "
               f"{'ran' if run.returncode == 0 else 'failed: ' + run.error_line()} in {run.seconds:.1f} s")
    if "reclaimed" in run.stderr:
        message += " (reclaimed the slot)"
    left = services.writer_slots()
    return row(f"feedback kill -9 {what}", ws, ok and left == 0, run.seconds,
               message + (f"; {left} writer slots still taken" if left else ""))


def _run_batch_reading(ws: Workspace, log: Path, images: int) -> subprocess.Popen[str]:
    """``fmp run-batch`` started in the background, returned once moto's request log shows it
    has read ``images`` more images (or it ended, or the command timeout passed: then killed)."""
    seen = log.read_text(errors="replace").count("/images/")
    proc = subprocess.Popen([*_executable("fmp"), "run-batch", STREAM], env=ws.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while log.read_text(errors="replace").count("/images/") < seen + images and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            break
        time.sleep(0.01)
    return proc


def frozen_moto(services: Services) -> Fault:
    """moto frozen (SIGSTOP) while ``fmp run-batch`` reads a batch's images: the command fails
    with one line within the bound; thawed, the rerun does the batch."""
    ws = services.workspace("frozen-moto")
    with moto(ws, free_port()) as (_, server, log):
        ws.publish(2, 40, "--create-bucket")
        proc = _run_batch_reading(ws, log, 1)
        os.kill(server, signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=HUNG_CALL_BOUND_S * 3)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        failed_after = time.monotonic() - frozen
        os.kill(server, signal.SIGCONT)
        first = Run([], proc.returncode, "", stderr, failed_after)
        ok, seconds, error = ws.recover()
        lines = [ln for ln in stderr.splitlines() if ": error:" in ln]
        bounded = proc.returncode == 1 and len(lines) == 1 and failed_after < HUNG_CALL_BOUND_S
        return row("moto frozen (SIGSTOP) mid-read", ws, ok and bounded, failed_after + seconds,
                   f"run-batch ended after {failed_after:.1f} s (exit {proc.returncode}, "
                   f"{len(lines)} error line(s): {first.error_line()[:160]}); thawed, rerun + feedback "
                   f"{'done' if ok else 'failed: ' + error} in {seconds:.1f} s")


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG of a few dozen bytes declaring ``width`` × ``height`` pixels (400 megapixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def decompression_bomb(services: Services) -> Fault:
    """A batch with one decompression bomb between clean items: the bomb fails alone."""
    ws = services.workspace("bomb")
    ws.publish(1, 6)
    store = ws.store
    items = [(item, batches.read_image(store, STREAM, "b0000", item))
             for item in batches.read_manifest(store, STREAM, "b0000").records]
    bomb = ManifestItem(item_id="bomb", image="images/bomb.png")
    batches.write_batch(store, STREAM, "b0001", [*items[:3], (bomb, bomb_png()), *items[3:]])
    labels = batches.read_labels(store, STREAM, "b0000").records
    batches.write_labels(store, STREAM, "b0001", [*labels, Label(item_id="bomb", answer=False)])
    start = time.monotonic()
    run = ws.fmp("run-batch", STREAM, "--all")
    feedback = ws.fmp("feedback", STREAM)
    seconds = time.monotonic() - start
    loaded = batches.read_results(store, STREAM, POLICY, "b0001")
    if loaded is None:
        return row("decompression bomb in a batch", ws, False, seconds,
                   f"no results for the bomb's batch: {run.error_line()}")
    failed = {r.item_id: r.error or "" for r in loaded[1] if r.status == "failed"}
    ok = run.returncode == 0 and feedback.returncode == 0 and list(failed) == ["bomb"]
    return row("decompression bomb in a batch", ws, ok, seconds,
               f"{len(loaded[1]) - len(failed)} items ok, failed: "
               f"{failed.get('bomb', '')[:120] or list(failed)}")


def bad_labels(services: Services) -> Fault:
    """Late, corrected, duplicate and malformed labels (and one for an unknown item) arrive after
    a batch was learned: ``fmp feedback`` applies the late and corrected ones exactly once and
    rejects the rest."""
    ws = services.workspace("labels")
    ws.publish(2, 8)
    store = ws.store
    key = layout.labels_key(STREAM, "b0000")
    labels = batches.read_labels(store, STREAM, "b0000").records
    late, corrected, duplicate = labels[5:], labels[:2], labels[2]
    batches.write_labels(store, STREAM, "b0000", labels[:5])  # three labels come late
    ws.check(ws.fmp("run-batch", STREAM, "--all"))
    ws.check(ws.fmp("feedback", STREAM))
    with ledger(ws.database) as conn:
        versions_before = scalar(conn, "SELECT count(*) FROM policy_versions")
    lines = [json.dumps({"item_id": lab.item_id,
                         "answer": (not lab.answer) if lab in corrected else lab.answer})
             for lab in labels]
    lines += [json.dumps({"item_id": duplicate.item_id, "answer": duplicate.answer}),
              '{"item_id": "x", "answer": ', json.dumps({"item_id": "nosuchitem", "answer": True})]
    store.put(key, ("\n".join(lines) + "\n").encode())
    start = time.monotonic()
    run = ws.fmp("feedback", STREAM)
    again = ws.fmp("feedback", STREAM)  # nothing new: no ledger change, no new version
    seconds = time.monotonic() - start
    with ledger(ws.database) as conn:
        current = dict(conn.execute("SELECT item_id, answer FROM labels WHERE stream = $s "
                                    "AND batch = 'b0000'", {"s": STREAM}).fetchall())
        seqs = dict(conn.execute("SELECT item_id, max(seq) FROM label_versions WHERE stream = $s "
                                 "AND batch = 'b0000' GROUP BY item_id", {"s": STREAM}).fetchall())
        versions = scalar(conn, "SELECT count(*) FROM policy_versions")
    missing_late = [lab.item_id for lab in late if lab.item_id not in current]
    not_corrected = [lab.item_id for lab in corrected if seqs.get(lab.item_id) != 2]
    extra_versions = [i for i, seq in seqs.items() if seq != 1 and i not in {c.item_id for c in corrected}]
    details = ([f"late labels missing: {missing_late}"] if missing_late else []) + (
        [f"corrections not applied: {not_corrected}"] if not_corrected else []) + (
        [f"label versions added by a duplicate: {extra_versions}"] if extra_versions else [])
    new_versions = versions - versions_before
    # one warning line each: the duplicate, the malformed line, the unknown item
    rejected = [ln for ln in run.stderr.splitlines() if f"{STREAM}/b0000: " in ln]
    ok = run.returncode == 0 and again.returncode == 0 and new_versions == 1 and len(rejected) == 3
    return row("duplicate, late, corrected, malformed labels", ws, ok, seconds,
               f"{len(late)} late and {len(corrected)} corrected applied, {new_versions} new policy "
               f"version, {len(rejected)} lines rejected with a warning, feedback again: "
               f"{again.stdout.strip().splitlines()[-1] if again.stdout.strip() else again.error_line()}",
               extra_lost=len(missing_late) + len(not_corrected), extra_doubled=len(extra_versions),
               extra_details=details)


DISK_FULL_SCRIPT = r"""
set -u
full="$1"; objects="$2"; out="$3"; shift 3
mount -t tmpfs -o size=8m fmp-faults "$full" || exit 90
cp -a "$objects"/. "$full"/ || exit 91
dd if=/dev/zero of="$full/filler" bs=64k >/dev/null 2>&1
export FMP_STORAGE_URL="$full"
"$@" run-batch s1 --batch b0000 >"$out/full.out" 2>"$out/full.err"; echo $? >"$out/full.rc"
rm -f "$full/filler"
start=$(date +%s.%N)
"$@" run-batch s1 --all >"$out/rerun.out" 2>"$out/rerun.err"; echo $? >"$out/rerun.rc"
"$@" feedback s1 >"$out/feedback.out" 2>"$out/feedback.err"; echo $? >"$out/feedback.rc"
echo "$(date +%s.%N) - $start" | bc >"$out/seconds"
"""


def disk_full(services: Services) -> Fault | None:
    """The results write hits a full disk (a small tmpfs, filled, in a mount namespace of the
    runner's own); the results are kept under ``$FMP_HOME/kept/`` and the rerun, with space
    again, writes them. None when no tmpfs can be mounted here."""
    ws = services.workspace("disk-full")
    ws.publish(2, 6)
    full, out = ws.home / "full", ws.home / "out"
    full.mkdir()
    out.mkdir()
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("bc") is None:
        return None
    namespace = [unshare, "-m"] if os.geteuid() == 0 else [unshare, "-rm"]
    done = subprocess.run([*namespace, "bash", "-c", DISK_FULL_SCRIPT, "disk-full", str(full),
                           str(ws.home / "objects"), str(out), *_executable("fmp")],
                          env=ws.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S * 3)
    if done.returncode in (90, 91) or not (out / "full.rc").exists():
        return None  # no tmpfs here (no mount namespace, or mount refused)

    def result(name: str) -> tuple[int, str]:
        rc = int((out / f"{name}.rc").read_text() or 1)
        err = [ln for ln in (out / f"{name}.err").read_text().splitlines() if ": error:" in ln]
        return rc, (err or [""])[-1]

    full_rc, full_error = result("full")
    rerun_rc, rerun_error = result("rerun")
    feedback_rc, feedback_error = result("feedback")
    seconds = float((out / "seconds").read_text())
    kept = "kept in" in full_error and "No space left on device" in full_error
    delivered = "wrote the 6 results kept in" in (out / "rerun.err").read_text()
    ok = full_rc == 1 and kept and delivered and rerun_rc == 0 and feedback_rc == 0
    # the ledger and manifests are outside the tmpfs: count against the published copy
    first = ("run-batch failed with one line: No space left on device, 6 results kept under "
             "$FMP_HOME/kept" if kept else f"run-batch: {full_error[:200] or f'exit {full_rc}'}")
    then = ("with space again the rerun wrote the kept results without recomputing, feedback done"
            if ok else f"with space again: {rerun_error or feedback_error or 'kept results not written'}")
    return row("disk full on the results write (tmpfs)", ws, ok, seconds, f"{first}; {then}")


# --- faults added later: the store file locked, clock skew, a large batch, moto killed, the server killed

def _ledger_rows(ws: Workspace) -> dict[str, int]:
    """Row counts of the ledger's tables that feedback writes (empty when there is no ledger)."""
    if not ws.database.exists():
        return {}
    tables = ("results", "decisions", "labels", "label_versions", "learned_labels", "policy_versions")
    with ledger(ws.database) as conn:
        present = {str(r[0]) for r in conn.execute("SELECT table_name FROM information_schema.tables")
                   .fetchall()}
        return {t: scalar(conn, f"SELECT count(*) FROM {t}") for t in tables if t in present}


HOLD_SCRIPT = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])  # read-write: DuckDB's lock on the file
print("held", flush=True)
sys.stdin.read()  # until the runner closes the pipe
conn.close()
"""
#: ``FMP_LOCK_TIMEOUT_S`` of the feedback run that meets a held store file.
LOCK_TIMEOUT_S = 3.0


def store_lock_held(services: Services) -> Fault:
    """Another process holds the ledger file open read-write for longer than the feedback run's
    lock timeout: feedback fails with one line naming the file and writes nothing; once the
    file is released, feedback does the work."""
    ws = services.workspace("lock-held")
    ws.publish(2, 6)
    ws.check(ws.fmp("run-batch", STREAM, "--all"))
    ws.check(ws.fmp("feedback", STREAM, "--batch", "b0000"))  # a ledger with rows; b0001 pending
    before_rows = _ledger_rows(ws)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(ws.database)], env=ws.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              preexec_fn=die_with_parent())
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "held":
            raise FaultSetupError("the process holding the ledger file did not start")
        ws.env["FMP_LOCK_TIMEOUT_S"] = f"{LOCK_TIMEOUT_S:g}"
        blocked = ws.fmp("feedback", STREAM, timeout_s=LOCK_TIMEOUT_S + 120)
        del ws.env["FMP_LOCK_TIMEOUT_S"]
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=15)
    after_rows = _ledger_rows(ws)
    lines = [ln for ln in blocked.stderr.splitlines() if ": error:" in ln]
    named = str(ws.database) in blocked.error_line()
    failed_well = blocked.returncode == 1 and len(lines) == 1 and named and after_rows == before_rows
    start = time.monotonic()
    run = ws.fmp("feedback", STREAM)
    seconds = time.monotonic() - start
    ok = failed_well and run.returncode == 0
    first = (f"feedback with FMP_LOCK_TIMEOUT_S={LOCK_TIMEOUT_S:g} failed after {blocked.seconds:.1f} s "
             f"(exit {blocked.returncode}, {len(lines)} error line(s), file named: "
             f"{'yes' if named else 'no'}, ledger {'unchanged' if after_rows == before_rows else 'CHANGED'}"
             f"): {blocked.error_line().split('; wait for')[0][:160]}")
    then = f"released, feedback {'done' if run.returncode == 0 else 'failed: ' + run.error_line()}"
    return row("DuckDB lock held past the timeout", ws, ok, seconds, f"{first}; {then}")


#: Timestamps far from now, both ways: 1 Jan 1971 and 1 Jan 2100 (UTC).
PAST_S, FUTURE_S = 31536000.0, 4102444800.0


def clock_skew(services: Services) -> Fault:
    """Labels files and results markers stamped far in the past and the future (file times and
    the markers' ``created_at``): feedback learns every label once; stamped the other way round,
    feedback again changes nothing in the ledger."""
    ws = services.workspace("clock-skew")
    ws.publish(2, 6)
    ws.check(ws.fmp("run-batch", STREAM, "--all"))
    objects = ws.home / "objects"

    def skew(flip: bool) -> None:
        for k, b in enumerate(("b0000", "b0001")):
            labels_at, results_at = (PAST_S, FUTURE_S) if (k == 0) != flip else (FUTURE_S, PAST_S)
            os.utime(objects / layout.labels_key(STREAM, b), (labels_at, labels_at))
            marker = objects / layout.success_key(STREAM, POLICY, b)
            data = json.loads(marker.read_text())
            data["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(results_at))
            marker.write_text(json.dumps(data, indent=2))
            for key in (layout.results_key(STREAM, POLICY, b), layout.success_key(STREAM, POLICY, b)):
                os.utime(objects / key, (results_at, results_at))

    skew(False)
    start = time.monotonic()
    run = ws.fmp("feedback", STREAM)
    seconds = time.monotonic() - start
    learned = _ledger_rows(ws)
    skew(True)
    again = ws.fmp("feedback", STREAM)
    rerun = ws.fmp("run-batch", STREAM, "--all")  # nothing to do: the results are there
    after = _ledger_rows(ws)
    changed = {t: after.get(t, 0) - n for t, n in learned.items() if after.get(t, 0) != n}
    ok = run.returncode == 0 and again.returncode == 0 and rerun.returncode == 0 and not changed
    return row("clock skew between labels and results", ws, ok, seconds,
               f"labels stamped 1971/2100, results markers 2100/1971: feedback "
               f"{'learned' if run.returncode == 0 else 'failed: ' + run.error_line()} "
               f"({learned.get('learned_labels', 0)} label versions); stamped the other way round, "
               f"feedback and run-batch again changed {changed or 'nothing'}",
               extra_doubled=sum(abs(n) for n in changed.values()))


#: The large batch: 10,000 items (the whole row, publishing included, about 2 minutes on a
#: shared 2-core machine).
LARGE_BATCH = 10_000
CORRUPTIONS: list[Callable[[bytes], bytes]] = [
    lambda b: b[: len(b) // 2],             # truncated
    lambda b: b"",                          # empty
    lambda b: b"not an image at all",       # not an image
    lambda b: b[:8] + b"\0" * (len(b) - 8),  # PNG signature, zeroed chunks
    lambda b: bytes(reversed(b)),           # garbage of the same size
]


def corrupt_batch(services: Services) -> Fault:
    """One batch of ``LARGE_BATCH`` items, 1 % of its images corrupt (five kinds): those rows
    fail alone, each naming its item; the rest are answered and learned."""
    ws = services.workspace("large-batch")
    ws.publish(1, LARGE_BATCH)
    store = ws.store
    items = batches.read_manifest(store, STREAM, "b0000").records
    bad = items[:: 100]
    for k, item in enumerate(bad):
        key = layout.image_key(STREAM, "b0000", item.image)
        store.put(key, CORRUPTIONS[k % len(CORRUPTIONS)](store.get(key)))
    ok, seconds, error = ws.recover()
    loaded = batches.read_results(store, STREAM, POLICY, "b0000")
    failed = {r.item_id: r.error or "" for r in loaded[1] if r.status == "failed"} if loaded else {}
    named = sum(1 for i, e in failed.items() if i in e)
    ok = ok and set(failed) == {i.item_id for i in bad} and named == len(bad)
    return row(f"{LARGE_BATCH:,}-item batch, 1% corrupt images", ws, ok, seconds,
               f"{LARGE_BATCH:,} items, {len(bad)} corrupt ({len(CORRUPTIONS)} kinds): "
               f"{len(failed)} rows failed ({named} naming their item, e.g. "
               f"{min(failed.values(), default='')[:90]}), {len(loaded[1]) - len(failed) if loaded else 0} "
               f"ok; run-batch + feedback {'done' if ok else 'failed: ' + (error or 'see counts')}")


@contextmanager
def moto(ws: Workspace, port: int) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """``python -m storage.moto`` on ``port`` for the workspace: (the process, its ``moto_server``
    child's pid, that child's request log); stopped at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "storage.moto", "--port", str(port)],
                            env=ws.env, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent())
    try:
        assert proc.stdout is not None
        if "moto S3 on" not in proc.stdout.readline():
            raise FaultSetupError("python -m storage.moto did not start")
        (server,) = children(proc.pid)
        ws.env.update(FMP_STORAGE_URL="s3://fmp-faults/objects",
                      FMP_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                      AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
        yield proc, server, Path(f"/proc/{server}/fd/2")  # moto's request log: a file of its own
    finally:
        try:
            for pid in children(proc.pid) if proc.poll() is None else []:
                os.kill(pid, signal.SIGCONT)
        except (FileNotFoundError, ProcessLookupError):
            pass  # it ended meanwhile
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()


def killed_moto(services: Services) -> Fault:
    """``moto_server`` killed (SIGKILL) once ``fmp run-batch`` has read its batch's images, so the
    results write meets a dead endpoint. moto keeps its objects in memory only: the store is
    gone with it. The results are kept under ``$FMP_HOME/kept``; a fresh moto on the same port,
    the stream published again (same seed: the same items), the next run writes the kept
    results without recomputing them."""
    ws = services.workspace("killed-moto")
    port = free_port()
    with moto(ws, port) as (_, server, log):
        ws.publish(2, 6, "--create-bucket")
        proc = _run_batch_reading(ws, log, 6)
        os.kill(server, signal.SIGKILL)
        killed = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        failed_after = time.monotonic() - killed
    first = Run([], proc.returncode, "", stderr, failed_after)
    lines = [ln for ln in stderr.splitlines() if ": error:" in ln]
    kept = sorted(str(p.relative_to(ws.home)) for p in (ws.home / "kept").rglob("results.jsonl"))
    with moto(ws, port):  # a fresh, empty moto: the same port, the stream published again
        start = time.monotonic()
        ws.publish(2, 6, "--create-bucket")
        ok, seconds, error = ws.recover()
        seconds = time.monotonic() - start
        delivered = "kept in" in "".join(r.stderr for r in ws.runs[-2:])
        ok = ok and delivered and proc.returncode == 1 and len(lines) == 1 and bool(kept)
        return row("moto killed (SIGKILL) mid-write", ws, ok, seconds,
                   f"moto keeps objects in memory only (killed, the store is gone); run-batch ended "
                   f"{failed_after:.1f} s after the kill (exit {proc.returncode}, {len(lines)} error "
                   f"line(s): {first.error_line()[:110]}), results kept: {kept or 'none'}; fresh moto, "
                   f"stream published again, rerun {'wrote the kept results' if delivered else 'recomputed'}"
                   f" + feedback {'done' if ok else 'failed: ' + (error or 'see message')}")


#: The worker-killed row's batch: enough items that its flow run computes for a few seconds.
WORKER_BATCH = 2000
#: Deploys the stream-batch flow from this checkout to a pool (run in a subprocess: the runner
#: imports nothing from ``flows/``); prints the deployment's id.
DEPLOY_SCRIPT = """\
import sys
from prefect import flow
from flows.zombies import HEARTBEAT_S
deployment = flow.from_source(source=sys.argv[1], entrypoint="flows/stream_batch.py:stream_batch")
print(deployment.deploy(name="stream-batch", work_pool_name=sys.argv[2], parameters={"policy": "learned"},
                        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}},
                        print_next_steps=False))
"""
#: A flow run whose process was killed is marked Crashed by the server within this
#: (``flows.zombies.CRASHED_WITHIN_S``: a heartbeat every 30 s, Crashed 90 s after the last one).
CRASHED_BOUND_S = 130.0


def descendants(pid: int) -> list[int]:
    """The pids of every process under ``pid`` (children first, then theirs)."""
    found: list[int] = []
    try:
        for child in children(pid):
            found += [child, *descendants(child)]
    except (FileNotFoundError, ProcessLookupError):
        pass  # it ended meanwhile
    return found


def _api(services: Services, path: str, body: dict[str, object] | None = None) -> Any:
    """A call of the Prefect API (POST with ``body``, else GET) and its JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{services.api_url}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def _state(services: Services, flow_run: str) -> str:
    state = _api(services, f"/flow_runs/{flow_run}").get("state")
    return str(state.get("type")) if isinstance(state, dict) else "none"


def _heartbeat_seen(services: Services, flow_run: str) -> bool:
    """Whether the server has a ``prefect.flow-run.heartbeat`` event of ``flow_run``."""
    found = _api(services, "/events/filter", {"limit": 1, "filter": {
        "event": {"name": ["prefect.flow-run.heartbeat"]},
        "resource": {"id": [f"prefect.flow-run.{flow_run}"]}}})
    return bool(found.get("events"))


def _running_since(services: Services, since: float) -> list[str]:
    """The ids of the flow runs RUNNING on the server that started after ``since`` (epoch s)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    found = _api(services, "/flow_runs/filter", {"flow_runs": {
        "state": {"type": {"any_": ["RUNNING"]}}, "start_time": {"after_": started}}})
    return [str(run["id"]) for run in found] if isinstance(found, list) else []


def _crashed_after(services: Services, flow_runs: list[str], killed_at: float,
                   bound_s: float = CRASHED_BOUND_S) -> dict[str, float | None]:
    """Per flow run, seconds from ``killed_at`` (epoch s) to its Crashed state (the state's own
    timestamp), waiting until ``killed_at + bound_s`` and a little past; None: not Crashed."""
    from datetime import datetime

    found: dict[str, float | None] = dict.fromkeys(flow_runs)
    while True:
        for run in [r for r, s in found.items() if s is None]:
            state = _api(services, f"/flow_runs/{run}").get("state")
            if isinstance(state, dict) and state.get("type") == "CRASHED":
                found[run] = datetime.fromisoformat(str(state["timestamp"])).timestamp() - killed_at
        if all(s is not None for s in found.values()) or time.time() > killed_at + bound_s + 5:
            return found
        time.sleep(1.0)


def _crash_report(crashed: dict[str, float | None], bound_s: float = CRASHED_BOUND_S) -> tuple[bool, str]:
    """Whether every run was marked Crashed within ``bound_s``, and a few words saying so."""
    if not crashed:
        return False, "no killed flow run found RUNNING on the server"
    late = [s for s in crashed.values() if s is None or s > bound_s]
    times = ", ".join("never" if s is None else f"{s:.0f} s" for s in crashed.values())
    if late:
        return False, f"the server did NOT mark {len(late)} of {len(crashed)} killed run(s) Crashed " \
                      f"within {bound_s:g} s (Crashed after: {times})"
    return True, f"the server marked the killed run(s) Crashed {times} after the kill (bound {bound_s:g} s)"


def killed_worker(services: Services) -> Fault | None:
    """``prefect worker`` and the flow-run process it started killed (SIGKILL) while a
    deployment's stream-batch run computes a batch; an operator's rerun + feedback recover.
    None when the server is not the runner's own (the row creates a work pool on it)."""
    if not services.own:
        return None
    ws = services.workspace("killed-worker")
    ws.publish(1, WORKER_BATCH)
    checkout = Path(__file__).resolve().parents[1]
    pool = "fmp-faults"
    prefect = [*_executable("prefect"), "--no-prompt"]
    created = subprocess.run([*prefect, "work-pool", "create", pool, "--type", "process", "--overwrite"],
                             env=ws.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    ws.check(Run(["work-pool", "create"], created.returncode, created.stdout, created.stderr, 0.0))
    deployed = subprocess.run([sys.executable, "-c", DEPLOY_SCRIPT, str(checkout), pool], cwd=checkout,
                              env=ws.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    ws.check(Run(["deploy", "stream-batch"], deployed.returncode, deployed.stdout, deployed.stderr, 0.0))
    deployment = deployed.stdout.split()[-1]
    log = (ws.home / "worker.log").open("wb")
    worker = subprocess.Popen([*prefect, "worker", "start", "--pool", pool],
                              env={**ws.env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, cwd=checkout,
                              stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent())
    log.close()
    try:
        flow_run = str(_api(services, f"/deployments/{deployment}/create_flow_run",
                            {"parameters": {"stream": STREAM, "policy": POLICY}})["id"])
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        state = _state(services, flow_run)
        while state != "RUNNING" and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            state = _state(services, flow_run)
        if state != "RUNNING":
            return row("worker killed (kill -9) mid-run", ws, False, 0.0,
                       f"the flow run never ran (state {state}, worker exit {worker.poll()}); "
                       f"see {ws.home / 'worker.log'}")
        running = time.monotonic()
        while not _heartbeat_seen(services, flow_run) and time.monotonic() - running < 30:
            time.sleep(0.2)  # the first heartbeat is sent as the flow starts; it marks the run alive
        beat_s = time.monotonic() - running
        pids = [worker.pid, *descendants(worker.pid)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        worker.wait()
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in pids[1:]) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    marker = ws.store.exists(layout.success_key(STREAM, POLICY, "b0000"))
    before = count(ws)
    after_kill = _state(services, flow_run)
    ok, seconds, error = ws.recover()
    marked, marking = _crash_report(_crashed_after(services, [flow_run], killed_at))
    # the batch's results and marker written before the kill: the fault came too late
    return row("worker killed (kill -9) mid-run", ws, ok and marked and not marker, seconds,
               f"killed the worker and {len(pids) - 1} process(es) under it once the run's first "
               f"heartbeat was on the server ({beat_s:.1f} s after Running), the run {after_kill}; "
               f"_SUCCESS {'yes' if marker else 'no'}, lost {before.lost} before recovery; rerun + "
               f"feedback {'done' if ok else 'failed: ' + error}; {marking}")


#: A command whose Prefect server died ends (with one error line) within this.
SERVER_GONE_BOUND_S = 90.0


def killed_server(services: Services) -> Fault | None:
    """The runner's Prefect server killed (SIGKILL, with its uvicorn) while ``fmp run-batch --all``
    runs against it: the command fails with one line; the server started again on the same
    port and database, rerun + feedback recover. None when the server is not the runner's own."""
    if not services.own:
        return None
    ws = services.workspace("killed-server")
    ws.publish(3, 6)
    store = ws.store
    began = time.time() - 1
    proc = subprocess.Popen([*_executable("fmp"), "run-batch", STREAM, "--all"], env=ws.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while not store.exists(layout.success_key(STREAM, POLICY, "b0000")) and proc.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    services.kill()
    killed = time.monotonic()
    killed_at = time.time()
    try:
        _, stderr = proc.communicate(timeout=SERVER_GONE_BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        stderr += f"\nfmp run-batch: killed: still running {SERVER_GONE_BOUND_S:g} s after the server died"
    (ws.home / "run-batch.stderr").write_text(stderr)
    failed_after = time.monotonic() - killed
    first = Run([], proc.returncode, "", stderr, failed_after)
    lines = [ln for ln in stderr.splitlines() if ": error:" in ln]
    done = sum(store.exists(layout.success_key(STREAM, POLICY, b)) for b in ("b0000", "b0001", "b0002"))
    start = time.monotonic()
    services.start()
    restart_s = time.monotonic() - start
    recovered, seconds, error = ws.recover()
    seconds += restart_s
    # the killed command's runs: RUNNING since before the kill (the recovery's own have ended)
    marked, marking = _crash_report(_crashed_after(services, _running_since(services, began), killed_at))
    ok = recovered and marked and proc.returncode == 1 and len(lines) == 1
    return row("Prefect server killed (SIGKILL) mid-run", ws, ok, seconds,
               f"killed with {done} of 3 batches done; run-batch --all ended {failed_after:.1f} s later "
               f"(exit {proc.returncode}, {len(lines)} error line(s): {first.error_line()[:110]}); "
               f"server restarted in {restart_s:.1f} s, rerun + feedback "
               f"{'done' if recovered else 'failed: ' + error}; {marking}")


FAULTS: dict[str, Callable[[Services], Fault | None]] = {
    "run-batch-before": lambda s: kill_run_batch(s, "results-before"),
    "run-batch-between": lambda s: kill_run_batch(s, "results-between"),
    "run-batch-after": lambda s: kill_run_batch(s, "results-after"),
    "feedback-before": lambda s: kill_feedback(s, "feedback-before"),
    "feedback-inside": lambda s: kill_feedback(s, "feedback-inside"),
    "feedback-after": lambda s: kill_feedback(s, "feedback-after"),
    "moto-frozen": frozen_moto,
    "bomb": decompression_bomb,
    "labels": bad_labels,
    "disk-full": disk_full,
    "lock-held": store_lock_held,
    "clock-skew": clock_skew,
    "large-batch": corrupt_batch,
    "moto-killed": killed_moto,
    "worker-killed": killed_worker,
    "server-killed": killed_server,  # last: the other rows' server is killed and started again
}
#: Why a fault function returned None (the fault cannot be injected here).
NOT_RUN = {"disk-full": "no tmpfs can be mounted here",
           "worker-killed": "the Prefect server is not the runner's own",
           "server-killed": "the Prefect server is not the runner's own"}


# --- the table ------------------------------------------------------------------------------------

def run_faults(names: list[str], root: Path, echo: Callable[[str], None] = print,
               api_url: str | None = None) -> list[Fault]:
    """Run the named faults (keys of ``FAULTS``) with services under ``root`` (a Prefect server
    of their own unless ``api_url`` names one); one row each (a fault that cannot be injected
    here, disk full without a tmpfs or the server killed when it is not the runner's own, is
    left out, said once)."""
    services = Services(root, api_url).start()
    rows: list[Fault] = []
    try:
        if error := services.mark_zombies():
            echo(f"the zombie automation was not created ({error}): killed runs stay Running")
        for name in names:
            try:
                fault = FAULTS[name](services)
            except Exception as exc:  # the row says what went wrong; the other faults run
                fault = Fault(name, 0, 0, False, 0.0, f"{type(exc).__name__}: {exc}")
            if fault is None:
                echo(f"{name}: not run ({NOT_RUN.get(name, 'cannot be injected here')})")
                continue
            rows.append(fault)
            echo(format_row(fault))
    finally:
        services.stop()
    return rows


HEADER = "fault · recovered? · lost · doubled · seconds to recover · message"


def format_row(f: Fault) -> str:
    return " · ".join([f.name, "yes" if f.recovered else "NO", str(f.lost), str(f.doubled),
                       f"{f.recover_s:.1f}", f.message])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(FAULTS), default=[],
                        help="run only this fault (repeatable; default: every one)")
    parser.add_argument("--json", type=Path, default=Path(".fmp/faults.json"), help="where the rows go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fmp-faults-"))
    print(HEADER, flush=True)
    try:
        rows = run_faults(args.only or list(FAULTS), root, lambda line: print(line, flush=True))
    finally:
        if args.keep:
            print(f"services and ledgers kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"faults": [asdict(r) for r in rows]}, indent=2) + "\n")
    bad = [r.name for r in rows if not r.ok]
    print(f"{len(rows) - len(bad)} of {len(rows)} faults: lost 0, doubled 0, recovered"
          + (f"; not: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
