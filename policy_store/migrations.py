"""Bring a policy store file written by an older schema up to ``schema.SCHEMA_VERSION``.

``PolicyStore.init`` runs ``migrate`` in the transaction that creates missing tables, so a
file is migrated whole or not at all. A file without a ``schema_version`` row predates
versioning (version 1) when it already had tables, else it was just created (current).

Version 1 → 2 (label versions): the labels already in the ledger become each item's first
label version, and every labelled item of a batch in ``learned_batches`` counts as learned
by the version that learned the batch, so no label is trained on again after the upgrade.
(Version 1 learned a batch once, from the labels it had then; a label that arrived or
changed later is indistinguishable here, so it too counts as learned.) ``feedback_state``
starts empty: the next feedback run re-reads every batch and keeps ledger rows that match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policy_store import schema
from policy_store.bulk import bulk_insert
from policy_store.errors import PolicyStoreError
from policy_store.versions import utcnow


def label_hash(text: str) -> str:
    """The content hash of a normalised label text (a label version's identity with ``seq``)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _v1_to_v2(conn: Connection) -> None:
    now = utcnow()
    lab = schema.labels
    rows = conn.execute(sa.select(lab.c.stream, lab.c.batch, lab.c.item_id, lab.c.answer)).all()
    bulk_insert(conn, schema.label_versions, [
        {"stream": r.stream, "batch": r.batch, "item_id": r.item_id, "seq": 1, "answer": r.answer,
         "label_hash": label_hash(r.answer), "seen_at": now} for r in rows])
    lb, res = schema.learned_batches, schema.results
    learned = conn.execute(
        sa.select(lb.c.stream, lb.c.policy, lb.c.batch, res.c.item_id, lb.c.version)
        .join(res, sa.and_(res.c.stream == lb.c.stream, res.c.policy == lb.c.policy,
                           res.c.batch == lb.c.batch))
        .join(lab, sa.and_(lab.c.stream == res.c.stream, lab.c.batch == res.c.batch,
                           lab.c.item_id == res.c.item_id))).all()
    bulk_insert(conn, schema.learned_labels, [
        {"stream": r.stream, "policy": r.policy, "batch": r.batch, "item_id": r.item_id, "seq": 1,
         "version": r.version, "learned_at": now} for r in learned])


#: STEPS[v] migrates a file at version v to v + 1.
STEPS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}


def migrate(conn: Connection, had_tables: bool) -> list[int]:
    """Apply the steps from the file's version to ``SCHEMA_VERSION``; the versions reached.

    ``had_tables``: the file had the store's tables before this ``init`` created missing ones.

    Raises:
        PolicyStoreError: the file was written by a newer schema than this code knows.
    """
    sv = schema.schema_version
    found = conn.execute(sa.select(sa.func.max(sv.c.version))).scalar()
    if found is None:
        found = 1 if had_tables else schema.SCHEMA_VERSION
        if found == schema.SCHEMA_VERSION:
            conn.execute(sa.insert(sv), [{"version": found, "applied_at": utcnow()}])
    if found > schema.SCHEMA_VERSION:
        raise PolicyStoreError(
            f"the policy store has schema version {found}, newer than this fmp's "
            f"{schema.SCHEMA_VERSION}; upgrade fmp or use another --db")
    reached: list[int] = []
    for version in range(found, schema.SCHEMA_VERSION):
        STEPS[version](conn)
        conn.execute(sa.insert(sv), [{"version": version + 1, "applied_at": utcnow()}])
        reached.append(version + 1)
    return reached
