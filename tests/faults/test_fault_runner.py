"""A subset of ``python -m benchmarks.faults`` (the stale writer slot, the worst of them): the
fault does damage, the operator's recovery leaves nothing lost and nothing doubled. The whole
table: ``python -m benchmarks.faults`` (about 3 minutes)."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.faults import (
    CORRUPTIONS,
    FAULTS,
    POLICY,
    Fault,
    Workspace,
    bomb_png,
    count,
    format_row,
    run_faults,
)
from policies.specs import DEFAULT_POLICY
from storage import batches
from storage.records import Label, ManifestItem

pytestmark = pytest.mark.faults


def _lost_before(fault: Fault) -> int:
    match = re.search(r"lost (\d+) before recovery", fault.message)
    assert match, fault.message
    return int(match.group(1))


def test_a_feedback_run_killed_inside_the_writer_block_loses_and_doubles_nothing(
        prefect_api: str, tmp_path: Path) -> None:
    lines: list[str] = []
    (fault,) = run_faults(["feedback-inside"], tmp_path, lines.append, api_url=prefect_api)
    print("\n" + "\n".join(lines))
    assert fault.name == "feedback kill -9 inside the writer block"
    # the fault did damage: batches missing from the ledger, the writer slot left taken ...
    assert _lost_before(fault) > 0
    assert "writer slot left taken: 1" in fault.message
    # ... and the operator's next `fmp feedback` repaired all of it, within the bound
    assert (fault.lost, fault.doubled, fault.recovered) == (0, 0, True), format_row(fault)
    assert "(reclaimed the slot)" in fault.message
    assert fault.recover_s < 60


def test_the_faults_run_the_flows_default_policy() -> None:
    assert POLICY == DEFAULT_POLICY


def test_the_counts_see_missing_rows(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, {})
    items = [(ManifestItem(item_id=f"i{k}", image=f"images/i{k}.png"), b"png") for k in range(3)]
    batches.write_batch(ws.store, "s1", "b0000", items)
    batches.write_labels(ws.store, "s1", "b0000", [Label(item_id="i0", answer=True)])
    counts = count(ws)
    assert (counts.lost, counts.doubled) == (3, 0)
    assert counts.details == ["3 items, no ledger"]


def test_the_bomb_is_small_and_declares_400_megapixels() -> None:
    data = bomb_png()
    assert len(data) < 200
    assert struct.unpack(">II", data[16:24]) == (20000, 20000)  # IHDR's width and height
    with pytest.raises(Image.DecompressionBombError, match="400000000 pixels"):
        Image.open(io.BytesIO(data))  # PIL refuses the header, before decoding anything


def test_every_fault_has_a_runner() -> None:
    assert {"run-batch-before", "run-batch-between", "run-batch-after", "feedback-before",
            "feedback-inside", "feedback-after", "moto-frozen", "bomb", "labels", "disk-full",
            "lock-held", "clock-skew", "large-batch", "moto-killed", "worker-killed",
            "server-killed"} == set(FAULTS)
    assert list(FAULTS)[-1] == "server-killed"  # it kills the server the other rows use


def test_every_corruption_of_the_large_batch_is_undecodable() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    for corrupt in CORRUPTIONS:
        with pytest.raises(Exception):  # noqa: B017, PT011 - PIL raises several kinds
            Image.open(io.BytesIO(corrupt(buffer.getvalue()))).load()
