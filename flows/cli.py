"""``fmp``: the command line. Errors print as one line unless ``--debug``.

Commands that run flows (run-batch, feedback, demo, evaluate, synthesize) run them in this
process against ``PREFECT_API_URL``, or a temporary local server when it is unset.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, NoReturn

from flows._runtime import in_process_runs, settings_for, store_for
from flows.progress import progress, spinner
from flows.report_html import add_report_command
from flows.streams_cli import add_settings_command, add_stream_commands, check_shared_settings, known_stream

if TYPE_CHECKING:
    from policy_store.store import PolicyStore

Command = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it (options
    whose default is computed at run time say so in words) or it is an on/off flag."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: {'none' if action.default is None else '%(default)s'})"


#: No analytics or tracking, and time for a temporary server's first start on a slow machine.
_PREFECT_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                     "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


# --- streams and runs -----------------------------------------------------------------------------

def _stream_publish(args: argparse.Namespace) -> int:
    from benchmarks.publish import StreamPlan, publish_stream
    from benchmarks.queries import QUERIES

    if args.query not in QUERIES:
        raise ValueError(f"unknown query {args.query!r}; valid: {', '.join(sorted(QUERIES))}")
    store = store_for(settings_for(args.storage))
    plan = StreamPlan(n_batches=args.batches, batch_size=args.batch_size,
                      positive_rate=args.positive_rate, seed=args.seed)
    stream = args.stream or args.query
    if args.create_bucket:
        ensure = getattr(store, "ensure_bucket", None)
        if ensure is None:
            raise ValueError(f"--create-bucket needs an s3:// store, not {store.url}")
        ensure()
    with progress() as bar:
        task = bar.add_task(f"publishing {stream}", total=plan.n_batches)
        put = store.put

        def put_and_count(key: str, data: bytes) -> None:
            put(key, data)
            if key.endswith("/manifest.jsonl"):  # the last object of each batch
                bar.advance(task)

        store.put = put_and_count  # type: ignore[method-assign]
        ids = publish_stream(store, stream, QUERIES[args.query], plan)
    print(f"published {stream} to {store.url}: batches {ids[0]}..{ids[-1]} "
          f"({plan.n_batches} × {plan.batch_size} items, labels included)")
    return 0


def _run_batch(args: argparse.Namespace) -> int:
    from flows.discover import new_batches
    from flows.stream_batch import stream_batch

    todo = [args.batch] if args.batch else new_batches(args.stream, args.policy, args.storage)
    if not args.all and not args.batch:
        todo = todo[:1]
    if not todo:
        print(f"stream {args.stream}: no unprocessed batch for policy {args.policy}")
        return 0
    with progress() as bar:
        task = bar.add_task(f"{args.stream} under {args.policy}", total=len(todo))
        failed = 0
        for batch in todo:
            try:
                s = stream_batch(stream=args.stream, batch=batch, policy=args.policy,
                                 storage_url=args.storage, db_path=args.db)
            except Exception as exc:  # one batch's failure stops neither --all nor the others
                if len(todo) == 1:
                    raise
                failed += 1
                print(f"fmp run-batch: error: {args.stream}/{batch}: {one_line(exc)}", file=sys.stderr)
                bar.advance(task)
                continue
            assert s is not None  # None only when no batch is named
            bar.console.print(f"{s.stream}/{s.batch} policy {s.policy} v{s.policy_version}: "
                              f"{s.items} items, {s.failed} failed")
            bar.advance(task)
    if failed:
        print(f"fmp run-batch: {failed} of {len(todo)} batches failed (rerun them with "
              "`fmp run-batch STREAM --batch B`)", file=sys.stderr)
    return 1 if failed else 0


def _feedback(args: argparse.Namespace) -> int:
    from flows.ingest_feedback import ingest_feedback

    with spinner(f"ingesting feedback for {args.stream} ({args.policy})"):
        summaries = ingest_feedback(stream=args.stream, batch=args.batch, policy=args.policy,
                                    storage_url=args.storage, db_path=args.db)
    for s in summaries:
        version = f"new version v{s.new_version}" if s.new_version else "no new version"
        print(f"{s.stream}/{s.batch} policy {s.policy}: {s.labelled} of {s.items} labelled, {version}")
    if not summaries:
        print(f"stream {args.stream}: no batch with results and new labels for {args.policy}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flows.demo import main as demo_main

    return demo_main(["--s3"] if args.s3 else [])


def _evaluate(args: argparse.Namespace) -> int:
    if args.rest:  # `fmp evaluate --benchmark binary ...`: the benchmark harness
        from benchmarks.evaluate.cli import main as bench_main

        return int(bench_main(args.rest) or 0)
    from flows.evaluate import evaluate
    from policy_store.report import format_table

    with spinner("comparing policies on the ledger"):
        table = evaluate(streams=args.stream or None, db_path=args.db)
    print(format_table(table))
    return 0


# --- the ledger and policies ----------------------------------------------------------------------

def _reader(args: argparse.Namespace) -> PolicyStore:
    """A read-only store on the ledger (the lake when ``FMP_STORE_URL`` names one); a clear
    error when there is none yet."""
    from flows._runtime import ledger_reader

    return ledger_reader(settings_for(db_path=args.db), getattr(args, "lock_timeout", None))


def _ledger(args: argparse.Namespace) -> int:
    columns, rows = _reader(args).query(args.sql)
    print(format_rows(columns, rows))
    return 0


def format_rows(columns: list[str], rows: list[tuple[object, ...]]) -> str:
    """Rows as an aligned text table (numbers right-aligned, floats to 6 significant digits)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
               for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line([str(c) for c in columns]), line(["-" * w for w in widths]),
                      *(line(r) for r in cells), f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _policy_show(args: argparse.Namespace) -> int:
    columns, rows = _reader(args).query(
        "SELECT version, parent, learner, created_at, learned_batch, note FROM policy_history "
        "WHERE stream = :stream AND policy = :policy ORDER BY version",
        {"stream": args.stream, "policy": args.policy})
    if not rows:
        print(f"{args.stream}/{args.policy}: no policy version yet (the prior routes until "
              "the first feedback)")
        return 0
    print(format_rows(columns, rows))
    return 0


def _policy_rollback(args: argparse.Namespace) -> int:
    from flows._runtime import policy_store_for

    db = policy_store_for(settings_for(db_path=args.db))
    new = db.rollback(args.stream, args.policy, args.version)
    print(f"{args.stream}/{args.policy}: saved v{new} as a copy of v{args.version}; "
          "the next batch runs with it")
    return 0


# --- synthesize (owned by the synthesis work; keep this block self-contained) -------------------

def _synthesize(args: argparse.Namespace) -> int:
    from flows.synthesize import synthesize

    s = synthesize(task_text=args.task, synthesizer=args.synthesizer, regenerate=args.regenerate,
                   model=args.model, base_url=args.base_url, db_path=args.db)
    tries = "try" if s.attempts == 1 else "tries"
    state = "reused stored" if s.reused else f"new, valid after {s.attempts} {tries}"
    print(f"# task {s.task_hash[:12]} revision {s.revision}: program {s.program_id} ({state}; "
          f"{s.synthesizer} {s.model} {s.version})")
    print(s.source, end="")
    return 0


def _add_synthesize(add: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    syn = add("synthesize", _synthesize, "write, validate and store the program for a question")
    syn.add_argument("task", help='the question, e.g. "Is there a red triangle left of a blue circle?"')
    syn.add_argument("--regenerate", action="store_true", help="write a new revision even if one is stored")
    syn.add_argument("--synthesizer", choices=["grammar", "openai", "transformers"], default="grammar",
                     help="grammar: offline compiler of the benchmark grammar (default); openai: "
                          "FMP_LLM_BASE_URL endpoint; transformers: local model at FMP_LLM_MODEL")
    syn.add_argument("--model", default=None, help="model name (openai) or local path (transformers) "
                                                   "(default: FMP_LLM_MODEL)")
    syn.add_argument("--base-url", default=None,
                     help="OpenAI-compatible endpoint URL (default: FMP_LLM_BASE_URL)")


# --- parser and entry point -----------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is a ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help shows the usage)\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low``; the error names the range."""
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (valid: {low} or more)") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range (valid: {low} or more)")
        return value

    return integer


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1; the error names the range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (valid: 0 to 1)") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range (valid: 0 to 1)")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (valid: more than 0)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range (valid: more than 0)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="fmp", description="Run foundation model programs cheaply.", formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--db", default=None, help="DuckDB policy store (default .fmp/fmp.duckdb)")
    parser.add_argument("--storage", default=None,
                        help="object store URL: folder, file:// or s3://bucket/prefix "
                             "(default FMP_STORAGE_URL or .fmp/objects)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, help: str,
            into: argparse._SubParsersAction[argparse.ArgumentParser] = sub) -> argparse.ArgumentParser:
        p = into.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
        p.set_defaults(fn=fn)
        return p

    add("demo", _demo, "publish the demo streams and run them end to end").add_argument(
        "--s3", action="store_true", help="use a moto S3 server on loopback")
    stream = sub.add_parser("stream", help="create streams, add images and labels; publish demo streams"
                            ).add_subparsers(
        dest="stream_command", required=True, metavar="COMMAND")
    pub = add("publish", _stream_publish, "publish a demo query's stream: batches, then labels",
              into=stream)
    from benchmarks.queries import QUERIES
    from policies.specs import DEFAULT_POLICY, POLICIES

    pub.add_argument("query", metavar="QUERY",  # checked in _stream_publish: one line, valid ids listed
                     help=f"a demo query id, one of: {', '.join(sorted(QUERIES))}")
    pub.add_argument("--stream", default=None, help="stream id (default: the query id)")
    pub.add_argument("--batches", type=int_at_least(1), default=6, help="batches to publish")
    pub.add_argument("--batch-size", type=int_at_least(1), default=40, help="scenes per batch")
    pub.add_argument("--positive-rate", type=fraction, default=0.1,
                     help="share of scenes drawn to answer yes")
    pub.add_argument("--seed", type=int, default=0, help="seed of the scene generator")
    pub.add_argument("--create-bucket", action="store_true",
                     help="create the S3 bucket first if it is missing (e.g. on a local moto server)")
    for name, fn, help in (("run-batch", _run_batch, "run the next unprocessed batch (or --batch, --all)"),
                           ("feedback", _feedback, "ingest labels (default: all pending batches)")):
        p = add(name, fn, help)
        p.set_defaults(check=known_stream)  # before Prefect starts: a typo costs no server
        p.add_argument("stream", help="the stream id")
        p.add_argument("--batch", default=None,
                       help="one batch id (default: the oldest unprocessed batch; --all: every one)"
                       if name == "run-batch" else "one batch id (default: every pending batch)")
        p.add_argument("--policy", default=DEFAULT_POLICY, choices=sorted(POLICIES),
                       help="the policy that routes the call sites")
        if name == "run-batch":
            p.add_argument("--all", action="store_true", help="every unprocessed batch, in order")
    led = add("ledger", _ledger, "run SQL against the cost ledger (read only)")
    led.add_argument("sql", help="one SQL statement; the views are listed in docs/operations.md")
    led.set_defaults(runs_flows=False)
    led.add_argument("--lock-timeout", type=positive_seconds, default=None,
                     help="seconds to wait while a writer holds the file (default FMP_LOCK_TIMEOUT_S or 60)")
    policy = sub.add_parser("policy", help="inspect or roll back policy versions").add_subparsers(
        dest="policy_command", required=True, metavar="COMMAND")
    show = add("show", _policy_show, "list a policy's versions", into=policy)
    rollback = add("rollback", _policy_rollback, "save a new version equal to an old one", into=policy)
    rollback.add_argument("version", type=int, help="the version to copy (see `fmp policy show`)")
    for p in (show, rollback):
        p.add_argument("stream", help="the stream id")
        p.add_argument("--policy", default=DEFAULT_POLICY, choices=sorted(POLICIES), help="the policy")
        p.set_defaults(runs_flows=False)
    ev = add("evaluate", _evaluate, "compare policies: the savings table of the current ledger, "
                                    "or with --benchmark ... the benchmark harness (benchmarks.evaluate)")
    ev.add_argument("--stream", action="append", default=[],
                    help="only this stream (repeatable; default: every stream in the ledger)")
    ev.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    _add_synthesize(add)
    add_report_command(add)
    add_stream_commands(stream, add)
    add_settings_command(add)
    return parser


#: Longer messages (a model's state-dict mismatch, say) are cut; --debug shows them whole.
MAX_ERROR_CHARS = 400


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message's lines joined, DuckDB's caret lines dropped."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    text = " ".join(ln for ln in lines if ln and set(ln) != {"^"}) or type(exc).__name__
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS].rstrip() + " … (--debug shows the rest)"
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fmp`` console script; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only `fmp evaluate --benchmark ...` passes options on (to benchmarks.evaluate)
        if args.command != "evaluate":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest
    for name, value in _PREFECT_DEFAULTS.items():  # before Prefect reads its settings
        os.environ.setdefault(name, value)
    if not args.debug:
        from flows.progress import quiet_tracebacks

        quiet_tracebacks()
    try:
        fn: Command = args.fn
        if args.command != "settings":  # `fmp settings --set` is how a conflict is resolved
            check_shared_settings()  # before Prefect reads PREFECT_API_URL from the settings file
        check = getattr(args, "check", None)
        if check is not None:  # the arguments' own faults, found before anything starts
            check(args)
        runs_flows = getattr(args, "runs_flows", True)
        if runs_flows:
            from prefect.settings import PREFECT_API_URL

            from flows._server import adopt_temporary_server, watch_server

            adopt_temporary_server()  # a temporary server started here dies with this process
            watch_server(args.command, PREFECT_API_URL.value())  # one line if the server dies
        # the flows run in this process; commands that run none need no Prefect client or server
        with in_process_runs() if runs_flows else nullcontext():
            return fn(args)
    except KeyboardInterrupt:
        print(f"fmp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for users; --debug shows the traceback
        if args.debug:
            raise
        print(f"fmp {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry: run ``main``, then exit through ``end_at_exit``."""
    exit_status = end_at_exit()
    try:
        status = main()
    except SystemExit as exc:  # argparse: --help, or a bad argument (its line is written)
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if status == 0:
        from flows._runtime import quiet_teardown

        quiet_teardown()  # the temporary server's "cancelled" log lines while it stops
    exit_status[0] = status
    sys.exit(status)


def end_at_exit() -> list[int]:
    """Make the process end right after the exit handlers, skipping the interpreter's final
    teardown of its modules; returns the one-item list holding the status it ends with
    (1 until set, as for an exception that escapes).

    That teardown is where ``nanobind: leaked ...`` lines came from, dozens after a one-line
    error: Prefect's daemon threads are still alive when the interpreter finalises its modules,
    so duckdb's bindings find their objects still referenced and report each one. By then
    everything that matters has run: non-daemon threads joined, Prefect's exit handlers (its
    log and event workers drained, the temporary server stopped). Registered first, this
    handler runs last; it flushes the output and ends the process.
    """
    import atexit

    status = [1]

    def end() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status[0])

    atexit.register(end)
    return status


if __name__ == "__main__":
    run()
