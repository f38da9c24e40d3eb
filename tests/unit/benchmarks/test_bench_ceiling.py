"""The ceiling measurement's arithmetic: expected F1 at a stream's positive rate."""

from __future__ import annotations

import math

import pytest

from benchmarks.ceiling import expected_f1, mix, stream_positive_rate


def test_expected_f1_from_recall_and_false_positive_rate() -> None:
    # perfect: F1 1; no false positives: F1 = 2r / (1 + r)
    assert expected_f1(1.0, 0.0, 0.01) == 1.0
    assert math.isclose(expected_f1(0.8, 0.0, 0.01), 1.6 / 1.8)
    # at 1 positive per 100 items, a 1 % false-positive rate costs half the F1 of a perfect recall:
    # TP = 0.01, FP = 0.99 * 0.01, FN = 0 -> 0.02 / (0.02 + 0.0099)
    assert math.isclose(expected_f1(1.0, 0.01, 0.01), 0.02 / 0.0299)
    # the same rates on a balanced stream barely matter
    assert expected_f1(1.0, 0.01, 0.5) > 0.99
    # nothing found and nothing claimed: F1 0; no positives and no false alarms: 1
    assert expected_f1(0.0, 0.0, 0.01) == 0.0
    assert expected_f1(0.0, 0.0, 0.0) == 1.0
    with pytest.raises(ValueError, match="positive_rate"):
        expected_f1(1.0, 0.0, 1.5)


def test_stream_rate_and_mix() -> None:
    assert stream_positive_rate(2000) == 20 / 2000
    assert stream_positive_rate(50) == 1 / 50  # at least one positive
    assert math.isclose(mix({"near_miss": 0.1, "negative": 0.0}, {"near_miss": 0.3, "negative": 0.7}), 0.03)
    assert mix({"negative": 0.2}, {"near_miss": 0.0, "negative": 1.0}) == 0.2
    with pytest.raises(ValueError, match="no weight"):
        mix({"negative": 0.2}, {"near_miss": 1.0})
