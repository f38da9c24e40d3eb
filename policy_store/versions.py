"""Policy versions and learned-batch bookkeeping (mixed into PolicyStore)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from policy_store import schema
from policy_store.bulk import bulk_insert, bulk_update
from policy_store.errors import AlreadyLearnedError, UnknownVersionError
from policy_store.lake import claim
from policy_store.records import LearningStep, PolicyVersion
from storage.records import DecisionRecord

T = TypeVar("T")
_V = schema.policy_versions
_L = schema.learned_batches


def utcnow() -> datetime:
    """Naive UTC now (the store's timestamp convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def version_from_row(row: Any) -> PolicyVersion:
    """A ``policy_versions`` row (any object with its columns as attributes) as a PolicyVersion."""
    return PolicyVersion(
        stream=row.stream, policy=row.policy, version=row.version, learner=row.learner,
        config_json=row.config_json, params=bytes(row.params), parent=row.parent,
        created_at=row.created_at.replace(tzinfo=UTC), note=row.note,
    )


def _select(stream: str, policy: str) -> sa.Select[*tuple[Any, ...]]:
    return sa.select(_V).where(_V.c.stream == stream, _V.c.policy == policy)


def _fetch(conn: Connection, stream: str, policy: str, version: int) -> PolicyVersion:
    row = conn.execute(_select(stream, policy).where(_V.c.version == version)).first()
    if row is None:
        known = conn.execute(
            sa.select(_V.c.version).where(_V.c.stream == stream, _V.c.policy == policy)
            .order_by(_V.c.version)).scalars().all()
        listed = ", ".join(f"v{v}" for v in known) or "none (run training or feedback first)"
        raise UnknownVersionError(
            f"stream {stream!r}, policy {policy!r} has no version {version}; "
            f"known versions: {listed}"
        )
    return version_from_row(row)


def _learned_row(conn: Connection, stream: str, policy: str, batch: str) -> Any:
    stmt = sa.select(_L).where(_L.c.stream == stream, _L.c.policy == policy, _L.c.batch == batch)
    return conn.execute(stmt).first()


class _Runner(Protocol):
    """``PolicyStore._run``: ``fn`` on a connection, in a transaction; its result."""

    def __call__(self, fn: Callable[[Connection], T]) -> T: ...


class VersionsMixin:
    """Methods over policy_versions and learned_batches; needs ``_run`` from PolicyStore."""

    _run: _Runner

    def latest_version(self, stream: str, policy: str) -> PolicyVersion | None:
        """The highest version of (stream, policy), or None when none was saved."""
        stmt = _select(stream, policy).order_by(_V.c.version.desc()).limit(1)
        row = self._run(lambda conn: conn.execute(stmt).first())
        return None if row is None else version_from_row(row)

    def get_version(self, stream: str, policy: str, version: int) -> PolicyVersion:
        """One version; UnknownVersionError listing the known versions otherwise."""
        return self._run(lambda conn: _fetch(conn, stream, policy, version))

    def list_versions(self, stream: str, policy: str) -> list[PolicyVersion]:
        """All versions of (stream, policy), oldest first."""
        stmt = _select(stream, policy).order_by(_V.c.version)
        return [version_from_row(r) for r in self._run(lambda conn: conn.execute(stmt).all())]

    def learning_steps(self, stream: str, policy: str) -> set[LearningStep]:
        """Every saved version's learning from labels (versions that learned no label version,
        such as a rollback, are not steps)."""
        ll = schema.learned_labels
        stmt = sa.select(_V.c.version, _V.c.parent, ll.c.batch, ll.c.item_id, ll.c.seq).join(
            ll, sa.and_(ll.c.stream == _V.c.stream, ll.c.policy == _V.c.policy,
                        ll.c.version == _V.c.version)).where(_V.c.stream == stream, _V.c.policy == policy)
        steps: dict[int, tuple[int | None, str, set[tuple[str, int]]]] = {}
        for r in self._run(lambda conn: conn.execute(stmt).all()):
            steps.setdefault(int(r.version), (r.parent, r.batch, set()))[2].add((r.item_id, int(r.seq)))
        return {LearningStep(None if parent is None else int(parent), batch, frozenset(labels))
                for parent, batch, labels in steps.values()}

    def save_version(
        self, stream: str, policy: str, learner: str, config_json: str, params: bytes,
        parent: int | None, note: str = "", learned_batch: str | None = None,
    ) -> int:
        """Save the next version; with ``learned_batch``, mark that batch learned atomically."""
        return self._run(lambda conn: self._save(
            conn, stream, policy, learner, config_json, params, parent, note, learned_batch))

    def save_learned_version(
        self, stream: str, policy: str, learner: str, config_json: str, params: bytes,
        parent: int | None, note: str, batch: str, labels: list[tuple[str, int]],
        charges: list[tuple[str, str, DecisionRecord]] | None = None,
    ) -> int:
        """Save the next version and record, atomically, that it learned ``labels`` — label
        versions (item_id, seq) of ``batch`` — and, the first time, the batch itself.

        ``charges``: (batch, item_id, decision) of compute the learning itself ran (the
        ``confirmed`` policy's audits), added to the ledger's ``decisions`` in the same
        transaction, summed into the row of the same (item, call site) if there is one.

        Raises:
            AlreadyLearnedError: one of the label versions was already learned by this
                (stream, policy); nothing is saved.
        """
        def save(conn: Connection) -> int:
            ll = schema.learned_labels
            wanted = {(item, seq) for item, seq in labels}
            done = conn.execute(sa.select(ll.c.item_id, ll.c.seq, ll.c.version).where(
                ll.c.stream == stream, ll.c.policy == policy, ll.c.batch == batch)).all()
            again = sorted((r.item_id, r.seq, r.version) for r in done if (r.item_id, r.seq) in wanted)
            if again:
                item, seq, by = again[0]
                raise AlreadyLearnedError(
                    f"stream {stream!r}, policy {policy!r}, batch {batch!r}: label version "
                    f"{seq} of item {item!r} was already learned by v{by} ({len(again)} such); "
                    "train only on unlearned_labels()")
            first = _learned_row(conn, stream, policy, batch) is None
            version = self._save(conn, stream, policy, learner, config_json, params, parent, note,
                                 batch if first else None)
            now = utcnow()
            bulk_insert(conn, ll, [
                {"stream": stream, "policy": policy, "batch": batch, "item_id": item,
                 "seq": seq, "version": version, "learned_at": now}
                for item, seq in sorted(wanted)])
            _charge(conn, stream, policy, version, charges or [])
            return version

        return self._run(save)

    def rollback(self, stream: str, policy: str, version: int) -> int:
        """Save a new version carrying ``version``'s learner state; returns the new number."""

        def roll(conn: Connection) -> int:
            old = _fetch(conn, stream, policy, version)
            return self._save(conn, stream, policy, old.learner, old.config_json, old.params,
                              version, f"rollback to v{version}", None)

        return self._run(roll)

    def learned(self, stream: str, policy: str, batch: str) -> bool:
        """Whether a learner update from this batch was ever saved (not that every label of
        it was learned: see the ``feedback_by_batch`` view and ``unlearned_labels``)."""
        return self._run(lambda conn: _learned_row(conn, stream, policy, batch)) is not None

    def mark_learned(self, stream: str, policy: str, batch: str, version: int) -> None:
        """Record that ``version`` learned from ``batch`` (no-op when already recorded)."""

        def mark(conn: Connection) -> None:
            if _learned_row(conn, stream, policy, batch) is None:
                claim(conn, "policy", stream, policy)
                conn.execute(sa.insert(_L), [{"stream": stream, "policy": policy, "batch": batch,
                                              "version": version, "learned_at": utcnow()}])

        self._run(mark)

    @staticmethod
    def _save(
        conn: Connection, stream: str, policy: str, learner: str, config_json: str,
        params: bytes, parent: int | None, note: str, learned_batch: str | None,
    ) -> int:
        if parent is not None:
            _fetch(conn, stream, policy, parent)
        if learned_batch is not None:
            row = _learned_row(conn, stream, policy, learned_batch)
            if row is not None:
                raise AlreadyLearnedError(
                    f"stream {stream!r}, policy {policy!r}: batch {learned_batch!r} was already "
                    f"learned by v{row.version}; skip it (check learned() before updating)"
                )
        # one writer at a time per (stream, policy): version numbers and learned rows stay unique
        claim(conn, "policy", stream, policy)
        top = conn.execute(sa.select(sa.func.max(_V.c.version)).where(
            _V.c.stream == stream, _V.c.policy == policy)).scalar()
        version = (top or 0) + 1
        now = utcnow()
        conn.execute(sa.insert(_V), [{
            "stream": stream, "policy": policy, "version": version, "learner": learner,
            "config_json": config_json, "params": params, "parent": parent,
            "created_at": now, "note": note}])
        if learned_batch is not None:
            conn.execute(sa.insert(_L), [{"stream": stream, "policy": policy,
                                          "batch": learned_batch, "version": version,
                                          "learned_at": now}])
        return version


_CHARGED = ("calls", "flops", "params", "wall_ms", "price")


def _charge(conn: Connection, stream: str, policy: str, version: int,
            charges: list[tuple[str, str, DecisionRecord]]) -> None:
    """Add ``charges`` to ``decisions``: a new row per (batch, item, call site), or its costs
    summed into the row already there (then ``policy_version`` becomes ``version``).

    The rows already there are read in one query and the sums made here, in the order of
    ``charges`` (the same floats as adding them one at a time); then one insert of the new
    rows and one update of the others (a select and an insert or update per charge took
    seconds per feedback batch of the confirmed policy).
    """
    if not charges:
        return
    d = schema.decisions
    batches = sorted({batch for batch, _, _ in charges})
    have: dict[tuple[str, str, str], dict[str, Any]] = {
        (r.batch, r.item_id, r.call_site): {c: getattr(r, c) for c in _CHARGED}
        for r in conn.execute(sa.select(d.c.batch, d.c.item_id, d.c.call_site,
                                        *(d.c[c] for c in _CHARGED)).where(
            d.c.stream == stream, d.c.policy == policy, d.c.batch.in_(batches))).all()}
    new: dict[tuple[str, str, str], dict[str, Any]] = {}
    changed: dict[tuple[str, str, str], dict[str, Any]] = {}
    for batch, item, rec in charges:
        key = (batch, item, rec.call_site)
        row = new.get(key) or changed.get(key)
        if row is None and key in have:
            row = changed[key] = {"stream": stream, "policy": policy, "batch": batch,
                                  "item_id": item, "call_site": rec.call_site, **have[key]}
        if row is None:
            new[key] = {
                "stream": stream, "policy": policy, "batch": batch, "item_id": item,
                "call_site": rec.call_site, "function": rec.function, "backend": rec.backend,
                "propensity": float(rec.propensity), "policy_version": version,
                "calls": int(rec.calls), **{c: float(getattr(rec, c)) for c in _CHARGED[1:]}}
        else:
            row["policy_version"] = version
            row["calls"] = int(row["calls"]) + int(rec.calls)
            for c in _CHARGED[1:]:
                row[c] = float(row[c]) + float(getattr(rec, c))
    bulk_insert(conn, d, list(new.values()))
    bulk_update(conn, d, ["stream", "policy", "batch", "item_id", "call_site"], list(changed.values()))
