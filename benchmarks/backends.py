"""Measure every backend: ``python -m benchmarks.backends``.

Per backend: FLOPs per call, parameters, wall ms per call (all measured on the calls of its
test set, ``benchmarks.backend_tasks``), and accuracy on Track S sliced by difficulty. Then
per benchmark, the reference programs on a sample of items under four plans: every call on
its cheapest backend, every call on its largest, the largest with the program's early exits
removed (top-level ``if <exists/count...>: return <constant>`` guards dropped), and the
monolithic one-call model. Prints both tables and writes them to ``.fmp/backends.json``.

The catalog is ``modules/catalog.yaml`` plus ``modules/catalogs/benchmark.yaml``; the
benchmark's ``llm_query`` backends (``kb-*``, over the benchmark fact table) stand in for
catalog.yaml's ``facts-*``, whose table lacks the benchmark's facts (they are measured too).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import backend_tasks as tasks
from benchmarks.queryset import QuerySet, default_queryset, load_queryset
from benchmarks.scenes import DIFFICULTIES
from benchmarks.truth import NA, load_facts
from modules.answers import normalise_answer
from modules.backends.base import Output
from modules.catalog import DEFAULT_CATALOG, BackendSpec, load_catalog
from modules.registry import Registry
from policies.costs import monolithic_backend, unit_flops

BENCH_CATALOG = Path(__file__).resolve().parent.parent / "modules" / "catalogs" / "benchmark.yaml"
OUT = Path(".fmp/backends.json")
#: The benchmarks' monolithic model (one image+question call answers any benchmark query).
BENCH_MONO = "vqa-xl"
CHUNK = 32
TASK_OF = {"find": "detection", "exists": "detection", "count": "detection",
           "verify_property": "attributes", "read_text": "ocr", "llm_query": "knowledge"}


def bench_specs(all_llm: bool = False) -> list[BackendSpec]:
    """catalog.yaml + benchmark.yaml; catalog.yaml's llm_query backends only if ``all_llm``."""
    base = [s for s in load_catalog(DEFAULT_CATALOG) if all_llm or "llm_query" not in s.functions]
    return base + load_catalog(BENCH_CATALOG)


def task_of(spec: BackendSpec) -> str | None:
    """The test set a backend is measured on (one-call models: also ``vqa-open``, see tasks_of)."""
    if spec.baseline_only:
        return "vqa"
    for f in spec.functions:
        if f in TASK_OF:
            return TASK_OF[f]
    return "attributes" if "query" in spec.functions else None


def tasks_of(spec: BackendSpec) -> list[str]:
    """Every test set a backend is measured on: one-call models on binary and open-form items."""
    task = task_of(spec)
    return [] if task is None else ["vqa", "vqa-open"] if task == "vqa" else [task]


def monolithic_name(registry: Registry) -> str:
    """``BENCH_MONO`` when the catalog has it, else its most expensive baseline-only model."""
    spec = registry.specs.get(BENCH_MONO)
    return monolithic_backend(registry, BENCH_MONO if spec is not None and spec.baseline_only else None)


def score(answer: object, expected: object) -> bool:
    if isinstance(expected, str):
        return normalise_answer(str(answer)) == normalise_answer(expected)
    return answer == expected


def measure(registry: Registry, name: str, cases: list[tasks.Case]) -> dict[str, Any]:
    """Run ``cases`` on backend ``name`` in chunks; cost and accuracy per difficulty."""
    backend = registry.get(name)
    backend.infer([cases[0].call])  # warm-up: lazy kernels and caches are not a call's cost
    outputs: list[Output] = []
    start = time.perf_counter()
    for i in range(0, len(cases), CHUNK):
        outputs += backend.infer([c.call for c in cases[i:i + CHUNK]])
    wall = (time.perf_counter() - start) * 1000 / len(cases)
    answers = [o.value for o in outputs]
    flops = float(np.mean([o.usage.flops for o in outputs]))
    hits: dict[str, list[bool]] = defaultdict(list)
    for case, answer in zip(cases, answers, strict=True):
        hits[case.difficulty].append(score(answer, case.expected))
    acc = {d: float(np.mean(hits[d])) if hits[d] else None for d in DIFFICULTIES}
    acc["all"] = float(np.mean([h for v in hits.values() for h in v]))
    return {"backend": name, "functions": registry.spec(name).functions, "calls": len(cases),
            "flops": flops, "params": backend.params(), "wall_ms": wall, "accuracy": acc}


def build_cases(args: argparse.Namespace, binary: QuerySet, openform: QuerySet,
                needed: set[str] | None = None) -> dict[str, list[tasks.Case]]:
    """The test sets (only those in ``needed``, when given: drawing them takes time)."""
    facts = load_facts()
    build: dict[str, Callable[[], list[tasks.Case]]] = {
        "detection": lambda: tasks.detection_cases(args.scenes, args.seed),
        "attributes": lambda: tasks.attribute_cases(args.scenes, args.seed),  # cheap calls: a full set
        "ocr": lambda: tasks.ocr_cases(args.scenes, args.seed),
        "knowledge": lambda: tasks.knowledge_cases_from(tasks.load_table()),
        "vqa": lambda: tasks.vqa_cases(binary, args.vqa_per_query, args.seed, facts),
        "vqa-open": lambda: tasks.vqa_open_cases(openform, args.vqa_per_query, args.seed, facts)}
    return {k: f() for k, f in build.items() if needed is None or k in needed}


# -- programs ------------------------------------------------------------------------------
class FixedRouter:
    """Every call site on the cheapest (or largest) backend serving its function."""

    def __init__(self, order: dict[str, list[str]], largest: bool) -> None:
        self.order, self.largest = order, largest

    def choose(self, item_id: str, site: Any, features: Any) -> Any:
        from modules.executor import Route

        names = self.order[site.function]
        return Route(names[-1] if self.largest else names[0], 1.0)


def strip_early_exits(source: str) -> str:
    """The program without top-level guards ``if <...exists/count/find...>: return <constant>``."""
    tree = ast.parse(source)
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef), "a program is one function definition"

    def is_guard(node: ast.stmt) -> bool:
        calls = {n.func.id for n in ast.walk(node.test) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name)} if isinstance(node, ast.If) else set()
        return (isinstance(node, ast.If) and not node.orelse and len(node.body) == 1
                and isinstance(node.body[0], ast.Return) and isinstance(node.body[0].value, ast.Constant)
                and bool(calls & {"exists", "count", "find"}))

    body = [s for s in fn.body if not is_guard(s)]
    fn.body = body or fn.body
    return ast.unparse(tree) + "\n"


def run_programs(registry: Registry, qs: QuerySet, per_query: int, seed: int) -> list[dict[str, Any]]:
    """Each plan's quality and cost per item on a sample of the benchmark's items."""
    from benchmarks.sampling import _pick, draw_item
    from modules.executor import BatchExecutor, ItemInput
    from modules.program import parse_program
    from modules.tasks import local_round_runner

    facts = load_facts()
    for name in registry.specs:
        registry.get(name)  # load every model first: set-up time is not a call's cost
    order = {f: sorted(registry.candidates(f), key=lambda n: unit_flops(registry, n, f))
             for f in ("find", "exists", "count", "verify_property", "query", "read_text", "llm_query")}
    mono = [monolithic_name(registry)]
    rng = np.random.default_rng([seed, 9])
    items = []
    for query in qs.queries:
        for k in range(per_query):
            if qs.answer_type == "bool":
                want, hint = (lambda a: a is True, _pick(query.positive, rng)) if k % 3 == 0 else \
                    (lambda a: a is False,
                     _pick(query.near_misses, rng) if query.near_misses and k % 3 == 1 else None)
            else:
                want, hint = (lambda a: a != NA, _pick(query.positive, rng)) if k % 3 != 2 else \
                    (lambda a: a == NA, _pick(query.distractors, rng) if query.distractors else None)
            item, _, _, answer, _ = draw_item(qs, query, hint, want, rng, facts)
            items.append((query, item, answer))
    rows = []
    plans = {"cheapest": (False, False), "largest": (True, False), "largest, no early exit": (True, True),
             "monolithic": (True, False)}
    for plan, (largest, no_exit) in plans.items():
        router = FixedRouter({"query": mono} if plan == "monolithic" else order, largest)
        outcomes = []
        start = time.perf_counter()
        for query in qs.queries:
            mine = [(i, it, a) for i, (q, it, a) in enumerate(items) if q is query]
            source = query.monolithic_program(qs.answer_type) if plan == "monolithic" else \
                strip_early_exits(query.program) if no_exit else query.program
            ex = BatchExecutor(parse_program(source), router, local_round_runner(registry), qs.answer_type)
            out = ex.run([ItemInput(f"i{i}", it.image, np.zeros(1)) for i, it, _ in mine])
            outcomes += [(it, a, o) for (_, it, a), o in zip(mine, out, strict=True)]
        wall = (time.perf_counter() - start) * 1000 / len(outcomes)
        rows.append(_plan_row(plan, qs, outcomes, wall))
    return rows




def _plan_row(plan: str, qs: QuerySet, outcomes: list[Any], wall: float) -> dict[str, Any]:
    flops = [sum(d.flops for d in o.decisions) for _, _, o in outcomes]
    params = [sum(d.params for d in o.decisions) for _, _, o in outcomes]
    row: dict[str, Any] = {"plan": plan, "items": len(outcomes), "flops_per_item": float(np.mean(flops)),
                           "params_per_item": float(np.mean(params)), "wall_ms_per_item": wall,
                           "failed": sum(o.status != "ok" for _, _, o in outcomes)}
    for d in DIFFICULTIES + ("all",):
        sub = [(it, a, o) for it, a, o in outcomes if d == "all" or it.difficulty == d]
        if qs.answer_type == "bool":
            tp = sum(o.answer is True and a is True for _, a, o in sub)
            fp = sum(o.answer is True and a is False for _, a, o in sub)
            fn = sum(o.answer is not True and a is True for _, a, o in sub)
            row[f"f1_{d}"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
        else:
            hits = [o.status == "ok" and normalise_answer(str(o.answer)) == a for _, a, o in sub]
            row[f"em_{d}"] = float(np.mean(hits)) if hits else None
    return row


# -- output --------------------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return "   -" if v is None else f"{100 * v:4.0f}"


def backend_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'backend':14} {'task':10} {'MFLOPs/call':>11} {'params':>8} {'ms/call':>8} "
             f"{'easy':>5} {'med':>5} {'hard':>5} {'all':>5}  calls"]
    for r in rows:
        a = r["accuracy"]
        lines.append(f"{r['backend']:14} {r['task']:10} {r['flops'] / 1e6:11.4g} {r['params'] / 1e6:7.3g}M "
                     f"{r['wall_ms']:8.2f} {_pct(a['easy']):>5} {_pct(a['medium']):>5} "
                     f"{_pct(a['hard']):>5} {_pct(a['all']):>5}  {r['calls']}")
    return "\n".join(lines)


def program_table(bench: str, rows: list[dict[str, Any]]) -> str:
    metric = "f1" if "f1_all" in rows[0] else "em"
    lines = [f"{bench}: {rows[0]['items']} items, {metric.upper()} % by difficulty",
             f"{'plan':24} {'GFLOPs/item':>11} {'params/item':>11} {'ms/item':>8} "
             f"{'easy':>5} {'med':>5} {'hard':>5} {'all':>5} failed"]
    for r in rows:
        lines.append(f"{r['plan']:24} {r['flops_per_item'] / 1e9:11.4g} {r['params_per_item'] / 1e6:10.4g}M "
                     f"{r['wall_ms_per_item']:8.1f} {_pct(r[metric + '_easy']):>5} "
                     f"{_pct(r[metric + '_medium']):>5} {_pct(r[metric + '_hard']):>5} "
                     f"{_pct(r[metric + '_all']):>5} {r['failed']:6d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=30, help="scenes per difficulty per test set")
    p.add_argument("--vqa-per-query", type=int, default=4,
                   help="binary / open-form items per query for the one-call models")
    p.add_argument("--program-items", type=int, default=3, help="items per query for the program table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", action="append", help="only these backends (repeatable)")
    p.add_argument("--no-programs", action="store_true", help="skip the program table")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    binary = load_queryset(default_queryset("binary"))
    openform = load_queryset(default_queryset("openform"))
    registry = Registry(bench_specs(all_llm=True))
    wanted = [(name, task) for name, spec in registry.specs.items() for task in tasks_of(spec)
              if not args.only or name in args.only]
    cases = build_cases(args, binary, openform, {task for _, task in wanted})
    rows = []
    for name, task in wanted:
        row = measure(registry, name, cases[task])
        row["task"] = task
        rows.append(row)
        print(f"measured {name} on {task}", file=sys.stderr)
    print(backend_table(rows))
    report: dict[str, Any] = {"seed": args.seed, "backends": rows, "programs": {}}
    if not args.no_programs:
        routed = Registry(bench_specs())
        for bench in ("binary", "openform"):
            qs = load_queryset(default_queryset(bench))
            prog = run_programs(routed, qs, args.program_items, args.seed)
            report["programs"][bench] = prog
            print()
            print(program_table(bench, prog))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
