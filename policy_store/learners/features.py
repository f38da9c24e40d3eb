"""An item's features for a learner, computed from the item's image: one function for all callers.

The flows (``stream_batch``) and the benchmark harness both call ``item_features``; the flows
store its output in ``ResultRow.features``, so feedback later trains the learner on the same
vector it chose with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modules import embedding
from policy_store.errors import LearnerError
from policy_store.learners.base import FeatureKind, Learner
from policy_store.learners.config import LearnerConfig


def item_features(learner: Learner, image: np.ndarray) -> np.ndarray:
    """The features ``learner`` reads for one (H, W, 3) uint8 RGB item image."""
    return features_of(learner.feature_kind, image, learner.config)


def items_features(learner: Learner, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``item_features`` of many images at once (the same values; an embedding learner's are
    computed for all images of one shape together, ``modules.embedding.embed_many``)."""
    if learner.feature_kind == "embedding":
        return list(embedding.embed_many(images).astype(np.float64))
    return [item_features(learner, image) for image in images]


def features_of(kind: FeatureKind, image: np.ndarray, config: LearnerConfig) -> np.ndarray:
    """Features of kind ``kind`` (see ``FeatureKind``) for one item image.

    ``"embedding"``: ``modules.embedding.embed(image)`` as float64 (``embedding.DIM`` values).
    ``"pixels"``: ``policy_store.learners.paper.pixels(image, config.paper_input)``, float32
    (imports torch, which the learner reading them needs anyway).
    """
    if kind == "embedding":
        return embedding.embed(image).astype(np.float64)
    if kind == "pixels":
        from policy_store.learners.paper import pixels

        return pixels(image, config.paper_input)
    raise LearnerError(f"unknown feature kind {kind!r}; valid: embedding, pixels")
