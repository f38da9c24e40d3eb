"""Errors raised by the policy store, the answer/reward helpers and the learners.

    PolicyStoreError
    ├── StoreLockedError (TimeoutError)    another process held the DuckDB file too long
    ├── StoreConflictError                 a DuckLake write lost to other writers every try
    ├── UnknownVersionError (LookupError)  a (stream, policy, version) never saved
    ├── AlreadyLearnedError (ValueError)   a batch's learner update was already saved
    ├── IngestError (ValueError)           a malformed ingest batch (duplicate item, ...)
    ├── QueryError (ValueError)            a user's SQL failed
    ├── AnswerError (TypeError)            an answer/label that cannot be normalised
    ├── RewardError (ValueError)           a label/answer_type/decision list not scorable
    └── LearnerError (ValueError)          unknown learner/arm/call site, bad blob
"""

from __future__ import annotations


class PolicyStoreError(Exception):
    """Root of the policy_store package's errors."""


class StoreLockedError(PolicyStoreError, TimeoutError):
    """Another process kept the database file locked for longer than ``lock_timeout_s``."""


class StoreConflictError(PolicyStoreError):
    """A DuckLake write conflicted with other writers' commits on every one of its attempts."""


class UnknownVersionError(PolicyStoreError, LookupError):
    """A policy version that does not exist was asked for."""


class AlreadyLearnedError(PolicyStoreError, ValueError):
    """A learner update for this (stream, policy, batch) was already saved."""


class IngestError(PolicyStoreError, ValueError):
    """An ingest batch is malformed; the message names the stream, batch and item."""


class QueryError(PolicyStoreError, ValueError):
    """A user's SQL statement failed."""


class AnswerError(PolicyStoreError, TypeError):
    """An answer or label has a type or value that cannot be normalised or scored."""


class RewardError(PolicyStoreError, ValueError):
    """A label, answer type or decision list cannot be turned into a loss or examples."""


class LearnerError(PolicyStoreError, ValueError):
    """A learner name, call site, arm, feature vector or serialised blob is invalid."""
