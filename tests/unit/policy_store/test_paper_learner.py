"""PaperLearner: the authors' per-call-site ResNet-18, gradient Thompson sampling, REINFORCE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policy_store.errors import LearnerError
from policy_store.learners import Example, LearnerConfig, item_features, load_learner, make_learner
from policy_store.learners.paper import PaperLearner, ResNet18, pixels

ARMS = {"find@2:4": ["small", "large"], "verify@3:8": ["small", "mid", "large"]}
COSTS = {"small": 0.1, "mid": 0.4, "large": 1.0}
SMALL = LearnerConfig(paper_width=8, paper_input=32)  # fast enough for unit tests
TINY = LearnerConfig(paper_width=4, paper_input=16)



def _image(rng: np.random.Generator, bright: bool, side: int = 40) -> np.ndarray:
    lo, hi = (150, 256) if bright else (0, 106)
    return rng.integers(lo, hi, size=(side, side, 3), dtype=np.uint8)


def _params(learner: PaperLearner, site: str) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in learner._site(site).net.parameters()])


def _grads(net: torch.nn.Module) -> torch.Tensor:
    """Every parameter's gradient (each must have one), flattened into one vector."""
    grads = []
    for p in net.parameters():
        assert p.grad is not None
        grads.append(p.grad.reshape(-1))
    return torch.cat(grads)


def test_pixels_resizes_to_flat_unit_pixels() -> None:
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[..., 0] = 255
    x = pixels(img, 16)
    assert x.shape == (3 * 16 * 16,) and x.dtype == np.float32
    assert np.allclose(x[:256], 1.0) and np.allclose(x[256:], 0.0)  # channels first
    with pytest.raises(LearnerError, match=r"\(H, W, 3\)"):
        pixels(np.zeros((8, 8)), 16)


def test_item_features_are_the_pixels_at_the_configured_size() -> None:
    learner = make_learner("paper", SMALL, ARMS, COSTS)
    assert isinstance(learner, PaperLearner)
    image = _image(np.random.default_rng(2), True)
    x = item_features(learner, image)
    assert np.array_equal(x, pixels(image, SMALL.paper_input)) and x.shape == (learner.feature_dim,)


def test_choose_returns_a_candidate_with_a_propensity() -> None:
    learner = make_learner("paper", SMALL, ARMS, COSTS)
    assert learner.feature_kind == "pixels"
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = pixels(_image(rng, bool(rng.random() < 0.5)), 32)
        for site, candidates in ARMS.items():
            choice = learner.choose(site, x, rng)
            assert choice.backend in candidates
            assert 0.0 < choice.propensity <= 1.0
    single = make_learner("paper", SMALL, {"q@1:1": ["small"]}, COSTS)
    assert single.choose("q@1:1", x, rng).propensity == 1.0


def test_sigma_is_the_gradient_norm_weighted_by_u_and_drives_the_noise() -> None:
    cfg = TINY.model_copy(update={"n_propensity_samples": 8, "lam": 0.5})
    learner = make_learner("paper", cfg, ARMS, COSTS)
    assert isinstance(learner, PaperLearner)
    x = pixels(_image(np.random.default_rng(1), True), 16)
    site = "verify@3:8"
    net = learner._site(site).net

    def hand(u: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        net.eval()
        out = net(torch.from_numpy(x).reshape(1, 3, 16, 16))[0]
        sig = []
        for k in range(3):
            net.zero_grad()
            out[k].backward(retain_graph=True)
            g = _grads(net).double()
            sig.append(math.sqrt(1e-4 * float(torch.sum(g * g / u.double()))))
        net.zero_grad()
        return out.detach().double().numpy(), np.array(sig)

    # U starts at λ_reg, so σ_k = sqrt(λ_reg·Σg²/λ_reg) = ‖∂f_k/∂θ‖.
    centre, sigma = learner.sigmas(site, x)
    want_centre, want_sigma = hand(torch.full_like(learner._site(site).u, 1e-4))
    np.testing.assert_allclose(centre, want_centre, rtol=1e-6)
    np.testing.assert_allclose(sigma, want_sigma, rtol=1e-4)
    assert (sigma > 0).all()

    # choose(): argmax of f + ν·σ·ε − λ·cost with ε from the caller's rng; propensity from
    # the n extra rows of the same draw.
    eps = np.random.default_rng(7).standard_normal((9, 3))
    scores = centre + 0.1 * sigma * eps - 0.5 * np.array([0.1, 0.4, 1.0])
    picks = scores.argmax(axis=1)
    choice = learner.choose(site, x, np.random.default_rng(7))
    assert choice.backend == ARMS[site][picks[0]]
    assert choice.propensity == max(np.count_nonzero(picks[1:] == picks[0]) / 8, 1 / 8)

    # U += g² of the chosen arm's gradient when the site ran: that arm's σ shrinks.
    u0 = learner._site(site).u.clone()
    learner.update([Example(site, "mid", x, 0.0, 1.0, 0.4, item_id="a")])
    u1 = learner._site(site).u
    net.eval()
    out = net(torch.from_numpy(x).reshape(1, 3, 16, 16))[0]
    net.zero_grad()
    out[1].backward()
    g = _grads(net)
    net.zero_grad()
    torch.testing.assert_close(u1, u0 + g * g)
    _, after = learner.sigmas(site, x)
    np.testing.assert_allclose(after, hand(u1)[1], rtol=1e-4)
    assert after[1] < 0.2 * sigma[1]  # the observed direction is now known


def test_reinforce_learns_which_arm_each_kind_of_image_needs() -> None:
    """Bright images: arm 0 is right; dark: arm 1. Loss only (λ = 0), equal costs."""
    learner = make_learner("paper", SMALL.model_copy(update={"lam": 0.0}),
                           {"s": ["a0", "a1"]}, {"a0": 0.0, "a1": 0.0})
    rng = np.random.default_rng(0)
    rates = []
    for rnd in range(3):  # 192 items, REINFORCE after every 64
        examples, right = [], 0
        for j in range(64):
            bright = bool(rng.random() < 0.5)
            x = pixels(_image(rng, bright, 32), 32)
            choice = learner.choose("s", x, rng)
            ok = (choice.backend == "a0") == bright
            right += ok
            examples.append(Example("s", choice.backend, x, 0.0 if ok else -1.0,
                                    choice.propensity, 0.0, item_id=f"{rnd}.{j}"))
        learner.update(examples)
        rates.append(right / 64)
    assert rates[0] < 0.7  # untrained: about chance
    assert rates[-1] > 0.8, rates
    assert learner.training_flops() > 0  # type: ignore[attr-defined]


def test_buffer_trains_every_period_items_and_skips_sites_that_did_not_run() -> None:
    cfg = TINY.model_copy(update={"paper_period": 4, "paper_batch": 2, "paper_epochs": 1})
    learner = make_learner("paper", cfg, ARMS, COSTS)
    assert isinstance(learner, PaperLearner)
    rng = np.random.default_rng(3)
    xs = [pixels(_image(rng, i % 2 == 0), 16) for i in range(5)]
    find0, verify0 = _params(learner, "find@2:4"), _params(learner, "verify@3:8")

    def ran(i: int) -> list[Example]:  # only find@2:4 runs; no item_id: keyed by pixels
        return [Example("find@2:4", "small", xs[i], -1.0, 0.5, 0.1)]

    learner.update(ran(0) + ran(0) + ran(1))  # a site listed twice for one item counts once
    assert len(learner._pending_items) == 2 and len(learner._site("find@2:4").rewards) == 2
    learner = load_learner("paper", learner.to_bytes(), cfg, ARMS, COSTS)  # buffer persists
    assert isinstance(learner, PaperLearner)
    learner.update(ran(2))
    assert len(learner._site("find@2:4").rewards) == 3
    torch.testing.assert_close(_params(learner, "find@2:4"), find0)  # not yet trained
    learner.update(ran(3))  # 4th distinct item: REINFORCE, then the buffer is cleared
    assert learner._pending_items == [] and learner._site("find@2:4").rewards == []
    assert not torch.allclose(_params(learner, "find@2:4"), find0)
    torch.testing.assert_close(_params(learner, "verify@3:8"), verify0)  # did not run
    assert learner._site("verify@3:8").opt is None  # no optimiser step at all
    flops = learner.training_flops()
    assert flops == pytest.approx(4 * learner._per_sample_train_flops())
    learner.update(ran(4))
    assert len(learner._pending_items) == 1 and learner.training_flops() == flops


def test_round_trip_keeps_weights_u_optimiser_and_buffer() -> None:
    cfg = TINY.model_copy(update={"paper_period": 3, "paper_batch": 2, "paper_epochs": 1})
    learner = make_learner("paper", cfg, ARMS, COSTS)
    rng = np.random.default_rng(4)
    xs = [pixels(_image(rng, i % 2 == 0), 16) for i in range(5)]
    examples = [Example(site, ARMS[site][i % 2], x, -float(i % 2), 0.5, 0.1, item_id=str(i))
                for i, x in enumerate(xs) for site in ARMS]
    learner.update(examples[:8])  # 4 items: one REINFORCE step, one item pending
    blob = learner.to_bytes()
    restored = load_learner("paper", blob, cfg, ARMS, COSTS)
    fresh = make_learner("paper", cfg, ARMS, COSTS)
    assert restored.to_bytes() == blob

    def picks(lr: object) -> list[tuple[str, float]]:
        r = np.random.default_rng(5)
        return [(c.backend, c.propensity) for x in xs for site in ARMS
                for c in (lr.choose(site, x, r),)]  # type: ignore[attr-defined]

    assert picks(restored) == picks(learner)
    assert picks(fresh) != picks(learner)
    # Training continues identically (AdamW moments and the pending item came along).
    learner.update(examples[8:])
    restored.update(examples[8:])
    assert restored.to_bytes() == learner.to_bytes()
    with pytest.raises(LearnerError, match="cannot read learner blob"):
        load_learner("paper", b"not safetensors", cfg, ARMS, COSTS)
    with pytest.raises(LearnerError, match="start a new policy"):
        load_learner("paper", blob, cfg.model_copy(update={"paper_width": 8}), ARMS, COSTS)


def test_unknown_call_site_and_bad_features_raise() -> None:
    learner = make_learner("paper", TINY, ARMS, COSTS)
    x = np.zeros(3 * 16 * 16, dtype=np.float32)
    with pytest.raises(LearnerError, match="unknown call site 'x@1:1'"):
        learner.choose("x@1:1", x, np.random.default_rng(0))
    with pytest.raises(LearnerError, match="item_features"):
        learner.choose("find@2:4", np.zeros(24), np.random.default_rng(0))
    with pytest.raises(LearnerError, match="not a candidate"):
        learner.update([Example("find@2:4", "mid", x, 0.0, 1.0, 0.4)])


def test_decision_flops_are_measured_and_grow_with_width() -> None:
    def flops(width: int, site: str | None = None) -> float:
        cfg = LearnerConfig(paper_width=width, paper_input=32)
        learner = make_learner("paper", cfg, ARMS, COSTS)
        return learner.decision_flops(site)  # type: ignore[attr-defined]

    two, three = flops(8, "find@2:4"), flops(8, "verify@3:8")
    assert 0 < two < three and flops(8) == three  # None: the site with most candidates
    assert flops(16, "find@2:4") > 3 * two
    # Forward + one backward per arm: between (1 + K) and (1 + 2K) forwards.
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        ResNet18(2, 8).eval()(torch.zeros(1, 3, 32, 32))
    fwd = counter.get_total_flops()
    assert 3 * fwd <= two <= 5 * fwd
    single = make_learner("paper", TINY, {"q": ["small"]}, COSTS)
    assert single.decision_flops() == 0.0  # type: ignore[attr-defined]
