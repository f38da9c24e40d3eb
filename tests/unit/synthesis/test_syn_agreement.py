"""The agreement benchmark runs end to end (on scripted backends, so it is fast and exact)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import agreement

FAKE = Path(__file__).resolve().parents[2] / "integration" / "fake_catalog.yaml"


def test_agreement_prints_a_rate_per_synthesizer(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMP_LLM_BASE_URL", raising=False)
    assert agreement.main(["--scenes", "4", "--catalog", str(FAKE)]) == 0
    out = capsys.readouterr().out
    assert "grammar      red_circle_left_of_blue_square   yes" in out
    assert "grammar      yellow_above_purple_circle       no " in out
    assert out.endswith("agreement rate per synthesizer (synthesized vs reference answers, largest backends):\n"
                        "  grammar      12/12 = 1.000 over 3 queries\n")


def test_a_synthesizer_that_fails_counts_as_disagreeing(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMP_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on port 9
    monkeypatch.setenv("FMP_LLM_MODEL", "nobody")
    monkeypatch.setattr(agreement, "synthesize", _refuse)
    assert agreement.main(["--scenes", "2", "--catalog", str(FAKE), "--synthesizer", "openai"]) == 0
    out = capsys.readouterr().out
    assert "openai       two_triangles_one_green          -              0/2" in out
    assert out.endswith("  openai       0/6 = 0.000 over 3 queries\n")


def _refuse(task_text, synthesizer, answer_type="bool"):
    from modules.synthesis import SynthesisError

    raise SynthesisError(f"no endpoint for {task_text!r}")
