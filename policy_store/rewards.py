"""Item losses and their split into per-call-site learner examples.

Paper reward per executed call site i of an item: r_i = -λ·cost_i - loss/N, N = the
number of distinct call sites that ran. Examples carry only the -loss/N part and the
cost; learners apply λ themselves because cost is known exactly at choice time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from policy_store.answers import normalise_answer
from policy_store.errors import RewardError
from policy_store.learners.base import Example
from policy_store.learners.config import LearnerConfig
from storage.records import RungRecord

#: (call_site, backend, cost, features, propensity) of one executed call site.
DecisionInput = tuple[str, str, float, np.ndarray, float]


def item_loss(
    answer: bool | str | None,
    label: bool | str,
    answer_type: Literal["bool", "str"],
    config: LearnerConfig,
) -> float:
    """Loss of one item's answer against its label.

    bool: 0 when right, ``fn_weight`` for a missed positive (label yes), ``fp_weight``
    for a false positive (label no). str: 0/1 on normalised equality. A failed item
    (``answer is None``) is always wrong.
    """
    got, want = normalise_answer(answer), normalise_answer(label)
    if want is None:
        raise RewardError("label is None; labels must be bool or str")
    if answer_type == "str":
        return 0.0 if got == want else 1.0
    if answer_type != "bool":
        raise RewardError(f"answer_type {answer_type!r} is not 'bool' or 'str'")
    if want not in ("yes", "no"):
        raise RewardError(f"bool query has label {label!r}; expected yes/no/true/false")
    if got == want:
        return 0.0
    return config.fn_weight if want == "yes" else config.fp_weight


def split_reward(
    decisions: list[DecisionInput], loss: float, item_id: str = "",
    rungs: Mapping[str, tuple[RungRecord, ...]] | None = None, label: bool | str | None = None,
) -> list[Example]:
    """One Example per executed call site with reward -loss/N, tagged with ``item_id``, the
    item's ``label`` and each site's ``rungs`` (by call site; none where not given).

    A call site listed twice with the same backend counts once; listed with two
    different backends it is an error (one decision per call site per item).
    """
    seen: dict[str, DecisionInput] = {}
    for decision in decisions:
        site, backend = decision[0], decision[1]
        if site in seen and seen[site][1] != backend:
            raise RewardError(
                f"call site {site!r} appears with backends {seen[site][1]!r} and {backend!r} "
                "for one item; the ledger keeps one decision per call site per item"
            )
        seen.setdefault(site, decision)
    if not seen:
        return []
    reward = -float(loss) / len(seen)
    return [
        Example(
            call_site=site,
            backend=backend,
            features=np.asarray(features, dtype=np.float64),
            reward=reward,
            propensity=float(propensity),
            cost=float(cost),
            item_id=item_id,
            rungs=rungs.get(site, ()) if rungs else (),
            label=label,
        )
        for site, backend, cost, features, propensity in seen.values()
    ]
