"""LearnerConfig: the hyper-parameters every learner reads (unused fields are ignored)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LearnerConfig(BaseModel):
    """Frozen learner settings; stored as JSON next to every policy version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lam: float = Field(
        1.0,
        ge=0.0,
        description="Cost weight λ: reward = -λ·cost - loss/N per executed call site.",
    )
    seed: int = Field(0, description="Seed for the numpy Generator the caller builds for choose().")
    prior_mean: float = Field(
        0.0,
        description="Prior mean of the loss part of the reward (-loss/N) for every arm; "
        "0.0 is optimistic, so cost decides until losses are observed.",
    )
    escalation_prior: float = Field(
        0.0,
        ge=0.0,
        description="Prior doubt about cheaper arms: arm k of K (0 = cheapest) starts with loss "
        "part prior_mean - escalation_prior·(K-1-k)/(K-1), so a new policy starts on the largest "
        "backend and moves down as cheaper ones prove right. 0 treats all arms alike.",
    )
    prior_var: float = Field(
        1.0, gt=0.0, description="Prior variance of each regression weight (Thompson)."
    )
    noise_var: float = Field(
        0.25, gt=0.0, description="Observation noise variance σ² of the reward (Thompson)."
    )
    n_propensity_samples: int = Field(
        32, ge=1, description="Extra posterior draws used to estimate a choice's propensity."
    )
    explore: float = Field(
        1.0, ge=0.0, description="Scale on posterior sampling; 0 gives the greedy posterior mean."
    )
    fn_weight: float = Field(
        5.0, ge=0.0, description="Loss of a missed positive (label yes, answer not yes)."
    )
    fp_weight: float = Field(
        1.0, ge=0.0, description="Loss of a false positive (label no, answer not no)."
    )
    pins: dict[str, str] = Field(
        default_factory=dict,
        description='Fixed learner: call_site -> backend, or "*" -> backend for all other sites.',
    )
    # --- paper learner (policy_store/learners/paper.py): the authors' policy, re-implemented ---
    paper_width: int = Field(
        16, ge=1, description="Paper learner: base channels of the per-call-site ResNet-18 "
        "(64 = the real ResNet-18; smaller keeps CPU decisions cheap)."
    )
    paper_input: int = Field(
        64, ge=8, description="Paper learner: side of the square RGB image the network sees "
        "(the paper uses 256)."
    )
    paper_nu: float = Field(
        0.1, ge=0.0, description="Paper learner: ν, scale of the Thompson noise ν·σ_k."
    )
    paper_lambda_reg: float = Field(
        1e-4, gt=0.0, description="Paper learner: λ_reg in σ_k² = λ_reg·Σ g²/U and U's start."
    )
    paper_period: int = Field(
        64, ge=1, description="Paper learner: REINFORCE runs every this many labelled items."
    )
    paper_epochs: int = Field(5, ge=1, description="Paper learner: REINFORCE epochs per update.")
    paper_batch: int = Field(16, ge=1, description="Paper learner: REINFORCE mini-batch size.")
    paper_lr: float = Field(1e-3, gt=0.0, description="Paper learner: AdamW learning rate.")
    paper_baseline: Literal["mean", "none"] = Field(
        "mean", description="Paper learner: REINFORCE baseline; 'mean' subtracts the buffer's "
        "mean reward per call site, 'none' is the authors' code (no baseline)."
    )
    # --- cascade learner (policy_store/learners/cascade.py): call-site cascades ---
    cascade_z: float = Field(
        1.0, ge=0.0, description="Cascade: standard errors added to each confidence bin's estimated "
        "disagreement rate (pessimism; with no evidence every answer escalates)."
    )
    cascade_audit: float = Field(
        0.05, ge=0.0, le=1.0, description="Cascade: share of trusted answers escalated anyway (and of "
        "items started on the cheapest rung) to keep calibrating, scaled down for costly rungs."
    )
    cascade_audit_cost: float = Field(
        0.01, gt=0.0, description="Cascade: next-rung cost (monolithic calls) above which the audit "
        "share shrinks in proportion."
    )
    cascade_pooled_weight: float = Field(
        100.0, ge=0.0, description="Cascade: at most this many answers' worth of the function's pooled "
        "agreement evidence stands beside a call site's own, per rung and polarity (the pooled "
        "evidence is a prior the site's own answers overrule)."
    )
    cascade_min_evidence: int = Field(
        50, ge=0, description="Cascade: answers a rung must have given at a call site before an item "
        "may start above it (skip a rung that rarely keeps its answer)."
    )
    # --- confirmed learner (policy_store/learners/confirmed.py): audited static configuration ---
    audit_start: float = Field(
        0.5, ge=0.0, le=1.0, description="Confirmed: the first version's rung on every call site, as a "
        "share of its ladder (0 cheapest, 1 largest); later versions carry their pins."
    )
