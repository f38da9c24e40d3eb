"""Policy store: programs, backends, policy versions, the cost ledger, and learners.

``PolicyStore`` (and SQLAlchemy with it) is imported lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policy_store.answers import normalise_answer
from policy_store.errors import (
    AlreadyLearnedError,
    AnswerError,
    IngestError,
    LearnerError,
    PolicyStoreError,
    QueryError,
    RewardError,
    StoreConflictError,
    StoreLockedError,
    UnknownVersionError,
)
from policy_store.records import (
    BackendCost,
    CallSiteInfo,
    IngestBatch,
    IngestSummary,
    PolicyVersion,
)

if TYPE_CHECKING:  # type checkers see the store; at run time it loads on first access
    from policy_store.store import PolicyStore

_LAZY = {"PolicyStore"}


def __getattr__(name: str) -> object:
    # The store pulls in SQLAlchemy; import it only when asked so workers that need
    # just the learners stay light.
    if name in _LAZY:
        from policy_store import store

        return getattr(store, name)
    raise AttributeError(f"module 'policy_store' has no attribute {name!r}")

__all__ = [
    "AlreadyLearnedError", "AnswerError", "BackendCost", "CallSiteInfo", "IngestBatch",
    "IngestError", "IngestSummary", "LearnerError", "PolicyStore", "PolicyStoreError",
    "PolicyVersion", "QueryError", "RewardError", "StoreConflictError", "StoreLockedError",
    "UnknownVersionError",
    "normalise_answer",
]
