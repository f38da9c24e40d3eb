"""Three processes write the same batches into one DuckLake store at once: every
(stream, policy, batch, item, call site) lands exactly once, and version numbers stay unique."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from policy_store import PolicyStore

WRITERS = 3
BATCHES = 8
ITEMS = 5
SITES = ("c1", "c2")

# One writer: waits for the start file, then ingests every batch (its own order) and tries to
# save the version that learned it; prints what it did as JSON.
_WRITER = r"""
import json, random, sys, time
from pathlib import Path
from policy_store import AlreadyLearnedError, IngestBatch, PolicyStore
from storage.records import DecisionRecord, ResultRow

url, go, seed, batches, items, sites = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split(",")
store = PolicyStore(url)
store.init()
def batch(b):
    rows = [ResultRow(item_id=f"i{i}", status="ok", answer=i % 2 == 0, error=None, features=[],
                      decisions=[DecisionRecord(call_site=s, function="exists", backend="small",
                                                propensity=0.5, calls=1, flops=10.0 * (i + 1),
                                                params=1.0, wall_ms=1.0, price=0.001)
                                 for s in sites]) for i in range(items)]
    labels = {f"i{i}": i % 3 == 0 for i in range(items)}
    return IngestBatch("s1", "learned", f"b{b}", 1, "prog", rows, labels, answer_type="bool")
order = list(range(batches))
random.Random(seed).shuffle(order)
while not go.exists():
    time.sleep(0.01)
saved = []
for b in order:
    store.ingest_batch(batch(b))
    try:
        saved.append(store.save_version("s1", "learned", "thompson", "{}", b"w%d" % seed, None,
                                        f"writer {seed}", learned_batch=f"b{b}"))
    except AlreadyLearnedError:
        pass
print(json.dumps({"saved": saved, "conflicts_retried": store.conflicts_retried}))
"""

_DUPLICATES = """SELECT COUNT(*) FROM (SELECT {key}, COUNT(*) AS n FROM {table} GROUP BY {key}
                  HAVING COUNT(*) > 1) d"""


def test_three_processes_writing_the_same_batches_leave_each_key_exactly_once(
        lake_url: str, tmp_path: Path) -> None:
    url = lake_url
    PolicyStore(url).init()
    go = tmp_path / "go"
    root = Path(__file__).resolve().parents[3]
    procs = [subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, str(go), str(seed), str(BATCHES), str(ITEMS),
         ",".join(SITES)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in range(WRITERS)]
    time.sleep(1.0)  # let them import and attach, then start them together
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))

    store = PolicyStore(url)
    keys = {
        "results": "stream, policy, batch, item_id",
        "decisions": "stream, policy, batch, item_id, call_site",
        "labels": "stream, batch, item_id",
        "label_versions": "stream, batch, item_id, seq",
        "feedback_state": "stream, policy, batch",
        "learned_batches": "stream, policy, batch",
        "policy_versions": "stream, policy, version",
    }
    for table, key in keys.items():
        assert store.query(_DUPLICATES.format(table=table, key=key))[1] == [(0,)], table
    expected = {(f"b{b}", f"i{i}", s) for b in range(BATCHES) for i in range(ITEMS) for s in SITES}
    got = store.query("SELECT batch, item_id, call_site FROM decisions")[1]
    assert set(got) == expected and len(got) == len(expected)  # 0 missing, 0 doubled
    assert store.query("SELECT COUNT(*) FROM results")[1] == [(BATCHES * ITEMS,)]
    assert store.query("SELECT COUNT(*), MIN(seq), MAX(seq) FROM label_versions")[1] == [
        (BATCHES * ITEMS, 1, 1)]
    # each batch learned by exactly one writer, and the versions are 1..BATCHES with no gap
    saved = sorted(v for o in outs for v in o["saved"])
    assert saved == list(range(1, BATCHES + 1))
    assert [v.version for v in store.list_versions("s1", "learned")] == saved
    _, rows = store.query("SELECT batches, items, labelled FROM ledger_savings")
    assert rows == [(BATCHES, BATCHES * ITEMS, BATCHES * ITEMS)]
    # the writers did race: some commits lost to another writer's and were retried
    print("conflicts retried per writer:", [o["conflicts_retried"] for o in outs])
    assert sum(o["conflicts_retried"] for o in outs) > 0
