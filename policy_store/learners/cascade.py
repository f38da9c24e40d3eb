"""Call-site cascades: run a cheap backend, keep its answer when it can be trusted, else
re-issue the same call one rung up (``Learner.escalate``; the executor does the re-issue and
charges every rung that ran).

**What a kept answer risks.** Per function, rung k of its ladder (cheapest first), answer
polarity a (positive or not: ``modules.executor.positive_answer``) and confidence bin b
(``Usage.confidence``; answers without one share a bin of their own), the learner estimates

    q(k, a, b) = P(rung k's answer differs from the answer the call finally used)

by self-supervision, no label needed: whenever an answer was escalated, the next rung
answered the same call and ``RungRecord.agreed`` says whether the two agreed; chained up to
the call's final answer. This evidence is mostly a property of the backends, so it is
pooled over every call site of the function and carries over to later programs
(``start_program``); but not only (a fact table that knows a question's canonical wording
says "unknown" to a paraphrase), so each site also counts its own, and the pooled evidence
stands beside it as a prior worth at most ``cascade_pooled_weight`` answers. The estimates
are smoothed to fall with confidence (pool adjacent violators) and made pessimistic (prior
1 disagreement in 2, ``cascade_z`` standard errors up): with no evidence every answer
escalates to the top rung, and the cascade moves down as the cheap rungs prove to repeat the
larger ones.

**What a changed answer costs the item** (H(a), per call site, from the labels): when a
cheap answer of polarity a differed from the final one, keeping it might have changed the
item's answer. Where shadow runs (the benchmark harness's ``--shadow``) re-ran the program
with the cheap answer, the loss they add is measured; otherwise it is estimated
pessimistically from the label: the item's loss had its answer flipped (``fn_weight`` on a
positive label, ``fp_weight`` on a negative one, 1 for a text item), except where the cheap
answer can only have pushed the item towards its right answer (a "no"-side answer on a
negative label, a "yes"-side one on a positive label; which polarity leads to "yes" is
learned from the labels, so negated conditions work). An early ``exists`` on a stream with
1 positive in 100 rarely decides an item; a last ``verify_property`` often does. A new call
site starts from the largest such cost among the known sites of its function (half the
largest loss weight before there are any).

**Decisions.** Keeping rung k's answer costs q·H; escalating costs λ times what an escalation
from rung k has been seen to run (the rungs above it; before any, rung k+1 plus, for the
share of answers rung k+1's own table would pass on, an escalation from k+1). Per (call
site, rung, polarity) the answers kept are those at or above the lowest confidence bin whose
own smoothed q, and whose region's pooled pessimistic q (that bin and all above), keep
q·H below the cost of escalating: a learned confidence threshold. An answer that is not kept
goes one rung up, or straight two up where the rung between has mostly passed such answers
on as well (its cost would be spent for nothing). Items start on the
cheapest rung, or on a larger one once the rungs below have answered
``cascade_min_evidence`` calls at the site and starting above them is expected to cost
less. A share ``cascade_audit`` of kept answers (less where the next rung is costly, none
where one call of it costs more at λ than the most a kept answer can cost) is escalated
anyway, and a share of the items that would start above the cheapest rung start on it, so
that calibration keeps up with drift. Decisions are table look-ups (a few µs);
the tables are rebuilt in ``update``.
"""

from __future__ import annotations

import bisect
import io
import json
import zipfile
from collections import Counter
from typing import Any

import numpy as np

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, Learner, _check_arms
from policy_store.learners.config import LearnerConfig

_FORMAT = 1
#: Upper edges of the ordered confidence bins; answers without a confidence go to ``NO_CONF``.
EDGES = (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
NO_CONF = len(EDGES) + 1
BINS = NO_CONF + 1
_CALIBRATION = ("seen", "agree", "disagree", "escalation", "onward")
_SITE = ("labels", "right", "harm", "ran", "agree", "disagree")
#: Site fields a blob saved before they existed may lack (restored as zeros).
_SITE_OPTIONAL = ("agree", "disagree")


def confidence_bin(confidence: float | None) -> int:
    """The bin of a confidence: 0 .. len(EDGES) by value, ``NO_CONF`` for None."""
    if confidence is None or not np.isfinite(confidence):
        return NO_CONF
    return bisect.bisect_right(EDGES, confidence)


class _Calibration:
    """Agreement evidence of one function's ladder (``rungs`` backends), shared by its call sites."""

    def __init__(self, rungs: int) -> None:
        self.seen = np.zeros((rungs, 2, BINS))  # answers per rung, polarity, bin
        self.agree = np.zeros((rungs, 2, BINS))  # escalated answers the next rung repeated
        self.disagree = np.zeros((rungs, 2, BINS))  # ... it changed (plus label blame)
        self.escalation = np.zeros((rungs, 2))  # escalations from a rung: [cost of the rungs run, count]
        # escalations from (rung, polarity, bin) to the next rung: [count, how many it escalated in turn]
        self.onward = np.zeros((rungs, 2, BINS, 2))


class _Site:
    """What one call site's answers cost its items, and its decision tables."""

    def __init__(self, rungs: int) -> None:
        self.labels = np.zeros((2, 2))  # yes/no items: [site answered positive, label yes]
        self.right = np.zeros((2, 2))  # text items: [site answered positive, item right]
        # per polarity of a changed cheap answer: [loss sum, count] estimated, [sum, count] measured
        self.harm = np.zeros((2, 4))
        self.ran = np.zeros(rungs)  # answers per rung at this site
        # this site's own agreement evidence (as ``_Calibration``'s): it overrules the pooled one
        self.agree = np.zeros((rungs, 2, BINS))
        self.disagree = np.zeros((rungs, 2, BINS))
        self.trust = np.zeros((rungs, 2, BINS), dtype=bool)
        self.trust_rows: list[list[list[bool]]] = self.trust.tolist()
        self.jump_rows: list[list[list[int]]] = np.ones((rungs, 2, BINS), dtype=int).tolist()
        self.audit = [0.0] * rungs
        self.start = 0


class CascadeLearner(Learner):
    """Learns per call site and rung when an answer can be kept; escalates the others.

    The agreement evidence of a rung is mostly a property of the backends: it is pooled over
    every call site of the same function (``exists@2:11`` and ``exists@4:11``, and, through
    ``start_program``, the sites of later programs), so a new call site starts calibrated, and
    each site's own evidence overrules the pooled prior as it accumulates. What an error costs
    is a property of the call site and its program: kept per site, and started afresh for a
    new program.
    """

    name = "cascade"
    escalates = True

    def __init__(self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]) -> None:
        super().__init__(config, {}, costs)
        self._calibration: dict[str, _Calibration] = {}
        self._sites: dict[str, _Site] = {}
        self.start_program(arms, costs, fresh=False)

    def start_program(self, arms: dict[str, list[str]], costs: dict[str, float], fresh: bool = True) -> None:
        """Add a program's call sites (candidates cheapest first, as for every learner).

        With ``fresh``, sites of these ids forget what errors cost (call site ids are positions
        in a program, so another program's ``exists@2:11`` is another question); the agreement
        evidence of each function's rungs carries over. Sites of one function must share a ladder.
        """
        merged = {**self.arms, **{site: list(backends) for site, backends in arms.items()}}
        ladders: dict[str, list[str]] = {}
        for site, backends in merged.items():
            known = ladders.setdefault(_family(site), backends)
            if known != backends:
                raise LearnerError(
                    f"cascade: call site {site!r} has candidates {backends} but another "
                    f"{_family(site)}() site has {known}; sites of one function must share them")
        _check_arms(merged, {**self.costs, **costs})
        self.arms, self.costs = merged, {**self.costs, **costs}
        for family, backends in ladders.items():
            calibration = self._calibration.get(family)
            if calibration is None or calibration.seen.shape[0] != len(backends):
                self._calibration[family] = _Calibration(len(backends))
        for site in arms if fresh else ():
            self._sites.pop(site, None)
        for site in list(self._sites):
            self._decide(site)  # costs may have changed

    # -- decisions -------------------------------------------------------------------------
    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """The rung an item starts on: the learned start, or (audit share) the cheapest."""
        backends = self.candidates(call_site)
        start = self._site(call_site).start
        if start == 0:
            return Choice(backends[0], 1.0)
        audit = self.config.cascade_audit
        if audit > 0 and rng.random() < audit:
            return Choice(backends[0], audit)
        return Choice(backends[start], 1.0 - audit)

    def escalate(self, call_site: str, backend: str, confidence: float | None, positive: bool,
                 features: np.ndarray, rng: np.random.Generator, failed: bool = False) -> Choice | None:
        """The next rung when the answer is not trusted (or failed), or, for the audit share,
        when it is; None to keep it. The top rung's answers are always kept."""
        backends = self.candidates(call_site)
        try:
            k = backends.index(backend)
        except ValueError:
            return None
        if k == len(backends) - 1:
            return None
        if failed:
            return Choice(backends[k + 1], 1.0)
        site = self._site(call_site)
        a, b = int(positive), confidence_bin(confidence)
        if not site.trust_rows[k][a][b]:
            return Choice(backends[k + site.jump_rows[k][a][b]], 1.0)
        audit = site.audit[k]
        if audit > 0 and rng.random() < audit:
            return Choice(backends[k + 1], audit)
        return None

    def trusts(self, call_site: str, backend: str, confidence: float | None, positive: bool) -> bool:
        """Whether an answer of ``backend`` at ``call_site`` is kept (audits aside)."""
        backends = self.candidates(call_site)
        k = backends.index(backend)
        return k == len(backends) - 1 or bool(
            self._site(call_site).trust[k, int(positive), confidence_bin(confidence)])

    def start_rung(self, call_site: str) -> str:
        """The backend items start on at ``call_site`` (audits aside)."""
        return self.candidates(call_site)[self._site(call_site).start]

    # -- learning --------------------------------------------------------------------------
    def update(self, examples: list[Example]) -> None:
        """Count every rung answer (agreement with the call's final answer, label blame, what
        escalating cost, the site's label statistics), then rebuild the decision tables of
        the sites of every function touched."""
        per_item = Counter(ex.item_id for ex in examples if ex.item_id and ex.rungs)
        touched: set[str] = set()
        ran = {(ex.item_id, ex.call_site): ex for ex in examples if ex.item_id and ex.rungs}
        for ex in examples:
            backends = self.candidates(ex.call_site)
            if not np.isfinite(ex.reward):
                raise LearnerError(f"cascade update: non-finite reward at {ex.call_site!r}")
            if not ex.rungs:
                self._shadow(ex, ran.get((ex.item_id, ex.call_site)), per_item[ex.item_id])
                continue
            site = self._site(ex.call_site)
            calibration = self._calibration[_family(ex.call_site)]
            wrong = ex.reward < 0
            yes_side = self._yes_side(site)
            used_positive = False
            for call in _calls([r for r in ex.rungs if r.backend in backends]):
                final = call[-1]
                used_positive |= final.positive
                agrees = True  # with the final answer, walking down from it
                for j in range(len(call) - 1, -1, -1):
                    rung = call[j]
                    k, a = backends.index(rung.backend), int(rung.positive)
                    b = confidence_bin(rung.confidence)
                    calibration.seen[k, a, b] += 1
                    site.ran[k] += 1
                    if j == len(call) - 1:  # the answer the program used
                        continue
                    calibration.escalation[k] += (sum(self.costs[r.backend] for r in call[j + 1:]), 1.0)
                    if call[j + 1].backend == backends[min(k + 1, len(backends) - 1)]:
                        calibration.onward[k, a, b] += (1.0, float(j + 1 < len(call) - 1))
                    agrees = agrees and bool(rung.agreed)
                    if agrees:
                        calibration.agree[k, a, b] += 1
                        site.agree[k, a, b] += 1
                        continue
                    calibration.disagree[k, a, b] += 1
                    site.disagree[k, a, b] += 1
                    if ex.label is not None:
                        loss = _changed_loss(ex.label, wrong, a == yes_side, final.positive == bool(yes_side),
                                             self.config)
                        site.harm[a, :2] += (loss, 1.0)
            if isinstance(ex.label, bool):
                site.labels[int(used_positive), int(ex.label)] += 1
            elif ex.label is not None:
                site.right[int(used_positive), int(not wrong)] += 1
            touched.add(_family(ex.call_site))
        for call_site in list(self._sites):
            if _family(call_site) in touched:
                self._decide(call_site)

    def _decide(self, call_site: str) -> None:
        """Rebuild a site's tables: per rung k below the top and polarity, keep the answers at
        or above the lowest confidence bin t whose own (smoothed) rate q_t of differing from
        the call's final answer, and whose region's pessimistic rate (all answers at t and
        above, pooled), both make q·H ≤ λ·E[cost of the rungs an escalation from k runs]."""
        site, backends = self._sites[call_site], self.arms[call_site]
        calibration = self._calibration[_family(call_site)]
        lam = self.config.lam
        costs = [self.costs[b] for b in backends]
        top = len(backends) - 1
        harm = [self._harm(site, a, _family(call_site)) for a in (0, 1)]
        site.trust[:] = False
        start, best = top, lam * costs[top]  # the objective per call of starting on each rung
        # the prior cost of an escalation from rung k: rung k+1, and what k+1 passes on in turn
        # (its share of answers not kept, as its own table decides) at k+1's prior; the top
        # passes nothing on. A flat "every rung above" deadlocked cheap ladders under a costly
        # top: a nearly free next rung looked as dear as the top, so nothing escalated, and
        # nothing escalated ever showed what an escalation costs.
        chain, passes = 0.0, 0.0
        for k in range(top - 1, -1, -1):
            chain = costs[k + 1] + passes * chain
            spent, n = calibration.escalation[k]
            escalate = lam * (spent + chain) / (n + 1.0)
            expected = np.full((2, BINS), escalate)
            for a in (0, 1):
                q, trust = self._trusted(calibration, site, k, a,
                                         escalate / harm[a] if harm[a] > 0 else np.inf)
                site.trust[k, a] = trust
                expected[a] = np.where(trust, q * harm[a], escalate)
            seen = calibration.seen[k]
            passes = float((seen * ~site.trust[k]).sum() / seen.sum()) if seen.sum() else \
                float(np.mean(~site.trust[k]))
            here = lam * costs[k] + (float((seen * expected).sum() / seen.sum()) if seen.sum() else escalate)
            if (k == 0 or self._shown(site, k)) and here < best:
                start, best = k, here
            jump = np.ones((2, BINS), dtype=int)
            if k + 2 <= top:  # straight to k+2 where k+1 is expected to pass the call on anyway
                again, n = calibration.onward[k, ..., 1], calibration.onward[k, ..., 0]
                onward = (again + 1.0) / (n + 2.0)
                jump[costs[k + 1] + onward * costs[k + 2] > costs[k + 2]] = 2
            site.jump_rows[k] = jump.tolist()
            nxt = costs[k + 1]
            # an audit shows whether rung k's kept answers are safe; where one call of rung k+1
            # costs more (at λ) than the most a kept answer can cost the item, escalating never
            # pays whatever it shows, so nothing is audited
            site.audit[k] = 0.0 if lam * nxt >= max(harm) else self.config.cascade_audit * (
                1.0 if nxt <= 0 else min(1.0, self.config.cascade_audit_cost / nxt))
        site.audit[top] = 0.0
        site.trust_rows = site.trust.tolist()
        site.start = start if self._shown(site, start) else 0

    def _shown(self, site: _Site, k: int) -> bool:
        """Whether every rung below k has answered enough calls at the site to be skipped."""
        return all(site.ran[j] >= self.config.cascade_min_evidence for j in range(k))

    def _trusted(self, calibration: _Calibration, site: _Site, k: int, a: int, tolerable: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Per bin of rung ``k``, polarity ``a``: the smoothed disagreement rate q (falling with
        confidence: pool adjacent violators, prior 1 disagreement in 2) and whether answers in
        the bin are kept: bins at or above the lowest t with q_t ≤ ``tolerable`` and the
        pooled rate of bins ≥ t, ``cascade_z`` standard errors up, ≤ ``tolerable`` too.
        Answers without a confidence are kept on their own pessimistic rate.

        The evidence is the site's own answers plus the function's pooled ones scaled down to
        at most ``cascade_pooled_weight`` answers (per rung and polarity, bins in proportion):
        a new site starts from what the function's rungs did elsewhere, and its own answers
        overrule that where its question differs (a fact table that knows the canonical
        wording answers "unknown" to a paraphrase, and a rung above that does not know it
        either agrees: elsewhere "unknown" was safe to keep, here it is wrong)."""
        pooled_d, pooled_n = calibration.disagree[k, a], calibration.agree[k, a] + calibration.disagree[k, a]
        total = float(pooled_n.sum())
        w = min(1.0, self.config.cascade_pooled_weight / total) if total > 0 else 0.0
        d = site.disagree[k, a] + w * pooled_d
        n = site.agree[k, a] + site.disagree[k, a] + w * pooled_n
        q = np.empty(BINS)
        blocks: list[list[float]] = []  # [disagreements, answers, first bin, last bin]
        for b in range(NO_CONF):
            blocks.append([d[b], n[b], b, b])
            while len(blocks) > 1 and _rate(blocks[-2]) < _rate(blocks[-1]):
                hi = blocks.pop()
                lo = blocks[-1]
                lo[0], lo[1], lo[3] = lo[0] + hi[0], lo[1] + hi[1], hi[3]
        for block in blocks:
            q[int(block[2]):int(block[3]) + 1] = _rate(block)
        q[NO_CONF] = _rate([d[NO_CONF], n[NO_CONF]])
        trust = np.zeros(BINS, dtype=bool)
        above_d = np.cumsum(d[:NO_CONF][::-1])[::-1]  # pooled over bins >= t
        above_n = np.cumsum(n[:NO_CONF][::-1])[::-1]
        for t in range(NO_CONF):
            if q[t] <= tolerable and self._upper(above_d[t], above_n[t]) <= tolerable:
                trust[t:NO_CONF] = True
                break
        trust[NO_CONF] = self._upper(d[NO_CONF], n[NO_CONF]) <= tolerable
        return q, trust

    def _upper(self, disagree: float, answers: float) -> float:
        """Disagreement rate with prior 1 in 2, ``cascade_z`` standard errors up."""
        q = (disagree + 1.0) / (answers + 2.0)
        return min(1.0, q + self.config.cascade_z * float(np.sqrt(q * (1.0 - q) / (answers + 2.0))))

    def _yes_side(self, site: _Site) -> int:
        """The answer polarity that leads the item to "yes": the positive one (True, found,
        counted), unless the negative answers have met positive labels (2 or more) and at a
        higher rate (a negated condition: "is there no blue object?")."""
        pos, n = site.labels[:, 1], site.labels.sum(1)
        if pos[0] >= 2 and pos[0] / n[0] > pos[1] / max(n[1], 1.0):
            return 0
        return 1

    def _harm(self, site: _Site, a: int, family: str) -> float:
        """Expected item loss when a cheap answer of polarity ``a`` is kept but the final rung
        answered otherwise. Estimated: the mean of ``_changed_loss`` over the site's changed
        answers of that polarity. Measured, where shadow runs say what the item would have
        answered with the cheap answer: the mean loss they add, shrunk towards the estimate.
        The prior (worth 2 answers) is the largest such figure among the other sites of the
        same function that have seen 5 changed answers (programs seen before included), else
        half the largest loss weight."""
        text = site.right.sum() > site.labels.sum()
        prior = 0.5 * (1.0 if text else max(self.config.fn_weight, self.config.fp_weight))
        known = [_harm_of(other.harm[a], prior) for name, other in self._sites.items()
                 if other is not site and _family(name) == family and other.harm[a, 1] >= 5]
        return _harm_of(site.harm[a], max(known) if known else prior)

    def _shadow(self, shadow: Example, ran: Example | None, sites: int) -> None:
        """A shadow run: the item's program again with every call of ``shadow.call_site`` on
        the cheaper rung ``shadow.backend``. Where that rung answered a call of the item
        otherwise than its final rung, the loss the shadow adds is a measured cost of keeping
        a changed answer of its polarity."""
        if ran is None or sites == 0:
            return
        backends = self.arms[shadow.call_site]
        changed: set[int] = set()
        for call in _calls([r for r in ran.rungs if r.backend in backends]):
            agrees = True
            for rung in reversed(call[:-1]):
                agrees = agrees and bool(rung.agreed)
                if rung.backend == shadow.backend and not agrees:
                    changed.add(int(rung.positive))
        if len(changed) != 1:
            return  # the rung kept every answer, or changed answers of both polarities
        added = sites * (ran.reward - shadow.reward)  # rewards are -loss / (call sites that ran)
        self._site(shadow.call_site).harm[changed.pop(), 2:] += (added, 1.0)

    def _site(self, call_site: str) -> _Site:
        site = self._sites.get(call_site)
        if site is None:
            backends = self.candidates(call_site)
            site = self._sites[call_site] = _Site(len(backends))
            self._decide(call_site)
        return site

    # -- persistence -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """numpy .npz bytes: a JSON header (call sites and ladders) plus the counts of every
        function's calibration and every site's label statistics."""
        families = sorted(self._calibration)
        sites = sorted(self._sites)
        meta = {"format": _FORMAT, "learner": self.name, "arms": self.arms,
                "families": families, "sites": sites}
        arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for i, family in enumerate(families):
            for field in _CALIBRATION:
                arrays[f"{field}{i}"] = getattr(self._calibration[family], field)
        for i, s in enumerate(sites):
            for field in _SITE:
                arrays[f"site_{field}{i}"] = getattr(self._sites[s], field)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, config: LearnerConfig, arms: dict[str, list[str]],
                   costs: dict[str, float]) -> CascadeLearner:
        """Rebuild from ``to_bytes``; what was learned for a ladder that has changed since
        (a backend added or removed) is dropped, the rest restored."""
        learner = cls(config, arms, costs)
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes().decode())
                if meta.get("format") != _FORMAT or meta.get("learner") != cls.name:
                    raise ValueError(f"header {meta} is not a cascade format-{_FORMAT} blob")
                saved_arms: dict[str, list[str]] = meta["arms"]
                ladders = {_family(s): b for s, b in learner.arms.items()}
                saved_ladders = {_family(s): b for s, b in saved_arms.items()}
                for i, family in enumerate(meta["families"]):
                    if family not in ladders or ladders[family] != saved_ladders.get(family):
                        continue
                    calibration = learner._calibration[family]
                    for field in _CALIBRATION:
                        _restore(calibration, field, npz[f"{field}{i}"])
                for i, name in enumerate(meta["sites"]):
                    if learner.arms.get(name) != saved_arms.get(name):
                        continue
                    site = _Site(len(learner.arms[name]))
                    for field in _SITE:
                        key = f"site_{field}{i}"
                        if field in _SITE_OPTIONAL and key not in npz:
                            continue  # saved before sites kept their own agreement evidence
                        _restore(site, field, npz[key])
                    learner._sites[name] = site
        except (ValueError, KeyError, OSError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise LearnerError(f"cascade: cannot read learner blob ({len(blob)} bytes): {exc}") from exc
        for name in learner._sites:
            learner._decide(name)
        return learner


def _harm_of(row: np.ndarray, prior: float) -> float:
    """[estimated loss sum, count, measured loss sum, count] -> the expected loss: the estimate
    (prior worth 2 answers), then the measurements shrunk towards it (worth 2)."""
    total, count, measured, runs = row
    estimate = (total + 2.0 * prior) / (count + 2.0)
    return float(max(measured + 2.0 * estimate, 0.0) / (runs + 2.0))


def _calls(rungs: list[Any]) -> list[list[Any]]:
    """A call site's rung answers split per call: each call ends with the answer it used."""
    calls: list[list[Any]] = [[]]
    for rung in rungs:
        calls[-1].append(rung)
        if rung.agreed is None:
            calls.append([])
    return [c for c in calls if c]


def _family(call_site: str) -> str:
    """The function of a call site id (``exists@2:11`` -> ``exists``): its calibration group."""
    return call_site.split("@", 1)[0]


def _restore(target: Any, field: str, saved: np.ndarray) -> None:
    if saved.shape != getattr(target, field).shape:
        raise ValueError(f"{field} has shape {saved.shape}, expected {getattr(target, field).shape}")
    setattr(target, field, saved.astype(np.float64))


def _rate(block: list[float]) -> float:
    return (block[0] + 1.0) / (block[1] + 2.0)


def _changed_loss(label: bool | str, wrong: bool, pushes_yes: bool, next_pushes_yes: bool,
                  config: LearnerConfig) -> float:
    """What keeping a cheap answer would have cost an item whose larger rung answered
    otherwise, assuming (pessimistically) that the changed answer changes the item's answer.

    The item came out right with the larger answer (else nothing is charged: the cheap answer
    might have fixed it). A yes/no item then loses ``fn_weight`` on a positive label and
    ``fp_weight`` on a negative one, except where the cheap answer can only have pushed the
    item towards its right answer (towards "no" on a negative label where the larger answer
    pushed towards "yes", and conversely). A text item loses 1.
    """
    if wrong:
        return 0.0
    if not isinstance(label, bool):
        return 1.0
    if pushes_yes != next_pushes_yes and pushes_yes == label:
        return 0.0
    return config.fn_weight if label else config.fp_weight
