"""The ceiling, measured precisely and cheaply: per query, how right the program is on its
largest (and cheapest) configuration, from a positive-enriched sample.

A stream of 2,000 binary items holds about 20 positives, so an F1 measured on it moves by
several points per miss. Here each query gets ``--per-class`` items of every kind the
stream draws, with the stream's own samplers (``benchmarks.sampling.draw_item``): positives
(the query's positive hints), near misses (its near-miss hints) and plain negatives (binary);
answerable items, look-alike distractors and random items (open-form). On each configuration
it measures, per query:

* binary: recall on positives, the false-positive rate on near misses and on plain
  negatives, their mix at the stream's near-miss rate, and the **expected F1 at the stream's
  positive rate** π (:func:`expected_f1`: TP = π·recall, FP = (1-π)·FP rate, FN = π·(1-recall));
* open-form: exact match per kind, and the expected exact match at the stream's mix.

For the largest configuration it also names the **main failing call site**: on every wrong
item each call's output is compared with what the scene's ground truth says that call should
answer (objects visible at least half, the sign's word, the benchmark fact table in any of
its wordings), and the first wrong call is blamed; "none" means every call was right and the
program or the truth spec is at fault.

Backend calls come from, and go to, a call table on disk (``--call-table``, default
``.fmp/calls``, benchmark folder ``<benchmark>-ceiling``), so a re-run computes only what a
changed backend needs::

    python -m benchmarks.ceiling --benchmark binary --per-class 40 --seed 0
    python -m benchmarks.ceiling --benchmark openform --query spatial_left_colour
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backend_tasks import PHRASINGS
from benchmarks.calltable import DEFAULT_DIR, CallTable, load_unit_flops, save_unit_flops
from benchmarks.counterfactual import CallCache, CallKey
from benchmarks.queryset import BenchQuery, QuerySet, default_queryset, load_queryset
from benchmarks.sampling import Plan, Want, draw_item
from benchmarks.signs import SignedScene
from benchmarks.truth import NA, load_facts, normalise_answer
from modules.backends.base import Call, CallFailure
from modules.backends.facts import normalise
from modules.errors import FmpModuleError
from modules.interpreter import Interpreter, PendingCall, Run
from modules.program import Program, parse_program
from modules.registry import Registry
from policies.arms import arms_for
from policies.costs import known_unit_flops, remember_unit_flops
from policies.specs import POLICIES

#: The ground truth counts an object as there when at most this much of it is hidden.
PRESENT = 0.5
#: A patch shows an object when their boxes overlap at least this much (IoU).
MIN_IOU = 0.3
CONFIGS = ("largest", "cheapest")


# -- arithmetic --------------------------------------------------------------------------------
def expected_f1(recall: float, fp_rate: float, positive_rate: float) -> float:
    """F1 expected on a stream with ``positive_rate`` positives, from a recall on positives and
    a false-positive rate on negatives: 2·TP / (2·TP + FP + FN) with TP = π·recall,
    FP = (1-π)·fp_rate and FN = π·(1-recall). 1.0 when nothing is positive either way."""
    if not 0.0 <= positive_rate <= 1.0:
        raise ValueError(f"positive_rate must lie in [0, 1], got {positive_rate}")
    tp = positive_rate * recall
    fp = (1.0 - positive_rate) * fp_rate
    fn = positive_rate * (1.0 - recall)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 1.0


def stream_positive_rate(scenes: int) -> float:
    """Positives per item of a binary stream of ``scenes`` items (``benchmarks.sampling``)."""
    return max(1, round(scenes / 101)) / scenes


def mix(rates: dict[str, float], weights: dict[str, float]) -> float:
    """The weighted mean of ``rates`` over the kinds ``weights`` names (weights renormalised
    over the kinds present)."""
    present = {k: w for k, w in weights.items() if k in rates and w > 0}
    total = sum(present.values())
    if total <= 0:
        raise ValueError(f"no weight on any measured kind: rates {sorted(rates)}, weights {weights}")
    return sum(rates[k] * w for k, w in present.items()) / total


# -- the items ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Item:
    kind: str
    scene: SignedScene
    label: bool | str


def _kinds(qs: QuerySet, query: BenchQuery) -> list[tuple[str, list[Any], Want]]:
    if qs.answer_type == "bool":
        out: list[tuple[str, list[Any], Want]] = [("positive", list(query.positive), lambda a: a is True)]
        if query.near_misses:
            out.append(("near_miss", list(query.near_misses), lambda a: a is False))
        out.append(("negative", [None], lambda a: a is False))
        return out
    out = [("answerable", list(query.positive), lambda a: a != NA)]
    if query.distractors:
        out.append(("distractor", list(query.distractors), lambda a: a == NA))
    out.append(("random", [None], lambda a: True))
    return out


def draw_items(qs: QuerySet, query: BenchQuery, per_class: int, seed: int,
               facts: dict[str, str], negatives: int | None = None) -> list[Item]:
    """``per_class`` items of each kind (``negatives`` of each negative kind of a binary
    query, default ``per_class``), drawn as the stream draws them (hints picked at random),
    from a seed of their own (``ceiling/<query>``)."""
    rng = np.random.default_rng([seed, zlib.crc32(f"ceiling/{query.id}".encode())])
    items = []
    for kind, hints, want in _kinds(qs, query):
        n = negatives if negatives is not None and kind in ("near_miss", "negative") else per_class
        for _ in range(n):
            hint = hints[int(rng.integers(len(hints)))]
            scene, _, _, answer, _ = draw_item(qs, query, hint, want, rng, facts)
            scene.image.flags.writeable = False
            items.append(Item(kind, scene, answer))
    return items


def weights_of(qs: QuerySet, query: BenchQuery) -> dict[str, float]:
    """How often the stream draws each kind (``benchmarks.sampling.Plan``'s rates)."""
    plan = Plan(scenes=qs.scenes)
    if qs.answer_type == "bool":
        nm = plan.near_miss_rate if query.near_misses else 0.0
        return {"near_miss": nm, "negative": 1.0 - nm}
    dr = plan.distractor_rate if query.distractors else 0.0
    return {"answerable": plan.answerable_rate, "distractor": dr,
            "random": 1.0 - plan.answerable_rate - dr}


# -- running a configuration, call by call -----------------------------------------------------
@dataclass
class Traced:
    """One call of a run: its site, function, arguments, patch box and output."""

    site: str
    function: str
    args: tuple[str, ...]
    box: tuple[int, int, int, int] | None
    value: Any


@dataclass
class ItemRun:
    answer: Any = None
    failed: bool = False
    calls: list[Traced] = field(default_factory=list)


def run_config(program: Program, images: Sequence[np.ndarray], assignment: dict[str, str],
               cache: CallCache) -> list[ItemRun]:
    """Run ``program`` on every image with one backend per call site, recording every call;
    the items advance in lockstep so each backend answers one batch per round."""
    runs = [ItemRun() for _ in images]
    gens: list[Run | None] = [Interpreter(program, im).run() for im in images]
    pending: list[PendingCall | None] = [None] * len(images)
    values: list[Any] = [None] * len(images)
    while True:
        wanted: dict[str, dict[CallKey, Call]] = defaultdict(dict)
        for i, gen in enumerate(gens):
            while gen is not None:
                if pending[i] is None:
                    try:
                        pending[i] = gen.send(values[i])
                    except StopIteration as stop:
                        runs[i].answer, gens[i], gen = stop.value, None, None
                        break
                    except (FmpModuleError, RecursionError):
                        runs[i].failed, gens[i], gen = True, None, None
                        break
                p = pending[i]
                assert p is not None
                backend = assignment[p.site.id]
                got = cache.peek(backend, p.call)
                if got is None:
                    wanted[backend][cache.key(backend, p.call)] = p.call
                    break
                box = None if p.patch is None else (p.patch.x0, p.patch.y0, p.patch.x1, p.patch.y1)
                value = got.output.value
                runs[i].calls.append(Traced(p.site.id, p.call.function, p.call.args, box, value))
                pending[i] = None
                if isinstance(value, CallFailure):
                    gen.close()
                    runs[i].failed, gens[i], gen = True, None, None
                    break
                values[i] = value
        if not wanted:
            return runs
        for backend, calls in wanted.items():
            cache.get_many(backend, list(calls.values()))


# -- what each call should have answered -------------------------------------------------------
def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def fact_answer(question: str, facts: dict[str, str]) -> str:
    """The fact table's answer to ``question`` in any wording of ``PHRASINGS`` ("unknown")."""
    q = normalise(question)
    for family in PHRASINGS:
        for wording in family:
            parts = [re.escape(normalise(part)) for part in wording.split("{}")]
            m = re.match("^" + " ?(.+?) ?".join(parts) + "$", q)
            if m:
                return facts.get(normalise(family[0].format(*m.groups())), "unknown")
    return facts.get(q, "unknown")


def exact_answer(call: Traced, scene: SignedScene, facts: dict[str, str]) -> Any:
    """What ``call`` should answer on ``scene`` by its ground truth (None: cannot tell)."""
    if call.function == "llm_query":
        return fact_answer(call.args[0], facts)
    if call.function == "read_text":
        return scene.sign_text
    objs = [o for o in scene.objects if o.occlusion <= PRESENT]
    if call.function in ("find", "exists", "count"):
        if call.box not in (None, (0, 0, scene.image.shape[1], scene.image.shape[0])):
            return None
        n = sum(1 for o in objs if call.args[0] in ("object", o.shape))
        return {"find": n, "exists": n > 0, "count": n}[call.function]
    if call.box is None or not objs:
        return None
    best = max(objs, key=lambda o: _iou(o.box, call.box))  # type: ignore[arg-type]
    if _iou(best.box, call.box) < MIN_IOU:
        return "no object"
    if call.function == "verify_property":
        return call.args[1] in (best.colour, best.shape)
    return best.colour if "colour" in call.args[0] or "color" in call.args[0] else best.shape


def _same(call: Traced, expected: Any) -> bool:
    if call.function == "find":
        return isinstance(call.value, list) and len(call.value) == expected
    if isinstance(expected, str) and isinstance(call.value, str):
        return normalise_answer(call.value) == normalise_answer(expected)
    return bool(call.value == expected)


def blame(run: ItemRun, scene: SignedScene, facts: dict[str, str]) -> str:
    """The first call of ``run`` whose output disagrees with the ground truth:
    ``"<site> <function>"``; ``"none"`` when every call agrees (or cannot be checked)."""
    for call in run.calls:
        expected = exact_answer(call, scene, facts)
        if expected is not None and not _same(call, expected):
            return f"{call.site} {call.function}"
    return "failed run" if run.failed else "none"


# -- one query ---------------------------------------------------------------------------------
@dataclass
class Measure:
    """One configuration on one query: rate of right answers per kind, the stream figure
    (expected F1 or exact match) and, for binary, recall and FP rates."""

    right: dict[str, float]
    stream: float
    recall: float = float("nan")
    fp_rate: float = float("nan")
    fp_near: float = float("nan")
    fp_plain: float = float("nan")
    blamed: Counter[str] = field(default_factory=Counter)
    wrong: int = 0


def _is_right(answer: Any, label: Any, answer_type: str) -> bool:
    if answer is None:
        return False
    if answer_type == "bool":
        return answer is label
    return normalise_answer(str(answer)) == normalise_answer(str(label))


def measure(qs: QuerySet, query: BenchQuery, items: list[Item], runs: list[ItemRun],
            facts: dict[str, str], diagnose: bool) -> Measure:
    right: dict[str, list[bool]] = defaultdict(list)
    blamed: Counter[str] = Counter()
    wrong = 0
    for item, run in zip(items, runs, strict=True):
        ok = _is_right(None if run.failed else run.answer, item.label, qs.answer_type)
        right[item.kind].append(ok)
        if not ok:
            wrong += 1
            if diagnose:
                blamed[blame(run, item.scene, facts)] += 1
    rates = {k: float(np.mean(v)) for k, v in right.items()}
    w = weights_of(qs, query)
    if qs.answer_type != "bool":
        stream = mix(rates, {"answerable": w["answerable"], "distractor": w["distractor"],
                             "random": w["random"]})
        return Measure(rates, stream, blamed=blamed, wrong=wrong)
    recall = rates["positive"]
    fp: dict[str, float] = {k: 1.0 - rates[k] for k in ("near_miss", "negative") if k in rates}
    fp_rate = mix(fp, w)
    f1 = expected_f1(recall, fp_rate, stream_positive_rate(qs.scenes))
    return Measure(rates, f1, recall, fp_rate, fp.get("near_miss", float("nan")), fp["negative"],
                   blamed, wrong)


# -- the command -------------------------------------------------------------------------------
def _setup(args: argparse.Namespace) -> tuple[QuerySet, Registry, CallCache, CallTable | None, Path | None]:
    from benchmarks.backends import bench_specs

    qs = load_queryset(args.queries or default_queryset(args.benchmark))
    if qs.benchmark != args.benchmark:
        raise SystemExit(f"{args.queries}: a {qs.benchmark} query set, but --benchmark {args.benchmark}")
    registry = Registry(bench_specs())
    folder = None if args.no_call_table else Path(args.call_table)
    if folder is not None:
        remember_unit_flops(registry, load_unit_flops(folder, registry))
    table = CallTable(folder, registry, f"{qs.benchmark}-ceiling") if folder is not None else None
    return qs, registry, CallCache(registry), table, folder


def _fmt(x: float) -> str:
    return "  -  " if x != x else f"{x:5.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", choices=("binary", "openform"), default="binary")
    p.add_argument("--queries", help="query set file (default: the benchmark's own)")
    p.add_argument("--query", action="append", help="only this query id (repeatable)")
    p.add_argument("--per-class", type=int, default=40, help="items of each kind per query")
    p.add_argument("--negatives", type=int, help="binary: items of each negative kind (near misses, "
                   "plain) per query; default 3 × --per-class (an F1 at a 1 %% positive rate needs "
                   "FP rates measured to a fraction of a percent)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--call-table", default=str(DEFAULT_DIR))
    p.add_argument("--no-call-table", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    qs, registry, cache, table, folder = _setup(args)
    facts = load_facts()
    queries = [q for q in qs.queries if not args.query or q.id in args.query]
    if args.query and len(queries) != len(set(args.query)):
        raise SystemExit(f"unknown query id in {args.query}; valid: {[q.id for q in qs.queries]}")
    binary = qs.answer_type == "bool"
    if binary:
        head = (f"{'query':38s} {'type':10s} | largest: recall FP-near FP-plain  FP    F1  "
                f"| cheapest: recall  FP    F1  | main failing call (largest)")
    else:
        head = (f"{'query':38s} {'type':10s} | largest: answ  distr  rand   EM  "
                f"| cheapest: EM   | main failing call (largest)")
    print(f"{qs.benchmark}: {args.per_class} items per kind per query"
          + (f" ({args.negatives or 3 * args.per_class} per negative kind)" if binary else "")
          + f", seed {args.seed}"
          + (f", stream positive rate {stream_positive_rate(qs.scenes):.4f}" if binary else ""))
    print(head)
    print("-" * len(head))
    summary: dict[str, list[float]] = defaultdict(list)
    by_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for query in queries:
        items = draw_items(qs, query, args.per_class, args.seed, facts,
                           (args.negatives or 3 * args.per_class) if binary else None)
        cache.clear()
        if table is not None:
            cache.preload(table.load(query.id))
        fresh = len(cache.fresh)
        program = parse_program(query.program)
        arms = arms_for(program, registry, POLICIES["learned"])
        got: dict[str, Measure] = {}
        for config in CONFIGS:
            pick: Callable[[list[str]], str] = (lambda n: n[-1]) if config == "largest" else (lambda n: n[0])
            runs = run_config(program, [it.scene.image for it in items],
                              {s: pick(n) for s, n in arms.items()}, cache)
            got[config] = measure(qs, query, items, runs, facts, diagnose=config == "largest")
        if table is not None:
            table.append(query.id, ((k, cache.answers[k]) for k in cache.fresh[fresh:]))
        lg, ch = got["largest"], got["cheapest"]
        top = lg.blamed.most_common(2)
        where = ", ".join(f"{b} {n}/{lg.wrong}" for b, n in top) if top else "-"
        for config in CONFIGS:
            summary[config].append(got[config].stream)
            by_type[query.reasoning][config].append(got[config].stream)
        if binary:
            print(f"{query.id:38s} {query.reasoning:10s} |          {_fmt(lg.recall)}  {_fmt(lg.fp_near)}   "
                  f"{_fmt(lg.fp_plain)} {_fmt(lg.fp_rate)} {_fmt(lg.stream)} |           {_fmt(ch.recall)} "
                  f"{_fmt(ch.fp_rate)} {_fmt(ch.stream)} | {where}")
        else:
            r = {k: lg.right.get(k, float("nan")) for k in ("answerable", "distractor", "random")}
            print(f"{query.id:38s} {query.reasoning:10s} |          {_fmt(r['answerable'])} "
                  f"{_fmt(r['distractor'])} {_fmt(r['random'])} "
                  f"{_fmt(lg.stream)} |           {_fmt(ch.stream)} | {where}")
        sys.stdout.flush()
    metric = "expected F1" if binary else "expected EM"
    for config in CONFIGS:
        print(f"mean {metric}, {config}: {np.mean(summary[config]):.3f}")
    for reasoning, per in sorted(by_type.items()):
        print(f"  {reasoning:10s} " + "  ".join(f"{c} {np.mean(per[c]):.3f}" for c in CONFIGS))
    if folder is not None:
        save_unit_flops(folder, registry, known_unit_flops(registry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
