"""The paper's policy learner: per-call-site ResNet-18, gradient Thompson sampling, REINFORCE.

Nie et al. (arXiv 2504.07247) and the authors' public code route every call site with its own
CNN trained from scratch on the raw image. This module reproduces that method as a Learner:

- **Network.** One ResNet-18-topology CNN per call site (torchvision's layout in plain torch:
  7×7/2 stem conv + BN + ReLU + 3×3/2 max-pool, BasicBlock layers [2, 2, 2, 2] at widths
  w, 2w, 4w, 8w, global average pool, linear head), one output per candidate backend, random
  init (kaiming-normal convs, as torchvision), seeded by ``config.seed`` and the call site's
  name. ``paper_width`` = 64 is the real ResNet-18; ``paper_input`` is the image side.
  Features are raw pixels: ``pixels(image, size)`` (``feature_kind = "pixels"``; callers get
  them from ``policy_store.learners.features.item_features``).
- **Choosing (gradient-based Thompson sampling).** For the image x, outputs f_k(x) and, per
  arm k, the gradient g_k = ∂f_k/∂θ over all parameters (one backward pass per arm);
  σ_k² = λ_reg·Σ_j g_kj²/U_j with U a diagonal accumulator per call-site network (starts at
  λ_reg). Score_k = f_k(x) + ν·σ_k·ε_k − λ·cost_k, ε_k ~ N(0, 1); argmax. BatchNorm uses its
  running statistics here (eval mode), so choose() is a pure function of (state, x, rng).
  Propensity: the share of ``n_propensity_samples`` extra noise draws (same rng stream, as the
  thompson learner) whose argmax is the chosen arm, floored at 1/n.
- **U update.** ``update()`` adds g² of the chosen arm's output gradient to U for every executed
  call site (the authors add the g² they kept from selection; parameters only change at a
  REINFORCE step, so recomputing g at update time gives the same g within a period).
- **Learning (structured REINFORCE).** Executed call sites are buffered with reward
  r = −λ·cost + reward (``reward`` = −loss/N from policy_store.rewards). Once ``paper_period``
  (64) distinct items have been buffered, every call site with buffered samples is trained:
  ``paper_epochs`` (5) epochs over its buffer in arrival order (no shuffling, as the authors'
  code), mini-batches of ``paper_batch`` (16), AdamW (lr ``paper_lr``, persistent across
  updates and saved with the policy), loss = −mean((r − b)·log π(a|x)) with π = softmax of the
  site's outputs (BatchNorm in train mode; a single-sample mini-batch uses running statistics).
  Baseline b: the mean r of that site's buffer (``paper_baseline="mean"``, default) or 0
  (``"none"``, the authors' code). Then all buffers are cleared. Call sites that did not run
  have no samples and get no optimiser step. Behaviour-policy mismatch (choices come from
  Thompson sampling, not from π) is ignored, as in the paper.
- **Items.** An item is identified by ``Example.item_id``, or, when that is empty, by a hash of
  its feature vector (its pixels), so items are counted correctly across update() calls. Within
  one update() call, a call site listed twice for one item counts once (the first example).
- **Own compute.** ``decision_flops`` and ``training_flops`` are counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls, forward and backward).

Serialised with safetensors (tensors + a JSON header in its metadata; no pickle), including U,
the AdamW state, the pending buffer and the cumulative training FLOPs.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.flop_counter import FlopCounterMode

from policy_store.errors import LearnerError
from policy_store.learners.base import Choice, Example, FeatureKind, Learner
from policy_store.learners.config import LearnerConfig

_FORMAT = 1


def pixels(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> flat float32 (3·size·size,) in [0, 1], channels first."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise LearnerError(f"paper pixels: expected an (H, W, 3) image, got {img.shape}")
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0)
    t = t.permute(2, 0, 1).unsqueeze(0)
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    return t.clamp_(0.0, 1.0).reshape(-1).numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# ResNet-18 topology in plain torch
# ---------------------------------------------------------------------------------------------


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]) with base width ``width`` and ``n_out`` outputs."""

    def __init__(self, n_out: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, c_in = [], width
        for i in range(4):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(_BasicBlock(c_in, c_out, stride),
                                        _BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(c_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        logits: torch.Tensor = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return logits

    def reset(self, generator: torch.Generator) -> None:
        """torchvision's init (kaiming-normal fan-out convs, BN 1/0, default Linear), seeded."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu",
                                            generator=generator)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                    bound = 1.0 / math.sqrt(m.in_features)
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)


# ---------------------------------------------------------------------------------------------
# Per-sample gradients of a batch (eval mode: samples do not interact)
# ---------------------------------------------------------------------------------------------

_PARAMETRIC = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
#: per-sample gradient floats held at once (chunks of samples above it)
_PER_SAMPLE_FLOATS = 1 << 25


def _layer_grads(m: nn.Module, a: torch.Tensor, d: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each sample's gradient of one layer's parameters, (n, numel) in the parameter's own
    layout, from the layer's input ``a`` and the gradient ``d`` at its output."""
    n = a.shape[0]
    out: dict[int, torch.Tensor] = {}
    if isinstance(m, nn.Conv2d):  # per sample: output gradient × unfolded input
        cols = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding,  # type: ignore[arg-type]
                        stride=m.stride)
        out[id(m.weight)] = torch.einsum("nol,ncl->noc", d.reshape(n, d.shape[1], -1), cols).reshape(n, -1)
        if m.bias is not None:
            out[id(m.bias)] = d.sum((2, 3))
    elif isinstance(m, nn.BatchNorm2d):
        assert m.running_mean is not None and m.running_var is not None
        xhat = (a - m.running_mean[None, :, None, None]) / torch.sqrt(
            m.running_var[None, :, None, None] + m.eps)
        out[id(m.weight)] = (d * xhat).sum((2, 3))
        out[id(m.bias)] = d.sum((2, 3))
    else:
        assert isinstance(m, nn.Linear)
        out[id(m.weight)] = (d[:, :, None] * a[:, None, :]).reshape(n, -1)
        if m.bias is not None:
            out[id(m.bias)] = d
    return out


def per_sample_grads(net: ResNet18, x: torch.Tensor, weights: list[torch.Tensor]
                     ) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Outputs f(x) (n, k) of ``net`` in eval mode on a batch and, for each (n, k) weighting
    ``w`` of ``weights``, every sample's gradient of Σ_k w[i, k]·f_k(x_i) with respect to each
    parameter, (n, numel) per parameter in ``net.parameters()`` order.

    One forward pass and one backward pass per weighting for the whole batch: per-sample
    parameter gradients come from each layer's input and output gradient (convolutions via
    unfold, BatchNorm with its running statistics, the linear head), the same numbers as
    one backward pass per sample up to float rounding."""
    records: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        records.append((module, inputs[0], output))

    handles = [m.register_forward_hook(keep) for m in net.modules() if isinstance(m, _PARAMETRIC)]
    params = list(net.parameters())
    try:
        net.eval()
        with torch.enable_grad():
            out = net(x)
            outputs = [o for _, _, o in records]
            grads = []
            for i, w in enumerate(weights):
                deltas = torch.autograd.grad(out, outputs, grad_outputs=w,
                                             retain_graph=i < len(weights) - 1)
                by_param: dict[int, torch.Tensor] = {}
                for (m, a, _), d in zip(records, deltas, strict=True):
                    by_param.update(_layer_grads(m, a.detach(), d))
                grads.append([by_param[id(p)] for p in params])
    finally:
        for h in handles:
            h.remove()
    return out.detach(), grads


# ---------------------------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------------------------


@dataclass
class _Site:
    """One call site's sub-policy: network, U accumulator, optimiser, pending samples."""

    net: ResNet18
    u: torch.Tensor
    lr: float
    opt: torch.optim.AdamW | None = None  # made at the first REINFORCE step (AdamW is slow to
    # construct the first time in a process: it imports torch._dynamo)
    xs: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    inv_u: list[torch.Tensor] | None = None  # cache: 1/U split per parameter

    def optimizer(self) -> torch.optim.AdamW:
        if self.opt is None:
            # foreach: one kernel per step kind over all tensors; the same arithmetic as the
            # per-tensor loop (torch's CPU default), without its per-tensor overhead
            self.opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, foreach=True)
        return self.opt

    def inv_u_views(self) -> list[torch.Tensor]:
        if self.inv_u is None:
            sizes = [p.numel() for p in self.net.parameters()]
            self.inv_u = list(torch.split(1.0 / self.u, sizes))
        return self.inv_u


class PaperLearner(Learner):
    """The authors' policy: per-call-site ResNet-18, gradient Thompson sampling, REINFORCE."""

    name = "paper"
    feature_kind: ClassVar[FeatureKind] = "pixels"
    #: measured FLOPs shared by every learner of a process: (width, input, arms) → one
    #: decision; (width, input) → one training sample (the counts depend on nothing else)
    _DECISION_FLOPS: ClassVar[dict[tuple[int, int, int], float]] = {}
    _SAMPLE_TRAIN_FLOPS: ClassVar[dict[tuple[int, int], float]] = {}

    def __init__(
        self, config: LearnerConfig, arms: dict[str, list[str]], costs: dict[str, float]
    ) -> None:
        super().__init__(config, arms, costs)
        self._sites: dict[str, _Site] = {}
        self._pending_items: list[str] = []  # distinct item keys buffered since the last step
        self._training_flops = 0.0
        self._decision_flops: dict[int, float] = {}  # n_arms -> FLOPs of one decision
        self._sample_train_flops: float | None = None  # per sample, forward + backward
        # batched decisions (``prefetch``): the announced items, their positions, and per call
        # site f(x) and σ for all of them; ``_vectorised``: update() batches its gradients too
        self._batch: list[np.ndarray] | None = None
        self._batch_pos: dict[int, int] = {}
        self._batch_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._vectorised = False

    # -- features ---------------------------------------------------------------------------

    featurize = staticmethod(pixels)  # the older name; new callers use item_features

    @property
    def feature_dim(self) -> int:
        return 3 * self.config.paper_input**2

    def _image(self, features: np.ndarray, where: str) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.shape != (self.feature_dim,) or not np.isfinite(x).all():
            raise LearnerError(
                f"paper {where}: features must be a finite vector of 3·{self.config.paper_input}² "
                f"= {self.feature_dim} pixels from item_features (paper.pixels), got shape {x.shape}"
            )
        return x

    # -- sub-policies -----------------------------------------------------------------------

    def _site(self, call_site: str) -> _Site:
        """The call site's sub-policy, created (seeded, deterministic) on first use."""
        site = self._sites.get(call_site)
        if site is None:
            net = ResNet18(len(self.arms[call_site]), self.config.paper_width)
            gen = torch.Generator().manual_seed(
                (self.config.seed * 1_000_003 + zlib.crc32(call_site.encode())) % 2**63
            )
            net.reset(gen)
            net.eval()
            n_params = sum(p.numel() for p in net.parameters())
            u = torch.full((n_params,), self.config.paper_lambda_reg, dtype=torch.float32)
            site = _Site(net, u, self.config.paper_lr)
            self._sites[call_site] = site
        return site

    def _outputs_and_grads(
        self, net: ResNet18, x: np.ndarray, arms: list[int] | None = None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
        """Outputs f(x) (eval-mode BN) and, per k in ``arms`` (default all), the gradient
        ∂f_k/∂θ as one tensor per parameter (one backward pass per arm)."""
        size = self.config.paper_input
        params = list(net.parameters())
        inp = torch.from_numpy(x).reshape(1, 3, size, size)
        net.eval()
        with torch.enable_grad():
            out = net(inp)[0]
            ks = list(range(out.shape[0])) if arms is None else arms
            grads = [
                torch.autograd.grad(out[k], params, retain_graph=i < len(ks) - 1)
                for i, k in enumerate(ks)
            ]
        return out.detach(), grads

    def sigmas(self, call_site: str, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(f_k(x), σ_k) per candidate, σ_k = sqrt(λ_reg·Σ_j g_kj²/U_j), g_k = ∂f_k/∂θ."""
        self.candidates(call_site)
        site = self._site(call_site)
        out, grads = self._outputs_and_grads(site.net, self._image(features, "sigmas"))
        inv_u = site.inv_u_views()
        lam_reg = self.config.paper_lambda_reg
        sig = [
            math.sqrt(lam_reg * sum(float(torch.dot(gp.reshape(-1).square(), iu))
                                    for gp, iu in zip(g, inv_u, strict=True)))
            for g in grads
        ]
        return out.double().numpy(), np.array(sig)

    # -- batched decisions ------------------------------------------------------------------

    def prefetch(self, features: list[np.ndarray]) -> None:
        """Announce the items ``choose`` is asked about until the next ``update`` (the
        benchmark harness: one stream batch). The first ``choose`` at a call site then
        computes f(x) and σ for all of them at once (``per_sample_grads``: one forward and
        one backward pass per arm for the batch, instead of per item), and ``update``
        batches its gradients the same way from then on. Choices are those of the per-item
        path up to float rounding (a draw within ~1e-6 of a tie could go the other way)."""
        self._vectorised = True
        self._batch = list(features)
        self._batch_pos = {id(x): i for i, x in enumerate(self._batch)}
        self._batch_scores = {}

    def _prefetched(self, call_site: str, features: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if self._batch is None:
            return None
        i = self._batch_pos.get(id(features))
        if i is None or self._batch[i] is not features:
            return None
        if call_site not in self._batch_scores:
            xs = np.stack([self._image(x, "prefetch") for x in self._batch])
            self._batch_scores[call_site] = self._batch_sigmas(call_site, xs)
        centre, sigma = self._batch_scores[call_site]
        return centre[i], sigma[i]

    def _batch_sigmas(self, call_site: str, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sigmas`` of every row of ``xs``: (n, k) centres and (n, k) σ."""
        site = self._site(call_site)
        size, k = self.config.paper_input, len(self.arms[call_site])
        n_params = int(site.u.numel())
        inv_u = site.inv_u_views()
        step = max(1, min(len(xs), _PER_SAMPLE_FLOATS // n_params))
        centres, sigmas = [], []
        for start in range(0, len(xs), step):
            x = torch.from_numpy(xs[start:start + step]).reshape(-1, 3, size, size)
            n = x.shape[0]
            arms = [torch.zeros(n, k).index_fill_(1, torch.tensor([j]), 1.0) for j in range(k)]
            out, grads = per_sample_grads(site.net, x, arms)
            sq = torch.zeros(n, k, dtype=torch.float64)
            for j, g in enumerate(grads):
                for gp, iu in zip(g, inv_u, strict=True):
                    sq[:, j] += torch.mv(gp.square(), iu).double()
            centres.append(out.double().numpy())
            sigmas.append(torch.sqrt(self.config.paper_lambda_reg * sq).numpy())
        return np.concatenate(centres), np.concatenate(sigmas)

    # -- Learner contract -------------------------------------------------------------------

    def choose(self, call_site: str, features: np.ndarray, rng: np.random.Generator) -> Choice:
        """Gradient Thompson sampling; propensity from extra noise draws."""
        backends = self.candidates(call_site)
        x = self._image(features, f"choose({call_site!r})")
        if len(backends) == 1:
            return Choice(backends[0], 1.0)
        got = self._prefetched(call_site, features)
        centre, sigma = got if got is not None else self.sigmas(call_site, x)
        costs = np.array([self.costs[b] for b in backends], dtype=np.float64)
        n = self.config.n_propensity_samples
        # Row 0 is the choice, rows 1..n the propensity draws, from the same rng stream.
        draws = centre + self.config.paper_nu * sigma * rng.standard_normal((1 + n, len(backends)))
        picks = np.argmax(draws - self.config.lam * costs, axis=1)
        chosen = int(picks[0])
        propensity = max(np.count_nonzero(picks[1:] == chosen) / n, 1.0 / n)
        return Choice(backends[chosen], min(propensity, 1.0))

    def update(self, examples: list[Example]) -> None:
        """Buffer examples item by item (U += g² of the chosen arm); REINFORCE every period."""
        self._batch, self._batch_pos, self._batch_scores = None, {}, {}  # U and θ change below
        items: dict[str, dict[str, Example]] = {}
        for ex in examples:
            backends = self.candidates(ex.call_site)
            if ex.backend not in backends:
                raise LearnerError(
                    f"paper update: backend {ex.backend!r} is not a candidate of call site "
                    f"{ex.call_site!r} ({backends}); drop examples of removed backends"
                )
            if not (np.isfinite(ex.reward) and np.isfinite(ex.cost)):
                raise LearnerError(f"paper update: non-finite reward/cost at {ex.call_site!r}")
            x = self._image(ex.features, f"update({ex.call_site!r})")
            key = ex.item_id or "h:" + hashlib.sha1(x.tobytes()).hexdigest()
            items.setdefault(key, {}).setdefault(ex.call_site, ex)  # one per site and item
        segment: list[Example] = []  # observed in one batch, in order, before θ next changes
        for key, group in items.items():
            if self._vectorised:
                segment.extend(group.values())
            else:
                for ex in group.values():
                    self._observe(ex)
            if key not in self._pending_items:
                self._pending_items.append(key)
            if len(self._pending_items) >= self.config.paper_period:
                self._observe_many(segment)
                segment = []
                self._train()
        self._observe_many(segment)

    def _observe_many(self, examples: list[Example]) -> None:
        """``_observe`` for each example in order, the chosen arms' gradients computed per
        call site in batches (θ is the same for all of them)."""
        if not examples:
            return
        size = self.config.paper_input
        grads: dict[int, torch.Tensor] = {}  # example index -> flat gradient of its chosen arm
        by_site: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            if len(self.arms[ex.call_site]) > 1:
                by_site.setdefault(ex.call_site, []).append(i)
        for name, rows in by_site.items():
            site = self._site(name)
            backends = self.arms[name]
            step = max(1, min(len(rows), _PER_SAMPLE_FLOATS // int(site.u.numel())))
            for start in range(0, len(rows), step):
                part = rows[start:start + step]
                x = torch.from_numpy(np.stack([self._image(examples[i].features, "update")
                                               for i in part])).reshape(-1, 3, size, size)
                w = torch.zeros(len(part), len(backends))
                w[torch.arange(len(part)), [backends.index(examples[i].backend) for i in part]] = 1.0
                _, (g,) = per_sample_grads(site.net, x, [w])
                flat = torch.cat(g, dim=1)
                grads.update({i: flat[r] for r, i in enumerate(part)})
        for i, ex in enumerate(examples):
            site = self._site(ex.call_site)
            backends = self.arms[ex.call_site]
            if i in grads:
                site.u += grads[i].square()
                site.inv_u = None
            site.xs.append(self._image(ex.features, "update"))
            site.actions.append(backends.index(ex.backend))
            site.rewards.append(-self.config.lam * float(ex.cost) + float(ex.reward))

    def _observe(self, ex: Example) -> None:
        site = self._site(ex.call_site)
        backends = self.arms[ex.call_site]
        a = backends.index(ex.backend)
        x = self._image(ex.features, "update")
        if len(backends) > 1:
            _, (g,) = self._outputs_and_grads(site.net, x, [a])
            site.u += torch.cat([gp.reshape(-1) for gp in g]).square()
            site.inv_u = None
        site.xs.append(x)
        site.actions.append(a)
        site.rewards.append(-self.config.lam * float(ex.cost) + float(ex.reward))

    def _train(self) -> None:
        """REINFORCE on every site with buffered samples, then clear all buffers."""
        size, bs = self.config.paper_input, self.config.paper_batch
        for site in self._sites.values():
            n = len(site.rewards)
            if n == 0 or site.net.fc.out_features == 1:
                continue
            xs = torch.from_numpy(np.stack(site.xs)).reshape(n, 3, size, size)
            acts = torch.tensor(site.actions, dtype=torch.long)
            rs = torch.tensor(site.rewards, dtype=torch.float32)
            if self.config.paper_baseline == "mean":
                rs = rs - rs.mean()
            for _ in range(self.config.paper_epochs):
                for start in range(0, n, bs):
                    sl = slice(start, min(start + bs, n))
                    site.net.train(sl.stop - sl.start > 1)  # BN batch stats need > 1 sample
                    logp = torch.log_softmax(site.net(xs[sl]), dim=1)
                    loss = -(rs[sl] * logp[torch.arange(sl.stop - sl.start), acts[sl]]).mean()
                    opt = site.optimizer()
                    opt.zero_grad(set_to_none=True)
                    # torch leaves Tensor.backward unannotated
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
            site.net.eval()
            self._training_flops += self.config.paper_epochs * n * self._per_sample_train_flops()
        for site in self._sites.values():
            site.xs, site.actions, site.rewards = [], [], []
        self._pending_items = []

    # -- own compute ------------------------------------------------------------------------

    def decision_flops(self, call_site: str | None = None) -> float:
        """FLOPs of one choose(): one forward + one backward per arm, measured once per arm
        count with FlopCounterMode (conv/matmul, forward and backward). ``call_site=None``:
        the site with the most candidates. A single-candidate site decides for free (0.0)."""
        sites = [call_site] if call_site is not None else list(self.arms)
        k = max((len(self.candidates(s)) for s in sites), default=1)
        if k < 2:
            return 0.0
        if k not in self._decision_flops:
            shape = (self.config.paper_width, self.config.paper_input, k)
            if shape not in self._DECISION_FLOPS:
                net = ResNet18(k, self.config.paper_width)
                x = np.zeros(self.feature_dim, dtype=np.float32)
                with FlopCounterMode(display=False) as counter:
                    self._outputs_and_grads(net, x)
                self._DECISION_FLOPS[shape] = float(counter.get_total_flops())
            self._decision_flops[k] = self._DECISION_FLOPS[shape]
        return self._decision_flops[k]

    def training_flops(self) -> float:
        """Cumulative FLOPs of all REINFORCE steps so far: epochs × samples × the measured
        forward+backward FLOPs of one sample (conv/matmul; BN, softmax and AdamW not counted)."""
        return self._training_flops

    def _per_sample_train_flops(self) -> float:
        if self._sample_train_flops is None:
            shape = (self.config.paper_width, self.config.paper_input)
            if shape not in self._SAMPLE_TRAIN_FLOPS:
                net = ResNet18(2, self.config.paper_width)
                s = self.config.paper_input
                with FlopCounterMode(display=False) as counter:
                    net(torch.zeros(2, 3, s, s)).sum().backward()
                self._SAMPLE_TRAIN_FLOPS[shape] = float(counter.get_total_flops()) / 2
            self._sample_train_flops = self._SAMPLE_TRAIN_FLOPS[shape]
        return self._sample_train_flops

    # -- serialisation ----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """safetensors bytes: per-site weights, BN statistics, U, AdamW state and pending
        buffer; a JSON header in the metadata. No pickle."""
        from safetensors.torch import save

        names = sorted(self._sites)
        tensors: dict[str, torch.Tensor] = {}
        sites_meta = []
        for i, name in enumerate(names):
            site = self._sites[name]
            for key, t in site.net.state_dict().items():
                tensors[f"{i}.net.{key}"] = t.detach().clone().contiguous()
            tensors[f"{i}.u"] = site.u.clone()
            n_opt = 0
            for j, p in enumerate(site.net.parameters()):
                st = site.opt.state.get(p) if site.opt is not None else None
                if st:
                    n_opt += 1
                    for key in ("step", "exp_avg", "exp_avg_sq"):
                        tensors[f"{i}.opt.{j}.{key}"] = torch.as_tensor(st[key]).clone().reshape(-1)
            if site.rewards:
                tensors[f"{i}.buf.x"] = torch.from_numpy(np.stack(site.xs))
                tensors[f"{i}.buf.a"] = torch.tensor(site.actions, dtype=torch.int64)
                tensors[f"{i}.buf.r"] = torch.tensor(site.rewards, dtype=torch.float64)
            sites_meta.append({"site": name, "backends": self.arms[name], "opt": n_opt})
        meta = {
            "format": _FORMAT,
            "learner": self.name,
            "width": self.config.paper_width,
            "input": self.config.paper_input,
            "sites": sites_meta,
            "pending_items": self._pending_items,
            "training_flops": self._training_flops,
        }
        return save(tensors, metadata={"fmp": json.dumps(meta, sort_keys=True)})

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        config: LearnerConfig,
        arms: dict[str, list[str]],
        costs: dict[str, float],
    ) -> PaperLearner:
        """Rebuild from ``to_bytes``; call sites absent from the blob start fresh, sites no
        longer in ``arms`` are dropped."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        learner = cls(config, arms, costs)
        try:
            tensors = load(blob)
            meta = json.loads(_metadata(blob)["fmp"])
            if meta.get("format") != _FORMAT or meta.get("learner") != cls.name:
                raise ValueError(f"header is not a paper format-{_FORMAT} blob")
            if (meta["width"], meta["input"]) != (config.paper_width, config.paper_input):
                raise LearnerError(
                    f"paper: blob has width {meta['width']}, input {meta['input']} but the config "
                    f"asks for {config.paper_width}, {config.paper_input}; start a new policy"
                )
            for i, entry in enumerate(meta["sites"]):
                name = entry["site"]
                if name not in arms:
                    continue
                if list(entry["backends"]) != list(arms[name]):
                    raise LearnerError(
                        f"paper: call site {name!r} was trained on backends {entry['backends']} "
                        f"but now has {arms[name]}; start a new policy when candidates change"
                    )
                site = learner._site(name)
                prefix = f"{i}.net."
                site.net.load_state_dict(
                    {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                )
                site.u, site.inv_u = tensors[f"{i}.u"].clone(), None
                for j, p in enumerate(site.net.parameters()):
                    if f"{i}.opt.{j}.step" in tensors:
                        site.optimizer().state[p] = {
                            "step": tensors[f"{i}.opt.{j}.step"].reshape(()).clone(),
                            "exp_avg": tensors[f"{i}.opt.{j}.exp_avg"].reshape(p.shape).clone(),
                            "exp_avg_sq":
                                tensors[f"{i}.opt.{j}.exp_avg_sq"].reshape(p.shape).clone(),
                        }
                if f"{i}.buf.r" in tensors:
                    site.xs = list(tensors[f"{i}.buf.x"].numpy().copy())
                    site.actions = [int(a) for a in tensors[f"{i}.buf.a"]]
                    site.rewards = [float(r) for r in tensors[f"{i}.buf.r"]]
            learner._pending_items = list(meta["pending_items"])
            learner._training_flops = float(meta["training_flops"])
        except LearnerError:
            raise
        except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
            raise LearnerError(f"paper: cannot read learner blob ({len(blob)} bytes): {exc}") \
                from exc
        return learner


def _metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (8-byte little-endian header length, JSON)."""
    if len(blob) < 8:
        raise ValueError("too short for a safetensors blob")
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n].decode())
    return dict(header.get("__metadata__") or {})
