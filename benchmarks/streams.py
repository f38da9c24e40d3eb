"""Generate and publish the Track S streaming benchmarks: ``python -m benchmarks.streams``.

    python -m benchmarks.streams                          # both benchmarks, default files
    python -m benchmarks.streams --benchmark binary --queries FILE --seed 3 --scenes 500
    python -m benchmarks.streams --describe               # per query: scenes, positive rate

One stream per query, named ``<benchmark>-s<seed>-<query id>``, published into the object
store (``--publish URL``: a folder, file:// or s3://; default ``FMP_STORAGE_URL`` or
``.fmp/objects``) batch by batch: images, then ``manifest.jsonl``, labels separately. A
summary (per query: scenes, positives / N/A answers, near misses, difficulty mix, time)
goes to ``benchmarks/<benchmark>-s<seed>/summary.json`` in the store; ``--describe`` prints it.
Queries are generated in parallel worker processes (``--jobs``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.queryset import BenchQuery, QuerySet, default_queryset, load_queryset
from benchmarks.sampling import Plan, draw_stream
from benchmarks.truth import NA, load_facts
from storage import batches
from storage.base import ObjectStore
from storage.errors import ObjectNotFound
from storage.layout import image_relative
from storage.records import Label, ManifestItem, StreamInfo
from storage.url import open_store

DEFAULT_STORE = ".fmp/objects"


def stream_name(benchmark: str, seed: int, query_id: str) -> str:
    return f"{benchmark}-s{seed}-{query_id}"[:64]


def summary_key(benchmark: str, seed: int) -> str:
    return f"benchmarks/{benchmark}-s{seed}/summary.json"


def png(image: Any) -> bytes:
    """Fast PNG (compression level 1: noisy scenes barely compress, speed matters)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def publish_query(store: ObjectStore, qs: QuerySet, query: BenchQuery, plan: Plan) -> dict[str, Any]:
    """Publish one query's stream; returns its summary row."""
    start = time.perf_counter()
    stream = stream_name(qs.benchmark, plan.seed, query.id)
    batches.write_stream_info(store, StreamInfo(
        stream=stream, query_id=query.id, question=query.question, answer_type=qs.answer_type,
        program=query.program, monolithic_program=query.monolithic_program(qs.answer_type)))
    facts = load_facts()
    kinds: Counter[str] = Counter()
    difficulty: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    tries = 0
    for b, drawn in enumerate(draw_stream(qs, query, plan, facts)):
        bid = f"b{b:04d}"
        items, labels = [], []
        for d in drawn:
            item_id = f"{bid}-{d.index:05d}"
            items.append((ManifestItem(item_id=item_id, image=image_relative(item_id), meta=d.meta),
                          png(d.item.image)))
            labels.append(Label(item_id=item_id, answer=d.answer))
            kinds[d.kind] += 1
            difficulty[d.item.difficulty] += 1
            answers[str(d.answer)] += 1
            tries += d.tries
        batches.write_batch(store, stream, bid, items)
        batches.write_labels(store, stream, bid, labels)
    n = sum(kinds.values())
    positive = answers["True"] if qs.answer_type == "bool" else n - answers[NA]
    return {"query_id": query.id, "stream": stream, "reasoning": query.reasoning, "scenes": n,
            "positive": positive, "positive_rate": positive / n, "na": answers[NA],
            "kinds": dict(kinds), "difficulty": dict(difficulty), "distinct_answers": len(answers),
            "draws_per_item": tries / n, "seconds": time.perf_counter() - start}


def _worker(args: tuple[str, str, int, int, int, str]) -> dict[str, Any]:
    url, queries_file, seed, scenes, batch_size, query_id = args
    qs = load_queryset(queries_file)
    query = next(q for q in qs.queries if q.id == query_id)
    return publish_query(open_store(url), qs, query, Plan(scenes=scenes, seed=seed, batch_size=batch_size))


def publish_benchmark(url: str, queries_file: Path, seed: int, scenes: int | None, jobs: int,
                      batch_size: int = 100, only: list[str] | None = None) -> dict[str, Any]:
    """Generate and publish every query of a query set; returns (and stores) the summary."""
    qs = load_queryset(queries_file)
    n = scenes or qs.scenes
    ids = [q.id for q in qs.queries if not only or q.id in only]
    start = time.perf_counter()
    work = [(url, str(queries_file), seed, n, batch_size, i) for i in ids]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(_worker, work))
    else:
        rows = [_worker(w) for w in work]
    summary = {"benchmark": qs.benchmark, "answer_type": qs.answer_type, "seed": seed,
               "queries_file": str(queries_file), "scenes_per_query": n, "jobs": jobs,
               "wall_seconds": time.perf_counter() - start, "queries": rows}
    open_store(url).put(summary_key(qs.benchmark, seed), json.dumps(summary, indent=2).encode())
    return summary


def describe(summary: dict[str, Any]) -> str:
    """The per-query table of a benchmark summary."""
    rate = "positive" if summary["answer_type"] == "bool" else "answered"
    lines = [f"{summary['benchmark']} (seed {summary['seed']}, {summary['queries_file']}): "
             f"{len(summary['queries'])} queries x {summary['scenes_per_query']} scenes, "
             f"generated in {summary['wall_seconds']:.0f} s with {summary['jobs']} process(es)",
             f"{'query':42} {'reasoning':11} {'scenes':>6} {rate + ' %':>11} {'N/A %':>6} "
             f"{'near/dist %':>11} {'easy/med/hard %':>16}"]
    for r in summary["queries"]:
        n = r["scenes"]
        close = r["kinds"].get("near_miss", 0) + r["kinds"].get("distractor", 0)
        mix = "/".join(f"{100 * r['difficulty'].get(d, 0) / n:.0f}" for d in ("easy", "medium", "hard"))
        lines.append(f"{r['query_id']:42} {r['reasoning']:11} {n:6d} {100 * r['positive_rate']:11.1f} "
                     f"{100 * r['na'] / n:6.1f} {100 * close / n:11.1f} {mix:>16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.streams", description=__doc__.split("\n")[0])
    p.add_argument("--benchmark", choices=["binary", "openform", "all"], default="all")
    p.add_argument("--queries", type=Path,
                   help="query-set file (default: benchmarks/querysets/<benchmark>.yaml)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, help="scenes per query (default: the query set's)")
    p.add_argument("--query", action="append", help="only this query id (repeatable)")
    p.add_argument("--publish", default=os.environ.get("FMP_STORAGE_URL") or DEFAULT_STORE,
                   help="object store URL (folder, file://, s3://)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--describe", action="store_true", help="print the published summary only")
    args = p.parse_args(argv)
    if args.queries and args.benchmark == "all":
        p.error("--queries needs --benchmark binary or openform")
    for bench in (["binary", "openform"] if args.benchmark == "all" else [args.benchmark]):
        queries = args.queries or default_queryset(bench)
        if args.describe:
            try:
                summary = json.loads(open_store(args.publish).get(summary_key(bench, args.seed)))
            except ObjectNotFound:
                print(f"{bench} (seed {args.seed}) is not published in {args.publish}; run "
                      f"python -m benchmarks.streams --benchmark {bench} --seed {args.seed}", file=sys.stderr)
                return 1
        else:
            summary = publish_benchmark(args.publish, queries, args.seed, args.scenes, args.jobs,
                                        only=args.query)
        print(describe(summary))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
