"""The ``confirmed`` learner: a static configuration found by audits, with a program-level
confirmation of every "yes".

The search itself lives here, once, for both users: the benchmark harness
(``benchmarks/evaluate/audit.py``) and the flows (``policies.audits``, the feedback flow).

* **Which items.** When labels arrive, items are *audited* by stratum (``AuditBook.admit``):
  every positive label, every item answered "yes", every wrong answer, and a share
  ``negatives`` of the rest (weight 1/share, so estimates stay unbiased).
* **Replays.** An audited item is run again under other configurations (one backend per call
  site); what each configuration answered and what all its calls cost (FLOPs) are kept per
  (item, configuration) in ``AuditBook.runs``, so a configuration is judged on every item
  audited so far. Who runs a replay (a call cache in the harness, the real backends in the
  flows) is the caller's business: ``objective`` asks a ``Replay`` callback.
* **The objective.** Per configuration: the weighted mean loss over audited items plus λ times
  the weighted mean cost in units of one monolithic call. Losses target F1 on rare positives
  (``F1_FN``/``F1_FP`` over p̂, the labels' positive rate so far); a text answer costs 1 when
  wrong. With ``confirm`` (bool streams), an item a configuration answers "yes" is also run
  on the largest backends, whose answer stands and whose cost is added.
* **The search.** Coordinate descent from the current pins (``descend``): one call site at a
  time, every rung, a change kept only when it lowers the objective by ``margin``.

``ConfirmedLearner`` holds this state between policy versions: the pins (``choose`` returns
the pinned backend with propensity 1), the audit weights, the replays, the counts and the
per-function rung shares its pins end on (``warm``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import numpy as np

from modules.answers import normalise_answer
from policy_store.errors import LearnerError
from policy_store.learners.base import Example
from policy_store.learners.config import LearnerConfig
from policy_store.learners.fixed import FixedLearner

#: F1's marginal cost of a missed positive and of a false positive, per positive, near F1 0.7:
#: dF1 = -(2/D)(1 - F1/2) for a miss and -F1/D for a false positive, D ≈ 2·positives.
F1_FN, F1_FP = 0.65, 0.35

#: A configuration as a hashable key: sorted (call site, backend) pairs.
ConfigKey = tuple[tuple[str, str], ...]
#: An audited item's key: an index in the harness, ``batch/item_id`` in the flows.
K = TypeVar("K", bound=Hashable)
#: Runs item ``k`` under a configuration (every call site pinned): (answer, FLOPs of all calls).
Replay = Callable[[K, dict[str, str]], tuple[Any, float]]

_FORMAT = 1


@dataclass
class AuditOptions:
    """Knobs of the audited search (kept fixed across benchmarks)."""

    negatives: float = 0.05  # share of right "no" items audited (weight 1/share) ...
    negatives_late: float = 0.01  # ... until ``enough`` of them were, then this share
    enough: int = 24
    margin: float = 0.002  # objective drop a change must bring (per item, in loss units)
    rounds: int = 2  # coordinate-descent sweeps per labelled batch
    #: program-level cascade (bool streams): an item the configuration answers "yes" is run
    #: again on the largest backends, whose answer stands; the search then looks for the
    #: cheapest configuration that catches the positives, the confirmation keeps precision
    confirm: bool = False
    start: float = 1.0  # first query's starting rung, as a share of each ladder (1 = largest)
    #: the audits' stake (None: none): a trial that moves a call site to a costlier rung runs
    #: only while the audits' charged compute so far, priced at λ, is at most ``stake`` × the
    #: loss at stake (``AuditStake``); trials to cheaper rungs always run
    stake: float | None = None


def config_key(pins: dict[str, str]) -> ConfigKey:
    """``pins`` as a hashable key (sorted pairs)."""
    return tuple(sorted(pins.items()))


def function_of(site: str) -> str:
    """The generic function of a call site id (``exists@3:7`` -> ``exists``)."""
    return site.split("@", 1)[0]


def largest(arms: dict[str, list[str]]) -> dict[str, str]:
    """Every call site on its largest backend (the last rung): the confirmation's configuration."""
    return {site: names[-1] for site, names in arms.items()}


def start_pins(arms: dict[str, list[str]], warm: dict[str, list[float]], start: float) -> dict[str, str]:
    """Each call site on the rung at the median share its function ended on before (``warm``:
    function -> rung shares, 0 cheapest .. 1 largest), else at ``start``."""
    pins: dict[str, str] = {}
    for site, names in arms.items():
        seen = warm.get(function_of(site))
        share = float(np.median(seen)) if seen else start
        pins[site] = names[int(round(share * (len(names) - 1)))]
    return pins


def rung_shares(arms: dict[str, list[str]], pins: dict[str, str]) -> dict[str, list[float]]:
    """function -> the rung share (0 cheapest .. 1 largest) of each of its call sites' pins."""
    out: dict[str, list[float]] = {}
    for site, names in arms.items():
        out.setdefault(function_of(site), []).append(names.index(pins[site]) / max(1, len(names) - 1))
    return out


@dataclass
class AuditBook(Generic[K]):
    """The audited items of one stream: labels, weights, replays and counts."""

    answer_type: str
    labels: dict[K, Any] = field(default_factory=dict)  # audited item → its label
    weights: dict[K, float] = field(default_factory=dict)  # audited item → weight
    runs: dict[tuple[K, ConfigKey], tuple[Any, float]] = field(default_factory=dict)
    labelled: int = 0
    positives: int = 0
    negatives: int = 0  # right "no" items audited by sampling

    def p_hat(self) -> float:
        """The positive rate of the labels so far (with one pseudo-count each way)."""
        return (self.positives + 1.0) / (self.labelled + 2.0)

    def loss(self, k: K, answer: Any, p_hat: float) -> float:
        """Item ``k``'s loss for ``answer``: F1-targeting on bool streams, 0/1 on text."""
        got, want = normalise_answer(answer), normalise_answer(self.labels[k])
        if self.answer_type != "bool":
            return 0.0 if got is not None and got == want else 1.0
        if got == want:
            return 0.0
        return (F1_FN if want == "yes" else F1_FP) / p_hat

    def admit(self, k: K, label: Any, answer: Any, draw: Callable[[], float], opts: AuditOptions) -> bool:
        """Count a newly labelled item and decide whether it is audited (by stratum: positive,
        answered "yes", wrong; else sampled, ``draw()`` < share, weight 1/share)."""
        self.labelled += 1
        positive = normalise_answer(label) == "yes"
        self.positives += positive
        wrong = normalise_answer(answer) != normalise_answer(label)
        if positive or wrong or normalise_answer(answer) == "yes":
            self.weights[k] = 1.0
        else:
            share = opts.negatives if self.negatives < opts.enough else opts.negatives_late
            if draw() < share:
                self.weights[k] = 1.0 / share
                self.negatives += 1
        if k in self.weights:
            self.labels[k] = label
            return True
        return False

    def run(self, k: K, config: dict[str, str], replay: Replay[K]) -> tuple[Any, float]:
        """Item ``k`` under ``config``: kept, or replayed once and kept."""
        key = (k, config_key(config))
        if key not in self.runs:
            self.runs[key] = replay(k, config)
        return self.runs[key]

    def composite(self, k: K, config: dict[str, str], fallback: dict[str, str] | None,
                  replay: Replay[K]) -> tuple[Any, float]:
        """Item ``k`` under ``config`` with the confirmation (``fallback`` given): a "yes" is
        run again on ``fallback``, whose answer stands and whose cost is added."""
        answer, total = self.run(k, config, replay)
        if fallback is not None and normalise_answer(answer) == "yes":
            answer, total2 = self.run(k, fallback, replay)
            return answer, total + total2
        return answer, total

    def loss_rate(self, config: dict[str, str], replay: Replay[K],
                  fallback: dict[str, str] | None = None) -> float:
        """The weighted mean loss of ``config`` over the audited items (0 with none)."""
        p_hat = self.p_hat()
        loss = weight = 0.0
        for k, w in self.weights.items():
            answer, _ = self.composite(k, config, fallback, replay)
            loss += w * self.loss(k, answer, p_hat)
            weight += w
        return loss / weight if weight else 0.0

    def objective(self, config: dict[str, str], replay: Replay[K], lam: float, unit: float,
                  fallback: dict[str, str] | None = None) -> float:
        """Weighted mean loss plus λ × weighted mean cost (FLOPs ÷ ``unit``) over the audited
        items under ``config`` (confirmed on ``fallback`` when given); 0 with none audited."""
        p_hat = self.p_hat()
        loss = cost = weight = 0.0
        for k, w in self.weights.items():
            answer, total = self.composite(k, config, fallback, replay)
            loss += w * self.loss(k, answer, p_hat)
            cost += w * total
            weight += w
        return (loss + lam * cost / unit) / weight if weight else 0.0


#: The stake the ``confirmed`` learner audits with (``AuditOptions.stake``).
STAKE = 0.3


@dataclass
class AuditStake:
    """What the audits may spend, priced at λ, against what there is to win.

    Why. The audits' replays used to cost the same at every λ (about 0.056 GFLOPs per item on
    the binary benchmark), so at a high λ, where the best configuration is cheap, the audits
    cost more than the configuration and the policy's cheapest point stayed far above it.
    Auditing is worth at most the loss it can remove: per labelled item, the current
    configuration's loss rate on the audited items. So ``loss`` adds, per labelled batch, the
    batch's items × that rate, and ``spent`` the audits' charged compute in monolithic calls;
    a trial that moves a call site to a costlier rung runs only while λ × ``spent`` ≤ ``share``
    × ``loss``. A trial to a cheaper rung always runs: its replays cost little, and it is how
    the search reaches a cheap configuration at a high λ. At a low λ the stake never binds.
    """

    share: float | None
    loss: float = 0.0
    spent: float = 0.0

    def affordable(self, lam: float, ladders: dict[str, list[str]], now: Callable[[], float]
                   ) -> Callable[[str, str, str], bool] | None:
        """``descend``'s check; ``now()``: monolithic calls charged in this step so far."""
        share = self.share
        if share is None:
            return None

        def check(site: str, at: str, to: str) -> bool:
            names = ladders[site]
            if names.index(to) < names.index(at):
                return True
            return lam * (self.spent + now()) <= share * self.loss

        return check


def descend(current: dict[str, str], arms: dict[str, list[str]],
            objective: Callable[[dict[str, str]], float], rounds: int, margin: float,
            affordable: Callable[[str, str, str], bool] | None = None) -> dict[str, str]:
    """Coordinate descent from ``current``: per call site every other rung, a change kept only
    when it lowers ``objective`` by ``margin``; at most ``rounds`` sweeps. ``affordable(site,
    from, to)``, when given, is asked before each trial: False skips it."""
    current = dict(current)
    best = objective(current)
    for _ in range(rounds):
        improved = False
        for site, names in arms.items():
            for name in names:
                if name == current[site]:
                    continue
                if affordable is not None and not affordable(site, current[site], name):
                    continue
                trial = {**current, site: name}
                j = objective(trial)
                if j < best - margin:
                    current, best, improved = trial, j, True
        if not improved:
            break
    return current


def audit_draw(seed: int, item: str) -> float:
    """The seeded uniform draw that decides whether a right "no" item is sampled for audit: a
    function of (seed, item) only, so a rerun of the feedback audits the same items."""
    return float(np.random.default_rng([seed, zlib.crc32(f"audit/{item}".encode())]).random())


class ConfirmedLearner(FixedLearner):
    """Pinned backends found by audits; the flows confirm every "yes" on the largest backends.

    A fresh learner pins every call site at ``config.audit_start`` of its ladder (or at
    ``config.pins`` when given). ``audit`` admits newly labelled items, replays the audited
    ones through a ``Replay`` and repins to the configuration ``descend`` finds. ``update``
    (per-call-site examples) teaches it nothing: without the items' images nothing can be
    replayed, so the feedback flow calls ``audit`` instead (``policies.audits``).
    """

    name = "confirmed"

    def __init__(
        self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]
    ) -> None:
        if not config.pins:
            config = config.model_copy(update={"pins": start_pins(arms, {}, config.audit_start)})
        super().__init__(config, arms, costs)
        self.book: AuditBook[str] = AuditBook("bool")
        self.warm: dict[str, list[float]] = rung_shares(self.arms, self._pin)
        self.stake = AuditStake(STAKE)

    @property
    def pins(self) -> dict[str, str]:
        """The current pins: call site -> backend."""
        return dict(self._pin)

    @property
    def fallback(self) -> dict[str, str]:
        """The confirmation's configuration: every call site on its largest backend."""
        return largest(self.arms)

    def options(self) -> AuditOptions:
        """The search's knobs: the benchmark's, with the confirmation and ``audit_start``."""
        return AuditOptions(confirm=True, start=self.config.audit_start, stake=STAKE)

    def update(self, examples: list[Example]) -> None:
        """Per-call-site examples carry no images to replay: the confirmed learner learns in
        ``audit`` only (the feedback flow calls it), so examples change nothing."""

    def audit(self, answer_type: str, arrived: list[tuple[str, Any, Any]], replay: Replay[str],
              unit: float, own: dict[str, list[tuple[dict[str, str], Any, float]]] | None = None,
              charged: Callable[[], float] | None = None) -> dict[str, str]:
        """Learn from newly labelled items and repin; returns the new pins.

        ``arrived``: (item key, label, the answer the policy gave) in arrival order; ``replay``
        runs an item under a configuration (the caller charges what it computes); ``unit``:
        FLOPs of one monolithic call. ``own``: item key -> the runs the item already had
        (configuration, answer, FLOPs: its own run, its confirmation), kept as replays of an
        audited item for free. ``charged()``: FLOPs the caller charged for this step's replays
        so far, for the audits' stake (``AuditStake``; without it the stake never binds).
        """
        opts = self.options()
        self.book.answer_type = answer_type
        confirm = answer_type == "bool"
        for k, label, answer in arrived:
            draw = partial(audit_draw, self.config.seed, k)
            if self.book.admit(k, label, answer, draw, opts) and own is not None:
                for config, got, total in own.get(k, []):
                    self.book.runs.setdefault((k, config_key(config)), (got, total))
        fallback = self.fallback if confirm else None
        self.stake.share = opts.stake
        def now() -> float:
            return charged() / unit if charged is not None else 0.0

        if arrived and opts.stake is not None:
            self.stake.loss += len(arrived) * self.book.loss_rate(self.pins, replay, fallback)
        new = descend(self.pins, self.arms,
                      lambda c: self.book.objective(c, replay, self.config.lam, unit, fallback),
                      opts.rounds, opts.margin, self.stake.affordable(self.config.lam, self.arms, now))
        self.stake.spent += now()
        self.repin(new)
        self.warm = rung_shares(self.arms, self._pin)
        return new

    def to_bytes(self) -> bytes:
        """JSON: pins, audited items (label, weight), replays, counts, warm shares; no pickle."""
        b = self.book
        state = {
            "format": _FORMAT, "learner": self.name, "pins": self.pins, "answer_type": b.answer_type,
            "items": [[k, b.labels[k], w] for k, w in b.weights.items()],
            "runs": [[k, [list(p) for p in c], answer, total] for (k, c), (answer, total) in b.runs.items()],
            "labelled": b.labelled, "positives": b.positives, "negatives": b.negatives,
            "warm": self.warm, "stake": [self.stake.loss, self.stake.spent],
        }
        return json.dumps(state, sort_keys=True).encode()

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        config: LearnerConfig,
        arms: dict[str, list[str]],
        costs: dict[str, float],
    ) -> ConfirmedLearner:
        """Rebuild from ``to_bytes``; pins for call sites no longer in ``arms`` are dropped, new
        call sites start at ``config.audit_start``."""
        try:
            state = json.loads(blob.decode())
            if state.get("format") != _FORMAT or state.get("learner") != cls.name:
                raise ValueError(f"not a {cls.name} format-{_FORMAT} blob")
            pins = {**start_pins(arms, {}, config.audit_start),
                    **{s: b for s, b in state["pins"].items() if s in arms}}
            learner = cls(config.model_copy(update={"pins": pins}), arms, costs)
            book: AuditBook[str] = AuditBook(str(state["answer_type"]))
            for k, label, w in state["items"]:
                book.labels[str(k)], book.weights[str(k)] = label, float(w)
            for k, pairs, answer, total in state["runs"]:
                book.runs[(str(k), tuple((str(s), str(n)) for s, n in pairs))] = (answer, float(total))
            book.labelled, book.positives = int(state["labelled"]), int(state["positives"])
            book.negatives = int(state["negatives"])
            learner.book = book
            learner.warm = {str(f): [float(x) for x in v] for f, v in state["warm"].items()}
            # a version saved before the audits had a stake starts one afresh
            learner.stake.loss, learner.stake.spent = (float(x) for x in state.get("stake", [0.0, 0.0]))
        except LearnerError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise LearnerError(f"{cls.name}: cannot read learner blob ({len(blob)} bytes): {exc}") from exc
        return learner


__all__ = ["F1_FN", "F1_FP", "STAKE", "AuditBook", "AuditOptions", "AuditStake", "ConfigKey",
           "ConfirmedLearner", "Replay", "audit_draw", "config_key", "descend", "function_of", "largest",
           "rung_shares", "start_pins"]
