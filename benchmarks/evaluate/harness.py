"""The harness: one query's item stream, the evaluation context, and running a learner
over a stream batch by batch (the shared call cache, delayed and sampled labels, shadow
runs), charging every item what its calls and the policy's own compute cost."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from benchmarks.counterfactual import CallCache, RunMemo, cached_round_runner, shadow_run
from benchmarks.evaluate.paths import PathMemo
from benchmarks.evaluate.streams import StreamFiles, stream_key
from benchmarks.queryset import BenchQuery, QuerySet
from benchmarks.sampling import Plan, draw_stream
from modules import embedding
from modules.answers import normalise_answer
from modules.executor import BatchExecutor, ItemInput, ItemOutcome
from modules.program import Program, parse_program
from modules.registry import Registry
from policies.routing import FirstDraws, policy_router
from policy_store.learners.base import Example, Learner
from policy_store.learners.config import LearnerConfig
from policy_store.learners.features import item_features
from policy_store.rewards import item_loss, split_reward

M = TypeVar("M", PathMemo, RunMemo)

#: Embedding, plus one posterior draw per candidate (d² multiply-adds, d = 25).
FMP_DECISION_FLOPS = 3 * 2 * 25 * 25


@dataclass
class ItemResult:
    """One item under one policy."""

    query: str
    difficulty: str
    label: Any
    answer: Any
    right: bool
    loss: float
    flops: float  # backend calls
    policy_flops: float  # the policy's own compute
    params: float
    wall_ms: float
    price: float
    decisions: int


@dataclass
class Stream:
    """One query's items, in stream order, with their embeddings, labels and difficulties."""

    query: BenchQuery
    program: Program
    ids: list[str]
    images: list[np.ndarray]
    features: list[np.ndarray]
    labels: list[Any]
    difficulties: list[str]
    #: (feature kind, config field values) → every item's features, for learners whose features
    #: are not the embedding (filled on first use unless ``Settings.baseline``)
    other_features: dict[tuple[Any, ...], list[np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Items never change: each is made read-only down to the buffer it views, however the
        # stream was made (drawn, read back from a kept file — a view of a writable array —
        # or unpickled in another process), so the call cache keeps their pixel digests
        # (``CallCache.key``) instead of hashing every call's pixels.
        for im in self.images:
            part: Any = im
            while isinstance(part, np.ndarray):
                part.flags.writeable = False
                part = part.base


@dataclass(frozen=True)
class Settings:
    """How items stream and labels return, and the policies' own knobs."""

    seed: int = 0
    batch_size: int = 64  # items per batch; labels return per batch
    label_delay: int = 0  # labels arrive this many batches late
    label_rate: float = 1.0  # share of items whose label arrives
    budget: float = 0.02  # shared-budget: cost per item to hold, in monolithic calls
    shadow: float = 0.25  # shared, shared-budget, cascade: share of items with shadow runs
    paper_width: int = 16  # paper learner: ResNet-18 base width
    paper_input: int = 64  # paper learner: input side in pixels
    #: today's harness path, kept for speed comparisons (``benchmarks.speed``): every policy of
    #: a query in turn in one process, no call table, item features recomputed per run, every
    #: static configuration run again at every λ
    baseline: bool = False
    #: walk each item's known paths through the program instead of interpreting it again
    #: (``benchmarks.evaluate.paths``); off on the ``baseline`` path
    path_memo: bool = True


@dataclass
class Context:
    """What every policy of an evaluation shares: the query set, the backends, the
    monolithic model (the cost unit), the settings and the call cache."""

    qs: QuerySet
    registry: Registry
    mono: str
    mono_flops: float
    settings: Settings
    cache: CallCache
    shared: dict[Any, Any] = field(default_factory=dict)  # learners carried across queries
    decision_us: dict[str, list[float]] = field(default_factory=dict)
    #: (query, program) → the paths its items took so far in this phase (``PathMemo``), and
    #: ("runs", program) → its audit and shadow runs so far (``RunMemo``)
    paths: dict[Any, Any] = field(default_factory=dict)
    #: each decision's first random draw, shared by the runs of one policy at every λ (the
    #: draws of a decision do not depend on λ; ``policies.routing.FirstDraws``)
    first_draws: FirstDraws = field(default_factory=FirstDraws)

    def path_memo(self, query_id: str, program: Program) -> PathMemo | None:
        """The paths ``program``'s items took on query ``query_id`` in this phase (None when
        ``Settings.path_memo`` is off or on the baseline path)."""
        return self._memo((query_id, id(program)), program, PathMemo)

    def run_memo(self, program: Program) -> RunMemo | None:
        """The memo of ``program``'s audit and shadow runs in this phase (None as above)."""
        return self._memo(("runs", id(program)), program, RunMemo)

    def _memo(self, key: tuple[str, int], program: Program, kind: Callable[[Program], M]) -> M | None:
        if not self.settings.path_memo or self.settings.baseline:
            return None
        memo = self.paths.get(key)
        if memo is None or memo.program is not program:  # one per program object
            memo = self.paths[key] = kind(program)
        return memo


# -- items ---------------------------------------------------------------------------------
def is_kept(qs: QuerySet, query: BenchQuery, scenes: int, seed: int, facts: dict[str, str],
            files: StreamFiles) -> bool:
    """Whether ``files`` holds the query's stream as today's code draws it (an earlier run
    drew it there)."""
    return files.has(query.id, seed, scenes, stream_key(query.model_dump_json(), qs.answer_type, scenes,
                                                        seed, facts))


def load_stream(qs: QuerySet, query: BenchQuery, scenes: int, seed: int, facts: dict[str, str],
                files: StreamFiles | None = None) -> Stream:
    """The query's stream of ``scenes`` items at ``seed``: read from ``files`` when it holds
    this stream as drawn by today's code (``benchmarks.evaluate.streams``), else drawn (and
    stored there)."""
    ids = [f"{query.id}/{i:05d}" for i in range(scenes)]
    key = stream_key(query.model_dump_json(), qs.answer_type, scenes, seed, facts) if files else ""
    kept = files.get(query.id, seed, scenes, key) if files else None
    if kept is not None:  # one array; its items are views of it
        return Stream(query, parse_program(query.program), ids, list(kept["images"]),
                      list(kept["features"]), kept["labels"], kept["difficulties"])
    plan = Plan(scenes=scenes, seed=seed, batch_size=scenes)
    drawn = [d for batch in draw_stream(qs, query, plan, facts) for d in batch]
    images = [d.item.image for d in drawn]
    features = embedding.embed_many(images).astype(np.float64)
    labels, difficulties = [d.answer for d in drawn], [d.item.difficulty for d in drawn]
    if files is not None:
        files.put(query.id, seed, scenes, key, images, features, labels, difficulties)
    return Stream(query, parse_program(query.program), ids, images, list(features), labels, difficulties)


def is_right(answer: Any, label: Any, answer_type: str) -> bool:
    if answer is None:
        return False
    if answer_type == "bool":
        return answer is label or answer == label
    return normalise_answer(str(answer)) == normalise_answer(str(label))


def learner_config(ctx: Context, lam: float, **extra: Any) -> LearnerConfig:
    return LearnerConfig(lam=lam, seed=ctx.settings.seed, **extra)


# -- running a learner over a stream ---------------------------------------------------------
def _result(stream: Stream, k: int, outcome: ItemOutcome, ctx: Context, config: LearnerConfig,
            policy_flops: float) -> ItemResult:
    t = outcome.decisions
    answer = outcome.answer if outcome.status == "ok" else None
    label = stream.labels[k]
    return ItemResult(stream.query.id, stream.difficulties[k], label, answer,
                      is_right(answer, label, ctx.qs.answer_type),
                      item_loss(answer, label, ctx.qs.answer_type, config),
                      sum(x.flops for x in t), policy_flops, sum(x.params for x in t),
                      sum(x.wall_ms for x in t), sum(x.price for x in t),
                      len(t))


def _features(learner: Learner, stream: Stream, k: int, baseline: bool = False) -> np.ndarray:
    """Item ``k``'s features for ``learner`` (the stream's embedding, computed once, when
    the learner reads the embedding; other kinds once per stream and paper input size, or
    at every call on the ``baseline`` path)."""
    if learner.feature_kind == "embedding":
        return stream.features[k]
    if baseline:
        return item_features(learner, stream.images[k])
    key = (learner.feature_kind, learner.config.paper_input)
    if key not in stream.other_features:
        stream.other_features[key] = [item_features(learner, im) for im in stream.images]
    return stream.other_features[key][k]


def _decision_flops(learner: Learner, sites: list[str]) -> float:
    """The learner's own compute for one item's decisions."""
    if learner.feature_kind == "pixels":  # the paper's: a forward and a gradient pass per arm per decision
        flops: float = sum(learner.decision_flops(s) for s in sites)  # type: ignore[attr-defined]
        return flops
    if learner.name.startswith("thompson"):
        return embedding.FLOPS + len(sites) * FMP_DECISION_FLOPS
    return 0.0


def run_learner(name: str, learner: Learner, stream: Stream, ctx: Context, config: LearnerConfig,
                program: Program | None = None,
                on_batch: Callable[[list[ItemResult]], None] | None = None,
                shadow: float = 0.0) -> list[ItemResult]:
    """Stream the items batch by batch; feed labels back (delayed, sampled) after each batch.

    ``shadow``: share of items on which, for every call site that ran on a backend other
    than its cheapest, the program is run again with that site on each cheaper backend
    (the other sites as chosen); what those shadow runs would have answered becomes extra
    labelled examples for the cheaper arms, and their calls (those the item's own run did
    not already make) are charged to the policy.
    """
    settings = ctx.settings
    program = program or stream.program
    free: set[tuple[Any, ...]] = set()
    inner = cached_round_runner(ctx.cache)
    runner = cached_round_runner(ctx.cache, free)  # the keys of the calls it answers go to free

    shadow_key = zlib.crc32(f"shadow/{name}/{stream.query.id}".encode())
    shadow_rng = np.random.default_rng([settings.seed, shadow_key])
    times = ctx.decision_us.setdefault(name, [])
    router = policy_router(learner, f"{name}/{stream.query.id}", settings.seed, times=times,
                           first=None if settings.baseline else ctx.first_draws)
    memo = None if learner.escalates else ctx.path_memo(stream.query.id, program)
    rng = np.random.default_rng([settings.seed, zlib.crc32(f"labels/{name}".encode())])
    out: list[ItemResult] = []
    waiting: list[list[Example]] = []
    for start in range(0, len(stream.ids), settings.batch_size):
        ks = range(start, min(start + settings.batch_size, len(stream.ids)))
        feats = {k: _features(learner, stream, k, settings.baseline) for k in ks}
        if not settings.baseline and hasattr(learner, "prefetch"):  # decide for the batch at once
            learner.prefetch([feats[k] for k in ks])
        items = [ItemInput(stream.ids[k], stream.images[k], feats[k]) for k in ks]
        if memo is None:
            outcomes = BatchExecutor(program, router, runner, ctx.qs.answer_type,
                                     checked=settings.baseline).run(items)
        else:
            outcomes, made = memo.run_batch(items, router, inner, ctx.qs.answer_type, ctx.cache.key)
            free.update(made)
        batch = [_result(stream, k, o, ctx, config,
                         _decision_flops(learner, [d.call_site for d in o.decisions]))
                 for k, o in zip(ks, outcomes, strict=True)]
        out += batch
        shadows = _shadow(learner, stream, ks, outcomes, batch, ctx, program, free, shadow_rng, shadow)
        free.clear()
        examples = []
        for k, o, r in zip(ks, outcomes, batch, strict=True):
            if rng.random() >= settings.label_rate or not learner.learns:
                continue  # this item's label never arrives (or the learner ignores labels)
            decisions = [(t.call_site, t.backend, t.flops / ctx.mono_flops, feats[k], t.propensity)
                         for t in o.decisions]
            rungs = {t.call_site: tuple(t.rungs) for t in o.decisions}
            examples += split_reward(decisions, r.loss, stream.ids[k], rungs, stream.labels[k])
            for site, backend, calls, answer in shadows.get(k, []):
                loss = item_loss(answer, stream.labels[k], ctx.qs.answer_type, config)
                cost = learner.costs[backend] * calls
                examples.append(Example(site, backend, feats[k], -loss / len(decisions), 1.0, cost,
                                        stream.ids[k]))
        waiting.append(examples)
        if len(waiting) > settings.label_delay:
            before = _training_flops(learner)
            learner.update(waiting.pop(0))
            train = _training_flops(learner) - before
            if train:  # training compute is the policy's cost too, spread over the batch
                for r in batch:
                    r.policy_flops += train / len(batch)
        if on_batch:
            on_batch(batch)
    return out


def _shadow(learner: Learner, stream: Stream, ks: range, outcomes: list[ItemOutcome],
            batch: list[ItemResult], ctx: Context, program: Program, free: set[tuple[Any, ...]],
            rng: np.random.Generator, rate: float) -> dict[int, list[tuple[str, str, int, Any]]]:
    """Shadow runs of a sample of the batch: per item, (site, cheaper backend, calls, answer)."""
    out: dict[int, list[tuple[str, str, int, Any]]] = {}
    if rate <= 0:
        return out
    for k, o, r in zip(ks, outcomes, batch, strict=True):
        if rng.random() >= rate or o.status != "ok":
            continue
        chosen = {t.call_site: t.backend for t in o.decisions}
        fallback = {site: names[-1] for site, names in learner.arms.items()}
        for t in o.decisions:
            names = learner.arms[t.call_site]
            if t.backend == names[0]:
                continue
            for cheaper in names[: names.index(t.backend)]:
                answer, flops = shadow_run(program, stream.images[k], {**chosen, t.call_site: cheaper},
                                           fallback, ctx.cache, free, memo=ctx.run_memo(program))
                r.policy_flops += flops
                out.setdefault(k, []).append((t.call_site, cheaper, t.calls, answer))
    return out


def _training_flops(learner: Learner) -> float:
    """Cumulative FLOPs a learner spent training itself (the paper's learner counts them)."""
    return float(learner.training_flops()) if hasattr(learner, "training_flops") else 0.0
