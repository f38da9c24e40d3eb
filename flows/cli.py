"""``fmp``: the command line. Errors print as one line unless ``--debug``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from flows._runtime import policy_store_for, settings_for


def _ledger(args: argparse.Namespace) -> int:
    settings = settings_for(db_path=args.db)
    from policy_store.store import PolicyStore

    columns, rows = PolicyStore(settings.database, lock_timeout_s=settings.lock_timeout_s).query(args.sql)
    widths = [max(len(str(c)), *(len(_cell(r[i])) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(_cell(v).ljust(w) for v, w in zip(row, widths)))
    return 0


def _cell(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _run_batch(args: argparse.Namespace) -> int:
    from flows.stream_batch import stream_batch

    summary = stream_batch(stream=args.stream, batch=args.batch, policy=args.policy,
                           storage_url=args.storage, db_path=args.db)
    print(summary if summary else f"stream {args.stream}: nothing to do")
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from flows.ingest_feedback import ingest_feedback

    for summary in ingest_feedback(stream=args.stream, batch=args.batch, policy=args.policy,
                                   storage_url=args.storage, db_path=args.db):
        print(summary)
    return 0


def _policy_show(args: argparse.Namespace) -> int:
    db = policy_store_for(settings_for(db_path=args.db))
    for v in db.list_versions(args.stream, args.policy):
        print(f"v{v.version}  parent={v.parent}  {v.learner}  {v.created_at:%Y-%m-%d %H:%M:%S}  {v.note}")
    return 0


def _policy_rollback(args: argparse.Namespace) -> int:
    db = policy_store_for(settings_for(db_path=args.db))
    new = db.rollback(args.stream, args.policy, args.version)
    print(f"{args.stream}/{args.policy}: saved v{new} as a copy of v{args.version}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flows.demo import main as demo_main

    return demo_main(["--s3"] if args.s3 else [])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmp", description="Run foundation model programs cheaply.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--db", default=None, help="DuckDB policy store (default .fmp/fmp.duckdb)")
    parser.add_argument("--storage", default=None, help="object store URL (default .fmp/objects)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    add("demo", _demo, "publish the demo streams and run them end to end").add_argument(
        "--s3", action="store_true")
    add("ledger", _ledger, "run SQL against the cost ledger").add_argument("sql")
    for name, fn, help in (("run-batch", _run_batch, "run one batch (default: the next one)"),
                           ("feedback", _feedback, "ingest labels (default: all pending batches)")):
        p = add(name, fn, help)
        p.add_argument("stream")
        p.add_argument("--batch", default=None)
        p.add_argument("--policy", default="learned")
    policy = sub.add_parser("policy", help="inspect or roll back policy versions")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    show = psub.add_parser("show", help="list a policy's versions")
    show.set_defaults(fn=_policy_show)
    rollback = psub.add_parser("rollback", help="save a new version equal to an old one")
    rollback.set_defaults(fn=_policy_rollback)
    rollback.add_argument("version", type=int)
    for p in (show, rollback):
        p.add_argument("stream")
        p.add_argument("--policy", default="learned")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except Exception as exc:  # one clear line for users; --debug shows the traceback
        if args.debug:
            raise
        print(f"fmp {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
