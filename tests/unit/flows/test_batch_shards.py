"""How a batch is split into shards that run at once (flows._batch.shards)."""

from __future__ import annotations

import pytest

from flows._batch import MIN_SHARD_ITEMS, shards


@pytest.mark.parametrize("n", [0, 1, MIN_SHARD_ITEMS, 2 * MIN_SHARD_ITEMS - 1, 2 * MIN_SHARD_ITEMS, 50, 256, 1024])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_cover_every_item_once_in_order(n: int, count: int) -> None:
    items = list(range(n))
    parts = shards(items, count)
    assert [x for part in parts for x in part] == items
    assert all(parts)
    assert len(parts) == (min(count, max(1, n // MIN_SHARD_ITEMS)) if n else 0)


def test_the_first_shard_is_half_the_size_of_the_others() -> None:
    assert [len(p) for p in shards(list(range(256)), 3)] == [51, 102, 103]
    assert [len(p) for p in shards(list(range(1024)), 2)] == [341, 683]


def test_small_batches_run_as_one_shard() -> None:
    assert [len(p) for p in shards(list(range(2 * MIN_SHARD_ITEMS - 1)), 3)] == [2 * MIN_SHARD_ITEMS - 1]
