"""Calibrate the monolithic model's yes/no decisions for the binary streams:
``python -m benchmarks.calibrate``.

The monolithic model (``vqa-xl``) answers a binary question by its yes-probability (yes
against no). Trained on balanced examples with the yes class weighted up, it puts that
probability above one half on almost every scene, so on a stream with one positive per
hundred items it says "yes" almost always. Calibration picks, per binary question, a decision
threshold on the yes-probability, on a **validation split** that is held apart from every
stream the harness or ``benchmarks.streams`` can draw: the items come from the stream's own
sampler (``benchmarks.sampling.draw_item`` with the query's hints) but from a random generator
keyed by ``VALIDATION_SEED`` *and* a third word (``VALIDATION_TAG``) that no stream's generator
has (a stream's is ``[seed, crc32(query id)]``; vqa-xl's training draws are ``[seed, index]``).

Per query: ``--positives`` positives, ``--near-misses`` near misses and ``--negatives`` random
negatives; every random negative of every query is also scored, with its ground truth, for the
other queries (one trunk pass per image, the model's cheap question head per question). The
rates are corrected to the stream's design (a positive rate of 1/101, 30 % of negatives near
misses: ``benchmarks.sampling.Plan``). The threshold maximises the expected F1 on such a stream
subject to an expected accuracy of at least the majority answer's (expected true positives ≥
expected false positives); false-positive rates are estimated conservatively
((false positives + ½) ÷ (negatives + 1)). When no threshold qualifies, the threshold is 1.0:
the model says "no" to that question (the majority answer) — an honest monolith that cannot
find the positives does not pretend to.

The thresholds, with the digest of the weights they were chosen for, the seeds and the
validation counts, go into the model's vocabulary file (``modules/weights/vqa-xl.json``,
key ``calibration``), which the backend reads (``AnswerVocabulary``), so the harness, the
flows and ``benchmarks.backends`` all decide with them; retraining rewrites that file without
them, and weights that do not match the recorded digest make the backend ignore them.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.queryset import BenchQuery, QuerySet, default_queryset, load_queryset
from benchmarks.sampling import Plan, draw_item
from benchmarks.signs import SignedScene
from benchmarks.truth import Ambiguous, evaluate

#: Validation seeds: the first word of every validation generator (training draws use
#: 10_000_000 + ..., held-out training checks 20_000_000 + ..., streams small seeds).
VALIDATION_SEED = 30_000_000
#: The third word of every validation generator: no stream or training generator has three.
VALIDATION_TAG = 0x7A1D
#: Positives per stream item on the binary streams (``item_plan``: max(1, round(n / 101))).
STREAM_POSITIVE_RATE = 1 / 101
NEVER = 1.0  # a threshold no yes-probability exceeds


def validation_rng(query_id: str, seed: int = VALIDATION_SEED) -> np.random.Generator:
    """The validation split's generator for one query (never a stream's: three seed words)."""
    return np.random.default_rng([seed, zlib.crc32(query_id.encode()), VALIDATION_TAG])


@dataclass
class Split:
    """One query's validation items: positives, near misses and random negatives."""

    query: BenchQuery
    positives: list[SignedScene]
    near_misses: list[SignedScene]
    negatives: list[SignedScene]


def draw_split(qs: QuerySet, query: BenchQuery, positives: int, near_misses: int, negatives: int,
               facts: dict[str, str], seed: int = VALIDATION_SEED) -> Split:
    """A query's validation items, drawn like its stream's (same hints, same rejection)."""
    rng = validation_rng(query.id, seed)
    pos = [draw_item(qs, query, query.positive[k % len(query.positive)], lambda a: a is True,
                     rng, facts)[0] for k in range(positives)]
    nm = [draw_item(qs, query, query.near_misses[k % len(query.near_misses)], lambda a: a is False,
                    rng, facts)[0] for k in range(near_misses)] if query.near_misses else []
    neg = [draw_item(qs, query, None, lambda a: a is False, rng, facts)[0] for _ in range(negatives)]
    return Split(query, pos, nm, neg)


@dataclass(frozen=True)
class Choice:
    """A chosen threshold and what it is expected to do on a stream."""

    threshold: float
    tpr: float  # share of validation positives above it
    fpr: float  # conservative false-positive rate at the stream's near-miss mix
    f1: float  # expected F1 on a stream with the given positive rate
    accuracy: float  # expected accuracy on such a stream


def _fpr(scores: np.ndarray, t: float) -> float:
    return (float((scores > t).sum()) + 0.5) / (len(scores) + 1)


def choose_threshold(positives: np.ndarray, near_misses: np.ndarray, negatives: np.ndarray,
                     prevalence: float = STREAM_POSITIVE_RATE, near_miss_rate: float = 0.3) -> Choice:
    """The yes-probability threshold with the best expected F1 on a stream of ``prevalence``
    positives whose negatives are ``near_miss_rate`` near misses, among those whose expected
    accuracy is at least the majority answer's (1 - prevalence); ``NEVER`` when none is.

    A threshold says "yes" above it. Candidates lie halfway between consecutive distinct
    scores of the positives and the negatives just below them (ties go to the higher one)."""
    positives, near_misses, negatives = (np.asarray(a, dtype=np.float64)
                                         for a in (positives, near_misses, negatives))
    if not len(negatives) and not len(near_misses):
        raise ValueError("choose_threshold: needs validation negatives")
    rate = near_miss_rate if len(near_misses) else 0.0
    majority = 1.0 - prevalence
    best = Choice(NEVER, 0.0, 0.0, 0.0, majority)
    below = np.sort(np.concatenate([near_misses, negatives]))
    for p in np.unique(positives)[::-1]:  # from the strictest threshold down
        under = below[below < p]
        t = float((p + under[-1]) / 2) if len(under) else float(p / 2)
        tpr = float((positives > t).mean())
        fpr = rate * (_fpr(near_misses, t) if len(near_misses) else 0.0)
        fpr += (1 - rate) * (_fpr(negatives, t) if len(negatives) else 0.0)
        tp, fp, fn = prevalence * tpr, (1 - prevalence) * fpr, prevalence * (1 - tpr)
        accuracy = tp + (1 - prevalence) * (1 - fpr)
        f1 = 2 * tp / (2 * tp + fp + fn)
        if accuracy >= majority and f1 > best.f1 + 1e-12:
            best = Choice(t, tpr, fpr, f1, accuracy)
    return best


# -- scoring with the model --------------------------------------------------------------------
def yes_probabilities(backend: Any, images: list[np.ndarray], questions: list[str],
                      chunk: int = 32) -> np.ndarray:
    """(images, questions) yes-probabilities of the vqa-xl backend: one trunk pass per image,
    the question head per question (the same arithmetic as its ``query`` calls)."""
    import torch

    from modules.backends.vision import encode_question, to_batch

    backend.setup()
    model, vocab, size = backend.model, backend.vocab, backend.spec.input_size
    qvec = torch.stack([encode_question(q) for q in questions])
    out = np.zeros((len(images), len(questions)))
    with torch.inference_mode():
        for start in range(0, len(images), chunk):
            h = model.trunk(to_batch(images[start:start + chunk], size))[0]
            for j in range(len(questions)):
                logits = model.head(h, qvec[j].expand(len(h), -1))
                out[start:start + len(h), j] = [vocab.yes_probability(row) for row in logits]
    return out


def calibrate(qs: QuerySet, backend: Any, facts: dict[str, str], positives: int, near_misses: int,
              negatives: int, seed: int = VALIDATION_SEED, log: Any = print) -> dict[str, Any]:
    """Per binary query: its threshold and what it is expected to do (see the module doc)."""
    if qs.answer_type != "bool":
        raise ValueError(f"calibrate: {qs.benchmark} is not a yes/no benchmark")
    t0 = time.time()
    splits = [draw_split(qs, q, positives, near_misses, negatives, facts, seed) for q in qs.queries]
    pool = [it for s in splits for it in s.negatives]
    pool_truth = np.full((len(pool), len(qs.queries)), -1)  # 1 yes, 0 no, -1 ambiguous
    for i, item in enumerate(pool):
        for j, q in enumerate(qs.queries):
            try:
                pool_truth[i, j] = int(bool(evaluate(q.truth, item, facts, qs.answer_type)))
            except Ambiguous:
                pass
    log(f"validation split: {sum(len(s.positives) + len(s.near_misses) for s in splits)} positives "
        f"and near misses, {len(pool)} random negatives, drawn in {time.time() - t0:.0f}s")
    questions = [q.question for q in qs.queries]
    pool_p = yes_probabilities(backend, [it.image for it in pool], questions)
    out: dict[str, Any] = {}
    for j, s in enumerate(splits):
        images = [it.image for it in s.positives + s.near_misses]
        own = yes_probabilities(backend, images, [questions[j]])[:, 0]
        pos, nm = own[:len(s.positives)], own[len(s.positives):]
        neg = pool_p[pool_truth[:, j] == 0, j]
        pool_pos = pool_p[pool_truth[:, j] == 1, j]  # random scenes that happen to be positive
        c = choose_threshold(np.concatenate([pos, pool_pos]), nm, neg, near_miss_rate=Plan(1).near_miss_rate)
        out[s.query.question] = {
            "query": s.query.id, "threshold": c.threshold, "tpr": c.tpr, "fpr": c.fpr,
            "expected_f1": c.f1, "expected_accuracy": c.accuracy,
            "validation": {"positives": len(pos) + len(pool_pos), "near_misses": len(nm),
                           "negatives": len(neg)},
            "auc": _auc(np.concatenate([pos, pool_pos]), np.concatenate([nm, neg])),
            "yes_at_half": float((np.concatenate([nm, neg]) > 0.5).mean())}
        log(f"{s.query.id:42s} threshold {c.threshold:.4f}  TPR {c.tpr:.2f}  FPR {c.fpr:.4f}  "
            f"AUC {out[s.query.question]['auc']:.2f}  expected F1 {c.f1:.3f}  "
            f"(negatives above 0.5: {100 * out[s.query.question]['yes_at_half']:.0f}%)")
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    return float(np.mean([(p > neg).mean() + 0.5 * (p == neg).mean() for p in pos]))


def write_calibration(vocab_path: Path, weights: Path, per_question: dict[str, Any], seed: int,
                      querysets: list[str]) -> None:
    """Store the thresholds in the vocabulary file, tied to the weights' digest (merged with
    thresholds already there for other questions, when those were chosen for the same weights)."""
    from modules.backends.vision import file_sha256

    data = json.loads(vocab_path.read_text())
    digest = file_sha256(weights)
    old = data.get("calibration") or {}
    keep = old.get("questions", {}) if old.get("weights_sha256") == digest else {}
    questions = {**keep, **per_question}
    data["calibration"] = {
        "method": "per-question threshold on P(yes): best expected F1 at the stream positive rate "
                  "with expected accuracy >= the majority answer's (python -m benchmarks.calibrate)",
        "weights_sha256": digest, "validation_seed": seed, "validation_tag": VALIDATION_TAG,
        "stream_positive_rate": STREAM_POSITIVE_RATE,
        "querysets": sorted(set(old.get("querysets", []) if keep else []) | set(querysets)),
        "thresholds": {q: v["threshold"] for q, v in questions.items()},
        "questions": questions}
    vocab_path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", nargs="*", help="binary query-set files (default: the benchmark's)")
    ap.add_argument("--backend", default="vqa-xl", help="the monolithic model to calibrate")
    ap.add_argument("--positives", type=int, default=12, help="validation positives per query")
    ap.add_argument("--near-misses", type=int, default=20, help="validation near misses per query")
    ap.add_argument("--negatives", type=int, default=20,
                    help="random validation negatives per query (all of them score every query)")
    ap.add_argument("--seed", type=int, default=VALIDATION_SEED, help="validation seed")
    args = ap.parse_args(argv)
    import torch

    from benchmarks.backends import bench_specs
    from benchmarks.truth import load_facts
    from modules.catalog import WEIGHTS_DIR
    from modules.registry import Registry

    torch.set_num_threads(2)
    registry = Registry(bench_specs())
    spec = registry.spec(args.backend)
    weights = WEIGHTS_DIR / str(getattr(spec, "weights", ""))
    backend = registry.get(args.backend)
    files = args.queries or [str(default_queryset("binary"))]
    facts = load_facts()
    per_question: dict[str, Any] = {}
    for f in files:
        per_question.update(calibrate(load_queryset(f), backend, facts, args.positives,
                                      args.near_misses, args.negatives, args.seed))
    write_calibration(weights.with_suffix(".json"), weights, per_question, args.seed,
                      [Path(f).name for f in files])
    print(f"wrote {len(per_question)} thresholds to {weights.with_suffix('.json')}")


if __name__ == "__main__":
    main()
