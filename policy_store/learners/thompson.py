"""Contextual Thompson sampling with one Bayesian linear regression per (call site, backend).

Each arm models the loss part of the reward, r = -loss/N, as r = x̃·θ + ε with
x̃ = [features, 1], θ ~ N(m0, prior_var·I), ε ~ N(0, noise_var). The posterior is kept
in precision form (A = I/prior_var + Σ x̃x̃ᵀ/σ², b = m0/prior_var + Σ x̃ r/σ²) and its
mean μ = A⁻¹b and covariance Σ = A⁻¹ are cached after every update, so choose() is a
few small mat-vec products.

Choosing: score_k = x̃·θ_k − λ·cost_k with θ_k ~ N(μ_k, explore²·Σ_k), argmax. Only the
scalar x̃·θ_k enters the score, so we draw it directly from its exact marginal
N(x̃·μ_k, explore²·x̃ᵀΣ_k x̃) — the same distribution as drawing θ_k first, at O(d²).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict

import numpy as np

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, Learner
from policy_store.learners.config import LearnerConfig

_FORMAT = 1


class ThompsonLearner(Learner):
    """Thompson sampling over each call site's candidates; starts cheap, escalates on loss."""

    name = "thompson"

    def __init__(
        self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]
    ) -> None:
        super().__init__(config, arms, costs)
        self._dim: int | None = None  # feature length without the bias; fixed on first use
        self._stats: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # arm -> (A, b)
        self._post: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # arm -> (μ, Σ)
        self._sites: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # choose() cache
        # announced items (``prefetch``): their features, positions by identity, their
        # contexts, and per call site the score means and spreads of all of them, kept with
        # the site's stacks they were computed from
        self._batch: list[np.ndarray] | None = None
        self._batch_pos: dict[int, int] = {}
        self._batch_x: np.ndarray | None = None
        self._batch_scores: dict[str, tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]] = {}

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Sample a posterior score per candidate; propensity from extra draws."""
        backends = self.candidates(call_site)
        got = None
        if self._dim is not None and len(backends) > 1:  # an announced item: scores at hand
            site = self._site(call_site)
            got = self._prefetched(call_site, site, features)
        if got is None:
            x = self._context(features, f"choose({call_site!r})")
            if len(backends) == 1:
                return Choice(backends[0], 1.0)
            site = self._site(call_site)
            centre = site[0] @ x
            spread = self.config.explore * np.sqrt(np.maximum((site[1] @ x) @ x, 0.0))
        else:
            centre, spread = got
        costs = site[2]
        n = self.config.n_propensity_samples
        # Row 0 is the choice, rows 1..n the propensity draws, from the same rng stream.
        # The loss part of a reward is never positive, so draws are capped at 0: an arm known
        # to be right is not out-bid by a costlier arm's optimistic draw.
        draws = np.minimum(centre + spread * rng.standard_normal((1 + n, len(backends))), 0.0)
        picks = np.argmax(draws - self.config.lam * costs, axis=1)
        chosen = int(picks[0])
        propensity = max(np.count_nonzero(picks[1:] == chosen) / n, 1.0 / n)
        return Choice(backends[chosen], min(propensity, 1.0))

    def prefetch(self, features: list[np.ndarray]) -> None:
        """Announce the items ``choose`` is asked about next (the benchmark harness: one
        stream batch, by the same array objects). The first ``choose`` at a call site then
        computes every announced item's score mean x̃·μ_k and spread for all candidates at
        once (one matrix product instead of one per decision); they are recomputed when the
        site's posterior or costs change (``update``, ``extend``). The draws, and so the
        choices, are those of the per-item path up to float rounding of the products (a draw
        within ~1e-15 of a tie could go the other way); features that are not valid take
        the per-item path, which reports them."""
        self._batch = list(features)
        self._batch_pos = {id(x): i for i, x in enumerate(self._batch)}
        self._batch_x = None
        self._batch_scores = {}

    def _prefetched(self, call_site: str, site: tuple[np.ndarray, ...],
                    features: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if self._batch is None:
            return None
        i = self._batch_pos.get(id(features))
        if i is None or self._batch[i] is not features:
            return None
        got = self._batch_scores.get(call_site)
        if got is None or got[0] is not site:
            if self._batch_x is None:
                try:
                    xs = np.asarray(self._batch, dtype=np.float64)
                except (ValueError, TypeError):
                    xs = np.empty(0)
                if xs.ndim != 2 or xs.shape[1] != self._dim or not np.isfinite(xs).all():
                    self._batch = None  # the per-item path says which item is wrong
                    return None
                self._batch_x = np.concatenate([xs, np.ones((len(xs), 1))], axis=1)
            xs = self._batch_x
            means, covs = site[0], site[1]
            quad = np.einsum("kbi,bi->bk", xs @ covs, xs)  # x̃ᵀ Σ_k x̃ per item and candidate
            got = (site, xs @ means.T, self.config.explore * np.sqrt(np.maximum(quad, 0.0)))
            self._batch_scores[call_site] = got
        return got[1][i], got[2][i]

    def _site(self, call_site: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stacked (means k×d, covariances k×d×d, costs k) of a site's candidates, cached."""
        cached = self._sites.get(call_site)
        if cached is None:
            posts = [self._post.get((call_site, b)) or self._prior_post((call_site, b))
                     for b in self.arms[call_site]]
            cached = (
                np.stack([mu for mu, _ in posts]),
                np.stack([cov for _, cov in posts]),
                np.array([self.costs[b] for b in self.arms[call_site]], dtype=np.float64),
            )
            self._sites[call_site] = cached
        return cached

    def update(self, examples: list[Example]) -> None:
        """Add examples to their arms' sufficient statistics, then refresh the posteriors."""
        touched: dict[tuple[str, str], list[Example]] = defaultdict(list)
        for ex in examples:
            if ex.backend not in self.candidates(ex.call_site):
                raise LearnerError(
                    f"thompson update: backend {ex.backend!r} is not a candidate of call site "
                    f"{ex.call_site!r} ({self.arms[ex.call_site]}); "
                    "drop examples of removed backends"
                )
            if not np.isfinite(ex.reward):
                raise LearnerError(f"thompson update: non-finite reward at {ex.call_site!r}")
            touched[(ex.call_site, ex.backend)].append(ex)
        inv_noise = 1.0 / self.config.noise_var
        for arm, group in touched.items():
            xs = np.stack([self._context(ex.features, f"update({arm[0]!r})") for ex in group])
            rs = np.array([ex.reward for ex in group])
            a, b = self._stats.get(arm) or self._prior_stats(arm)
            self._stats[arm] = (a + inv_noise * xs.T @ xs, b + inv_noise * xs.T @ rs)
            self._refresh(arm)

    def to_bytes(self) -> bytes:
        """numpy .npz bytes: a JSON header plus each arm's (A, b); no pickle."""
        keys = sorted(self._stats)
        meta = {"format": _FORMAT, "learner": self.name, "dim": self._dim, "arms": keys}
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for i, arm in enumerate(keys):
            arrays[f"A{i}"], arrays[f"b{i}"] = self._stats[arm]
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        config: LearnerConfig,
        arms: dict[str, list[str]],
        costs: dict[str, float],
    ) -> ThompsonLearner:
        """Rebuild from ``to_bytes``; arms absent from the blob start at the prior."""
        learner = cls(config, arms, costs)
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes().decode())
                if meta.get("format") != _FORMAT or meta.get("learner") != cls.name:
                    raise ValueError(f"header {meta} is not a thompson format-{_FORMAT} blob")
                learner._dim = meta["dim"]
                for i, (site, backend) in enumerate(meta["arms"]):
                    learner._stats[(site, backend)] = (npz[f"A{i}"], npz[f"b{i}"])
        except (ValueError, KeyError, OSError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise LearnerError(
                f"thompson: cannot read learner blob ({len(blob)} bytes): {exc}"
            ) from exc
        for arm in learner._stats:
            learner._refresh(arm)
        return learner

    def _context(self, features: np.ndarray, where: str) -> np.ndarray:
        """Validate features and append the bias term; fixes the dimension on first use."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise LearnerError(f"thompson {where}: features must be a finite 1-D vector, got {x!r}")
        if self._dim is None:
            self._dim = int(x.shape[0])
        elif x.shape[0] != self._dim:
            raise LearnerError(
                f"thompson {where}: features have length {x.shape[0]} but this learner was "
                f"trained on length {self._dim}; start a new policy when features change"
            )
        out = np.empty(x.shape[0] + 1)
        out[:-1] = x
        out[-1] = 1.0
        return out

    def _prior_stats(self, arm: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """Prior precision and precision-weighted mean (only the bias has a non-zero mean)."""
        d = (self._dim or 0) + 1
        m0 = np.zeros(d)
        m0[-1] = self._prior_bias(arm)
        return np.eye(d) / self.config.prior_var, m0 / self.config.prior_var

    def _prior_bias(self, arm: tuple[str, str]) -> float:
        backends = self.arms[arm[0]]
        steps_below_largest = len(backends) - 1 - backends.index(arm[1])
        doubt = steps_below_largest / max(len(backends) - 1, 1)
        return self.config.prior_mean - self.config.escalation_prior * doubt

    def _prior_post(self, arm: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        a, b = self._prior_stats(arm)
        return (b * self.config.prior_var, np.linalg.inv(a))

    def _refresh(self, arm: tuple[str, str]) -> None:
        """Cache μ = A⁻¹b and Σ = A⁻¹ via the Cholesky factor of A (SPD by construction)."""
        a, b = self._stats[arm]
        try:
            l_inv = np.linalg.inv(np.linalg.cholesky(a))
        except np.linalg.LinAlgError as exc:
            raise LearnerError(f"thompson: posterior precision of arm {arm} is not SPD") from exc
        cov = l_inv.T @ l_inv
        self._post[arm] = (cov @ b, cov)
        self._sites.pop(arm[0], None)
