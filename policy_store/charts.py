"""Cost, savings and accuracy over time per (stream, policy): the numbers behind the charts.

One point per batch, in the order the batches' feedback was ingested, read from the
ledger views (``ledger_by_batch``; the monolithic model's cost per call as in
``ledger_by_day``). Each point carries the batch's own numbers and the running totals
("so far"), which are what ``ledger_savings`` reports after that batch. Values that
cannot be computed (no labelled item yet, no monolithic model registered) are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from policy_store.schema import _MONO as MONOLITHIC_COST  # the one rule for the monolith's cost
from policy_store.store import PolicyStore

_BATCHES = f"""
WITH mono AS ({MONOLITHIC_COST}),
ran AS (
  SELECT stream, policy, batch, COUNT(DISTINCT item_id) AS items_run
  FROM decisions WHERE stream = :stream GROUP BY stream, policy, batch
),
ingested AS (
  SELECT stream, policy, batch, MIN(ingested_at) AS ingested_at
  FROM results WHERE stream = :stream GROUP BY stream, policy, batch
)
SELECT b.policy, b.batch, i.ingested_at, b.items, b.labelled, b.accuracy,
       COALESCE(ran.items_run, 0) AS items_run, b.flops, b.price,
       m.flops AS mono_flops, m.price AS mono_price
FROM ledger_by_batch b
JOIN ingested i ON i.stream = b.stream AND i.policy = b.policy AND i.batch = b.batch
LEFT JOIN ran ON ran.stream = b.stream AND ran.policy = b.policy AND ran.batch = b.batch
LEFT JOIN mono m ON 1 = 1
WHERE b.stream = :stream
ORDER BY b.policy, i.ingested_at, b.batch
"""


@dataclass(frozen=True)
class TrendPoint:
    """One batch of one (stream, policy): its own numbers, then the running totals."""

    batch: str
    ingested_at: datetime
    items: int
    labelled: int
    accuracy: float | None  # on this batch's labelled items
    items_run: int  # items the program ran on (the ones the monolith would have answered)
    flops: float
    price: float
    savings: float | None  # 1 - flops / (items_run x one monolithic call), this batch
    accuracy_so_far: float | None
    flops_so_far: float
    price_so_far: float
    saved_price_so_far: float | None
    savings_so_far: float | None

    @property
    def flops_per_item(self) -> float | None:
        return self.flops / self.items_run if self.items_run else None

    @property
    def price_per_item(self) -> float | None:
        return self.price / self.items_run if self.items_run else None


@dataclass(frozen=True)
class Trend:
    """A (stream, policy)'s points, oldest first, and the monolithic model's cost per item."""

    stream: str
    policy: str
    points: tuple[TrendPoint, ...]
    monolithic_flops: float | None  # one call of the monolithic model
    monolithic_price: float | None

    @property
    def last(self) -> TrendPoint:
        return self.points[-1]


def ledger_streams(db: PolicyStore) -> list[str]:
    """Every stream with ingested results, sorted."""
    _, rows = db.query("SELECT DISTINCT stream FROM results ORDER BY stream")
    return [str(r[0]) for r in rows]


class _BatchRow(NamedTuple):
    """A row of ``_BATCHES``, in its column order."""

    policy: str
    batch: str
    ingested_at: datetime
    items: int
    labelled: int
    accuracy: float | None
    items_run: int
    flops: float
    price: float
    mono_flops: float | None
    mono_price: float | None


def stream_trends(db: PolicyStore, stream: str, policies: list[str] | None = None) -> list[Trend]:
    """One Trend per policy with ingested results on ``stream`` (or only ``policies``), by name."""
    _, rows = db.query(_BATCHES, {"stream": stream})
    by_policy: dict[str, list[_BatchRow]] = {}
    for row in rows:
        r = _BatchRow(*row)
        if policies is None or r.policy in policies:
            by_policy.setdefault(r.policy, []).append(r)
    return [_trend(stream, policy, batch_rows) for policy, batch_rows in sorted(by_policy.items())]


def _trend(stream: str, policy: str, rows: list[_BatchRow]) -> Trend:
    mono_flops, mono_price = rows[0].mono_flops, rows[0].mono_price
    points: list[TrendPoint] = []
    labelled = correct = items_run = 0
    flops = price = 0.0
    for r in rows:
        labelled += r.labelled
        correct += round((r.accuracy or 0.0) * r.labelled)
        items_run += r.items_run
        flops += r.flops
        price += r.price
        points.append(TrendPoint(
            batch=r.batch, ingested_at=r.ingested_at, items=r.items, labelled=r.labelled,
            accuracy=r.accuracy, items_run=r.items_run, flops=r.flops, price=r.price,
            savings=_savings(r.flops, r.items_run, mono_flops),
            accuracy_so_far=correct / labelled if labelled else None,
            flops_so_far=flops, price_so_far=price,
            saved_price_so_far=(_cents_clean(items_run * mono_price - price)
                                if mono_price is not None else None),
            savings_so_far=_savings(flops, items_run, mono_flops)))
    return Trend(stream, policy, tuple(points), mono_flops, mono_price)


def _cents_clean(dollars: float) -> float:
    """A difference of sums without its float noise (a monolith saves $0, not $-4e-16)."""
    return round(dollars, 10)


def _savings(flops: float, items_run: int, mono_flops: float | None) -> float | None:
    """1 - flops / (items_run x one monolithic call): ``ledger_by_day``'s savings rule."""
    baseline = items_run * mono_flops if mono_flops else 0.0
    return 1.0 - flops / baseline if baseline > 0 else None
