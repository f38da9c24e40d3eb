"""Audited configurations: an online search for the best static configuration, driven by
replays of labelled items chosen by their labels.

Why. With 1 positive in 100, a per-call-site learner sees almost no signal: on nearly every
item every backend's answer leads to the same "no", and the few items that decide F1 are
drowned in a reward that is mostly cost. The hindsight static configuration is strong because
it is judged on the items that matter. This policy judges configurations the same way, online,
from what has been labelled so far:

* **Which items.** When a batch's labels arrive, its items are *audited* by stratum: every
  positive label, every item the policy answered "yes" (a possible false positive), every
  item it got wrong, and a share ``negatives`` of the rest (weight 1/share, so estimates stay
  unbiased). Labels decide which items are worth a second look; that is where the 1:100
  stream hides its information.
* **What an audit is.** The item is run again under other configurations (one call site moved
  to another rung), answered from the calls already made for it where they are shared; every
  other call is charged to the policy as its own compute. Past audited items are kept, so a
  configuration is judged on all audited items so far.
* **The objective.** Per configuration c: the weighted mean loss over audited items plus λ
  times its weighted mean cost (in monolithic calls), as the static baseline is judged. Losses
  target F1 on rare positives: a missed positive costs ``0.65/p̂`` and a false positive
  ``0.35/p̂`` (p̂ the positive rate of the labels so far), the marginal F1 cost of each error
  near F1 0.7 expressed per item; a text answer costs 1 when wrong.
* **The search.** After each labelled batch, coordinate descent from the current
  configuration (one call site at a time, every rung), as ``static_best`` does in hindsight,
  keeping a change only when it lowers the objective by ``margin``.
* **Start.** The first query starts on its largest backends; later ones start each call site on
  the rung (as a share of its ladder) its function ended on in the queries before.

The selection by stratum, the objective and the descent are ``policy_store.learners.confirmed``'s,
shared with the ``confirmed`` learner the flows run; this module adds the harness's replays
(answered from its call cache, charged when not already made for the item) and its labels'
arrival.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from benchmarks.counterfactual import CallKey, audit_run
from benchmarks.evaluate.harness import ItemResult, is_right, learner_config, run_learner
from modules.answers import normalise_answer
from policy_store.learners.confirmed import (
    F1_FN,
    F1_FP,
    AuditBook,
    AuditOptions,
    AuditStake,
    config_key,
    descend,
    function_of,
    largest,
    start_pins,
)
from policy_store.learners.fixed import FixedLearner
from policy_store.rewards import item_loss

__all__ = ["F1_FN", "F1_FP", "AuditOptions", "audited"]


def audited(stream: Any, ctx: Any, arms: dict[str, list[str]], costs: dict[str, float], lam: float,
            options: AuditOptions | None = None, name: str = "audited") -> list[ItemResult]:
    """Run ``stream`` under the audited search at λ = ``lam``; see the module docstring."""
    opts = options or AuditOptions()
    settings = ctx.settings
    # per policy name: two variants of the search never share what they learned across queries
    warm: dict[str, list[float]] = ctx.shared.setdefault(("audited-warm", name, lam), {})
    pins = start_pins(arms, warm, opts.start)
    learner = FixedLearner(learner_config(ctx, lam, pins=pins), arms, costs)
    labels = list(stream.labels)
    book: AuditBook[int] = AuditBook(ctx.qs.answer_type)
    free: dict[int, set[CallKey]] = {}
    fallback = largest(arms)
    label_rng = np.random.default_rng([settings.seed, zlib.crc32(b"labels/audited")])
    pick_rng = np.random.default_rng([settings.seed, zlib.crc32(f"audit/{stream.query.id}".encode())])
    waiting: list[list[tuple[int, Any]]] = []
    offset = [0]
    spent = [0.0]
    memo = ctx.run_memo(stream.program)

    def replay(k: int, config: dict[str, str]) -> tuple[Any, float]:
        answer, total, charged = audit_run(stream.program, stream.images[k], config, fallback, ctx.cache,
                                           free.setdefault(k, set()), memo=memo)
        spent[0] += charged
        return answer, total

    confirm = opts.confirm and ctx.qs.answer_type == "bool"

    def objective(config: dict[str, str]) -> float:
        return book.objective(config, replay, lam, ctx.mono_flops, fallback if confirm else None)

    stake = AuditStake(opts.stake)  # what the audits may spend (benchmarks: None for audited)
    fallback_of = fallback if confirm else None

    def on_batch(batch: list[ItemResult]) -> None:
        ks = range(offset[0], offset[0] + len(batch))
        offset[0] += len(batch)
        if confirm:  # the batch's "yes" answers are confirmed on the largest backends
            for k, r in zip(ks, batch, strict=True):
                if normalise_answer(r.answer) == "yes":
                    answer, total, _ = audit_run(stream.program, stream.images[k], fallback, fallback,
                                                 ctx.cache, free.setdefault(k, set()), memo=memo)
                    book.runs[(k, config_key(fallback))] = (answer, total)
                    r.flops += total
                    r.answer = answer
                    r.right = is_right(answer, r.label, ctx.qs.answer_type)
                    r.loss = item_loss(answer, r.label, ctx.qs.answer_type, learner.config)
        waiting.append([(k, r.answer) for k, r in zip(ks, batch, strict=True)
                        if label_rng.random() < settings.label_rate])
        if len(waiting) <= settings.label_delay:
            return
        spent[0] = 0.0
        arrived = waiting.pop(0)
        for k, answer in arrived:
            if book.admit(k, labels[k], answer, pick_rng.random, opts):  # its own run is free to reuse
                free.setdefault(k, set())
                before = spent[0]
                book.run(k, learner.config.pins, replay)
                spent[0] = before
        if arrived and opts.stake is not None:
            stake.loss += len(arrived) * book.loss_rate(learner.config.pins, replay, fallback_of)
        learner.repin(descend(learner.config.pins, arms, objective, opts.rounds, opts.margin,
                              stake.affordable(lam, arms, lambda: spent[0] / ctx.mono_flops)))
        stake.spent += spent[0] / ctx.mono_flops
        for r in batch:
            r.policy_flops += spent[0] / len(batch)

    out = run_learner(name, learner, stream, ctx, learner.config, on_batch=on_batch)
    for site, names in arms.items():
        rung = names.index(learner.config.pins[site])
        warm.setdefault(function_of(site), []).append(rung / max(1, len(names) - 1))
    return out
