"""``fmp stream create | add | label | list`` and ``fmp settings``: your question on your images.

    fmp stream create NAME --question "TEXT"      synthesize, validate and store the program
    fmp stream create NAME --program FILE         or bring your own (validated the same way)
    fmp stream add NAME SOURCE [--batch-size N]   images from a folder or s3:// prefix
    fmp stream label NAME FILE                    labels, JSONL or CSV, any subset, any time
    fmp stream list                               the registered streams

Then ``fmp run-batch NAME --all`` and ``fmp feedback NAME`` (and the scheduled discovery and
feedback deployments) run the stream like any other.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from flows._runtime import settings_for, store_for
from flows.progress import progress
from flows.settings import SHARED, apply_settings_file, read_settings_file, settings_file, write_settings_file
from storage import batches
from storage.base import ObjectStore
from storage.errors import ObjectNotFound
from storage.records import StreamInfo
from storage.registry import registered_streams, require_stream

Command = Callable[[argparse.Namespace], int]
Adder = Callable[..., argparse.ArgumentParser]
AnswerType = Literal["bool", "str"]


def monolithic_program(question: str, answer_type: AnswerType) -> str:
    """The one-call baseline: the whole question to the catalog's monolithic ``query`` model."""
    call = f"query(image, {json.dumps(question)})"
    test = ' == "yes"' if answer_type == "bool" else ""
    return f"def execute_command(image):\n    return {call}{test}\n"


def stream_info(stream: str, question: str, answer_type: AnswerType, source: str,
                query_id: str) -> StreamInfo:
    """The description of a user's stream: its question, program and one-call baseline."""
    return StreamInfo(stream=stream, query_id=query_id, question=question, answer_type=answer_type,
                      program=source, monolithic_program=monolithic_program(question, answer_type))


def program_from_file(path: Path, answer_type: AnswerType) -> tuple[str, str]:
    """A program file's source and program id, validated like a synthesized program.

    Raises:
        ValueError: the program is outside the subset or does not type-check (every problem
            with its line and column).
    """
    from modules.synthesis import validate

    source = path.read_text()
    result = validate(source, answer_type)
    if not result.ok or result.program is None:
        raise ValueError(f"{path}: not a valid program: {'; '.join(result.errors)}")
    return source, result.program.program_id


def _existing(store: ObjectStore, stream: str) -> StreamInfo | None:
    try:
        return batches.read_stream_info(store, stream)
    except ObjectNotFound:
        return None


def _create(args: argparse.Namespace) -> int:
    store = store_for(settings_for(args.storage))
    answer_type: AnswerType = args.answer_type
    if args.program:
        source, program_id = program_from_file(Path(args.program), answer_type)
        info = stream_info(args.name, args.question or args.name, answer_type, source,
                           f"program-{program_id[:12]}")
        how = f"program {program_id[:12]} from {args.program}"
    else:
        if not args.question:
            raise ValueError("give the stream's question (--question TEXT) or a program (--program FILE)")
        from flows._runtime import policy_store_for
        from flows.synthesize import synthesize_task

        # the synthesize flow's work, without a flow run: the command starts no Prefect server
        s = synthesize_task(policy_store_for(settings_for(db_path=args.db)), args.question,
                            args.synthesizer, answer_type=answer_type)
        info = stream_info(args.name, args.question, answer_type, s.source, f"synth-{s.task_hash[:12]}")
        how = f"program {s.program_id[:12]} ({s.synthesizer} synthesizer, {'reused' if s.reused else 'new'})"
    old = _existing(store, args.name)
    if old is not None:
        if (old.program, old.question, old.answer_type) == (info.program, info.question, info.answer_type):
            print(f"stream {args.name} already exists with this question and program in {store.url}")
            batches.write_stream_info(store, old)  # registers it if it predates the registry
            return 0
        raise ValueError(f"stream {args.name!r} already exists in {store.url} with another "
                         f"question or program ({old.question!r}); choose another name")
    batches.write_stream_info(store, info)
    print(f"created stream {args.name} in {store.url}: {info.question!r} ({answer_type} answers), {how}")
    print(info.program, end="")
    return 0


def add_lock_path(home: Path, store_url: str, stream: str) -> Path:
    """The lock file ``fmp stream add`` holds on ``stream`` of the store at ``store_url``.

    Adding reads the stream's items and its last batch id, then writes new batches after it;
    two adds at once would both see the same items and numbers. Holding this ``flock`` (under
    ``FMP_HOME/locks``; the kernel drops it when its process dies) makes them take turns.
    """
    digest = hashlib.sha256(f"{store_url}\n{stream}".encode()).hexdigest()[:16]
    return home / "locks" / f"stream-add-{stream}-{digest}.lock"


def _add(args: argparse.Namespace) -> int:
    from flows.locks import file_lock
    from storage.sources import add_images

    settings = settings_for(args.storage)
    store = store_for(settings)
    require_stream(store, args.name)
    lock = add_lock_path(settings.home, store.url, args.name)
    with file_lock(lock, what=f"stream {args.name}'s add lock",
                   on_wait=lambda line: print(line, file=sys.stderr, flush=True)), \
            progress() as bar:
        task = bar.add_task(f"adding images to {args.name}", total=None)

        def done(batch: str, size: int) -> None:
            bar.console.print(f"{args.name}/{batch}: {size} images")
            bar.advance(task, size)

        s = add_images(store, args.name, args.source, args.batch_size, on_batch=done)
    left = [f"{len(s.bad_names)} with names that are not item ids (e.g. {s.bad_names[0]!r})"
            if s.bad_names else "",
            f"{len(s.not_images)} not JPEG or PNG inside (e.g. {s.not_images[0]!r})" if s.not_images else "",
            f"{s.other_files} other files" if s.other_files else ""]
    left_out = "; left out: " + ", ".join(x for x in left if x) if any(left) else ""
    if s.batches:
        print(f"added {s.added} images to {args.name} as batches {s.batches[0]}..{s.batches[-1]} "
              f"({s.already} already in the stream){left_out}")
    else:
        print(f"added nothing to {args.name}: all {s.already} images under {s.source} are already "
              f"in the stream{left_out}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from storage.labels import parse_label_file, write_stream_labels

    store = store_for(settings_for(args.storage))
    require_stream(store, args.name)
    info = batches.read_stream_info(store, args.name)
    path = Path(args.file)
    labels = parse_label_file(path.read_bytes(), str(path), info.answer_type)
    w = write_stream_labels(store, args.name, labels)
    n_new, n_changed = sum(w.new.values()), sum(w.changed.values())
    where = f" in batches {', '.join(w.batches)}" if w.batches else ""
    print(f"{args.name}: {n_new} new labels, {n_changed} changed, {w.unchanged} unchanged{where}; "
          f"`fmp feedback {args.name}` ingests them")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = store_for(settings_for(args.storage))
    names = registered_streams(store)
    if not names:
        print(f"no streams in {store.url}; fmp stream create NAME --question TEXT")
        return 0
    for name in names:
        info = batches.read_stream_info(store, name)
        print(f"{name:32} {len(batches.list_batches(store, name)):4d} batches  {info.question}")
    return 0


def known_stream(args: argparse.Namespace) -> None:
    """Fail with the known streams listed when ``args.stream`` is not a registered stream."""
    require_stream(store_for(settings_for(args.storage)), args.stream)


def add_stream_commands(stream: argparse._SubParsersAction[argparse.ArgumentParser], add: Adder) -> None:
    """Add create, add, label and list under ``fmp stream``."""
    create = add("create", _create, "create a stream: your question (synthesized into a program) "
                                    "or your program", into=stream)
    create.set_defaults(runs_flows=False)
    create.add_argument("name", help="stream id: 1-64 characters from A-Z a-z 0-9 _ . -")
    create.add_argument("--question", default=None,
                        help="the question every image is asked; synthesized into a program unless "
                             "--program is given (default: the stream id, with --program)")
    create.add_argument("--program", default=None, metavar="FILE",
                        help="a program file (def execute_command(image): ...) instead of synthesis")
    create.add_argument("--answer-type", choices=["bool", "str"], default="bool",
                        help="what the program answers: bool (yes/no, default) or str")
    create.add_argument("--synthesizer", choices=["grammar", "openai", "transformers"], default="grammar",
                        help="how --question becomes a program (default grammar: the offline compiler)")
    add_ = add("add", _add, "add the JPEG/PNG images under a folder or an s3:// prefix as new batches "
                            "(images already in the stream are skipped)", into=stream)
    add_.set_defaults(runs_flows=False)
    add_.add_argument("name", help="a stream made with `fmp stream create`")
    add_.add_argument("source", help="a folder, file:// URL or s3://bucket/prefix; an item's id is its "
                                     "image's path relative to it")
    add_.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    label = add("label", _label, "add labels: JSONL {\"item\": ..., \"label\": ...} or CSV item,label; "
                                 "any subset of the items, at any time", into=stream)
    label.set_defaults(runs_flows=False)
    label.add_argument("name", help="the stream")
    label.add_argument("file", help="a .jsonl or .csv file; a later label for an item replaces the earlier")
    add("list", _list, "list the registered streams", into=stream).set_defaults(runs_flows=False)


# --- fmp settings ---------------------------------------------------------------------------------

def _settings(args: argparse.Namespace) -> int:
    path = settings_file()
    if args.set:
        updates = {}
        for pair in args.set:
            name, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"--set takes NAME=VALUE, got {pair!r}")
            updates[name.strip()] = value.strip()
        write_settings_file(updates, path)
        print(f"wrote {path}")
    values = read_settings_file(path)
    apply_settings_file()
    s = settings_for()
    print(f"settings file {path}{'' if path.exists() else ' (none yet)'}")
    for name, value in sorted(values.items()):
        shown = "***" if "SECRET" in name or "TOKEN" in name else value
        print(f"  {name}={shown}")
    print(f"object store {s.store_url}\nledger       {s.database}\ncatalog      {s.catalog}")
    return 0


def check_shared_settings() -> None:
    """Fail when the environment sets a shared setting to something else than the settings file.

    A command would otherwise publish (or read) where the worker does not look.
    """
    conflicts = apply_settings_file()
    if conflicts:
        name, (env, file) = next(iter(sorted(conflicts.items())))
        raise ValueError(f"{name}={env} in the environment, but {settings_file()} (which the worker "
                         f"reads) says {file}; unset {name}, or change the file with "
                         f"`fmp settings --set {name}=...`")


def add_settings_command(add: Adder) -> None:
    p = add("settings", _settings, f"show (or --set) the settings every command and flow run reads "
                                   f"($FMP_HOME/settings.env; shared: {', '.join(SHARED)})")
    p.set_defaults(runs_flows=False)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="set NAME (FMP_*, AWS_*, PREFECT_API_URL) in the file; an empty VALUE removes it")
