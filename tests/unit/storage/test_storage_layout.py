from __future__ import annotations

import pytest

from storage import layout
from storage.errors import StoreConfigError


def test_keys_follow_the_contract_layout() -> None:
    assert layout.stream_info_key("s1") == "streams/s1/stream.json"
    assert layout.batch_prefix("s1", "b1") == "streams/s1/batches/b1/"
    assert layout.manifest_key("s1", "b1") == "streams/s1/batches/b1/manifest.jsonl"
    assert layout.image_key("s1", "b1", "images/7.png") == "streams/s1/batches/b1/images/7.png"
    assert layout.labels_key("s1", "b1") == "streams/s1/feedback/b1/labels.jsonl"
    assert layout.results_key("s1", "p1", "b1") == "streams/s1/results/p1/b1/results.jsonl"
    assert layout.success_key("s1", "p1", "b1") == "streams/s1/results/p1/b1/_SUCCESS"
    assert layout.image_relative("000017") == "images/000017.png"
    assert layout.audit_calls_prefix("s1", "p1") == "streams/s1/audits/p1/"
    assert layout.audit_calls_key("s1", "p1", "b1", "v3-0a1b") == "streams/s1/audits/p1/b1/v3-0a1b.jsonl"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a b", "x" * 65, "é"])
def test_bad_ids_are_rejected_naming_the_kind(bad: str) -> None:
    with pytest.raises(StoreConfigError, match=r"^bad batch id"):
        layout.manifest_key("s1", bad)
    with pytest.raises(StoreConfigError, match=r"^bad stream id"):
        layout.stream_info_key(bad)
    with pytest.raises(StoreConfigError, match=r"^bad policy id"):
        layout.success_key("s1", bad, "b1")
    with pytest.raises(StoreConfigError, match=r"^bad step id"):
        layout.audit_calls_key("s1", "p1", "b1", bad)


def test_image_key_rejects_escaping_relative_keys() -> None:
    with pytest.raises(StoreConfigError, match="'..'"):
        layout.image_key("s1", "b1", "../b2/images/1.png")
