"""A batch whose program is outside the subset fails as a whole, naming stream and batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.scenes import encode_png
from flows._batch import process_batch
from flows.settings import Settings
from modules.errors import ProgramError
from modules.registry import Registry
from modules.tasks import local_round_runner
from storage import batches
from storage.local import LocalStore
from storage.records import ManifestItem, StreamInfo

CATALOG = Path(__file__).parents[2] / "integration" / "fake_catalog.yaml"


def test_invalid_program_names_stream_batch_and_line_and_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    batches.write_stream_info(store, StreamInfo(
        stream="s1", query_id="q", question="q?", answer_type="bool",
        program="def f(image):\n    import os\n    return True\n",
        monolithic_program='def f(image):\n    return query(image, "q?") == "yes"\n'))
    image = encode_png(np.zeros((16, 16, 3), np.uint8))
    batches.write_batch(store, "s1", "b0001", [(ManifestItem(item_id="i0", image="images/i0.png"), image)])
    settings = Settings(home=tmp_path, catalog=CATALOG)
    registry = Registry.from_catalog(CATALOG)
    with pytest.raises(ProgramError) as info:
        process_batch(settings, store, registry, "s1", "b0001", "learned", local_round_runner(registry))
    assert str(info.value) == ("s1/b0001: the 'learned' policy's program is invalid, no item was run: "
                               "line 2, col 4: statement `Import` is not allowed in programs")
    assert batches.list_results(store, "s1", "learned") == []
