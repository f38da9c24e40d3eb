"""The evaluation harness end to end on a few items of one query (real trained backends)."""

from __future__ import annotations

import json

import pytest

from benchmarks import evaluate as ev


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval-binary.json"
    argv = ["--benchmark", "binary", "--query", "red_circle_left_of_blue_square", "--scenes", "40",
            "--batch-size", "8", "--lam", "1", "8", "--paper-width", "4", "--paper-input", "16",
            "--out", str(out)]
    args = ev.parser().parse_args(argv)
    results = {}
    original = ev.run_query

    def keep(stream, ctx, policies, lams):  # the per-item results, for invariants below
        got = original(stream, ctx, policies, lams)
        results.update(got)
        return got

    ev.run_query = keep
    try:
        rep = ev.evaluate(args)
    finally:
        ev.run_query = original
    return rep, results, out


def test_every_policy_is_reported_with_its_cost_and_the_plot_is_written(report):
    rep, _, out = report
    assert set(rep["table"]) == set(ev.ALL_POLICIES)
    assert json.loads(out.read_text())["benchmark"] == "binary"
    assert out.with_name("eval-binary-pareto.png").stat().st_size > 1000
    assert rep["table"]["monolithic"]["savings_vs_monolithic"] == pytest.approx(0.0)
    assert rep["table"]["oracle"]["cost_vs_oracle"] == pytest.approx(1.0)
    for name in ev.LAMBDA_POLICIES:
        assert [r["lam"] for r in rep["sweep"][name]] == [1.0, 8.0]
    # the paper's learner pays for its own networks; fmp's for its embedding
    assert rep["table"]["paper"]["policy_gflops_per_item"] > rep["table"]["fmp"]["policy_gflops_per_item"] > 0
    assert rep["table"]["cheapest"]["policy_gflops_per_item"] == 0
    assert rep["decision_us_per_call_site"]["fmp"] > 0


def test_the_oracle_is_right_whenever_any_policy_is_and_never_costs_more(report):
    _, results, _ = report
    oracle = results["oracle"][1.0]
    for name, per_lam in results.items():
        for lam, items in per_lam.items():
            for mine, best in zip(items, oracle):
                if mine.right:
                    assert best.right, (name, lam)
                    assert best.flops <= mine.flops + 1e-6, (name, lam)


def test_unknown_query_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown query id"):
        ev.evaluate(ev.parser().parse_args(["--query", "no_such_query", "--scenes", "5"]))
