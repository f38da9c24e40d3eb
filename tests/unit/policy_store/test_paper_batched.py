"""The paper learner's batched decisions and updates against its per-item path."""

from __future__ import annotations

import numpy as np
import torch

from policy_store.learners.base import Example
from policy_store.learners.config import LearnerConfig
from policy_store.learners.paper import PaperLearner, ResNet18, per_sample_grads

ARMS = {"s": ["a", "b", "c"], "t": ["a", "b"], "one": ["a"]}
COSTS = {"a": 0.1, "b": 0.2, "c": 0.3}


def learner() -> PaperLearner:
    return PaperLearner(LearnerConfig(paper_width=4, paper_input=16, lam=1.0), ARMS, COSTS)


def items(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(3 * 16 * 16, dtype=np.float32) for _ in range(n)]


def test_per_sample_gradients_equal_one_backward_pass_per_sample():
    torch.manual_seed(0)
    net = ResNet18(3, 4)
    net.reset(torch.Generator().manual_seed(1))
    net.eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(5, 3, 16, 16)
    w = torch.zeros(5, 3)
    w[torch.arange(5), torch.tensor([0, 2, 1, 1, 0])] = 1.0
    out, (grads,) = per_sample_grads(net, x, [w])
    params = list(net.parameters())
    for i in range(5):
        with torch.enable_grad():
            single = net(x[i:i + 1])[0]
            ref = torch.autograd.grad((single * w[i]).sum(), params)
        assert torch.allclose(out[i], single.detach(), atol=1e-5)
        for g, r in zip(grads, ref, strict=True):
            assert torch.allclose(g[i], r.reshape(-1), rtol=1e-4, atol=1e-6)


def test_a_prefetched_batch_chooses_and_learns_as_item_by_item():
    xs = items(24)
    rng = np.random.default_rng(3)
    examples = [Example(site, ARMS[site][int(rng.integers(len(ARMS[site])))], x, float(rng.normal()),
                        1.0, 0.1, f"i{k}") for k, x in enumerate(xs) for site in ARMS]
    one, batched = learner(), learner()
    batched.prefetch(xs)  # from now on its updates are batched too
    for lrn in (one, batched):
        lrn.config = lrn.config.model_copy(update={"paper_period": 16})  # a REINFORCE step mid-update
        lrn.update(examples)
    for site in ("s", "t"):
        assert torch.allclose(one._sites[site].u, batched._sites[site].u, rtol=1e-4)
        for p, q in zip(one._sites[site].net.parameters(), batched._sites[site].net.parameters(), strict=True):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)
    fresh = items(24, seed=1)
    batched.prefetch(fresh)
    for k, x in enumerate(fresh):
        for site in ARMS:
            a = one.choose(site, x, np.random.default_rng(k))
            b = batched.choose(site, x, np.random.default_rng(k))
            assert a.backend == b.backend and abs(a.propensity - b.propensity) < 1e-9
    assert set(batched._batch_scores) == {"s", "t"}  # one batch pass per multi-arm site
    batched.update([])
    assert batched._batch is None  # an update drops the prefetched scores
