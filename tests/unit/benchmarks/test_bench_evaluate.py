"""The evaluation harness end to end on a few items of one query (real trained backends)."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.evaluate.cli import WORKER_NICENESS, evaluate, parser
from benchmarks.evaluate.runners import ALL_POLICIES, DEFAULT_POLICIES, LAMBDA_POLICIES, RUNNERS, resolve
from benchmarks.speed import differences


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval-binary.json"
    argv = ["--benchmark", "binary", "--query", "red_circle_left_of_blue_square", "--scenes", "40",
            "--batch-size", "8", "--lam", "1", "8", "--paper-width", "4", "--paper-input", "16",
            "--out", str(out), "--call-table", str(out.parent / "calls")]
    results = {}  # the per-item results, for invariants below
    rep = evaluate(parser().parse_args(argv), on_query=lambda query, got: results.update(got))
    return rep, results, out


def test_every_policy_is_reported_with_its_cost_and_the_plot_is_written(report):
    rep, _, out = report
    assert set(rep["table"]) == set(DEFAULT_POLICIES)
    assert json.loads(out.read_text())["benchmark"] == "binary"
    assert out.with_name("eval-binary-pareto.png").stat().st_size > 1000
    assert rep["table"]["monolithic"]["savings_vs_monolithic"] == pytest.approx(0.0)
    assert rep["table"]["oracle"]["cost_vs_oracle"] == pytest.approx(1.0)
    for name in set(LAMBDA_POLICIES) & set(DEFAULT_POLICIES):
        assert [r["lam"] for r in rep["sweep"][name]] == [1.0, 8.0]
    # the paper's learner pays for its own networks; the Thompson learners for their embedding
    # (shared also for its shadow runs' calls, whichever policy computed them first)
    assert rep["table"]["paper"]["policy_gflops_per_item"] > rep["table"]["learned"]["policy_gflops_per_item"] > 0
    assert rep["table"]["shared"]["policy_gflops_per_item"] > 0
    assert rep["table"]["cheapest"]["policy_gflops_per_item"] == 0
    assert rep["decision_us_per_call_site"]["shared"] > 0


def test_fmp_names_the_recommended_learner_with_intervals_and_its_front(report):
    rep, results, _ = report
    assert rep["fmp"] == "confirmed"
    assert "confirmed" not in rep["sweep"]  # run once, reported as fmp
    by_lam = {r["lam"]: r for r in rep["sweep"]["fmp"]}
    assert set(by_lam) == {1.0, 8.0}
    for lam, row in by_lam.items():
        lo, hi = row["quality_ci"]
        assert lo <= row["quality"] + 1e-9 and row["quality"] <= hi + 1e-9
        # one query: every resample is that query, so the interval is the point
        assert lo == pytest.approx(hi)
        assert row["minus_largest"] == pytest.approx(row["quality"] - rep["table"]["largest"]["quality"])
        items = results["confirmed"][lam]
        assert row["items"] == len(items)
    [q] = rep["per_query"]
    assert q["query"] == "red_circle_left_of_blue_square"
    assert q["fmp"] == pytest.approx(by_lam[1.0]["quality"])
    assert q["cost_vs_largest"] == pytest.approx(
        by_lam[1.0]["gflops_per_item"] / rep["table"]["largest"]["gflops_per_item"])
    bases = {(e["baseline"], e["baseline_lam"]) for e in rep["fmp_vs_baselines"]}
    assert bases == {(b, lam) for b in ("static", "routing") for lam in (1.0, 8.0)}
    assert {e["verdict"] for e in rep["fmp_vs_baselines"]} <= {"above", "level", "below", "no point"}


def test_the_oracle_is_right_whenever_any_policy_is_and_never_costs_more(report):
    _, results, _ = report
    oracle = results["oracle"][1.0]
    for name, per_lam in results.items():
        for lam, items in per_lam.items():
            for mine, best in zip(items, oracle, strict=True):
                if mine.right:
                    assert best.right, (name, lam)
                    assert best.flops <= mine.flops + 1e-6, (name, lam)


def test_the_audited_search_pays_for_its_audits_and_leaves_the_largest_rungs(report):
    rep, results, _ = report
    audited = {r["lam"]: r for r in rep["sweep"]["audited"]}
    assert audited[8.0]["policy_gflops_per_item"] > 0  # replays of audited items are charged
    # the first batch runs on the largest rungs; once labels say cheaper rungs answer alike it moves down
    largest = results["largest"][1.0]
    assert [r.flops for r in results["audited"][8.0][:8]] == [r.flops for r in largest[:8]]
    assert audited[8.0]["gflops_per_item"] < rep["table"]["largest"]["gflops_per_item"]


def test_confirmed_answers_yes_only_where_the_largest_backends_do(report):
    _, results, _ = report
    largest = results["largest"][1.0]
    for lam, items in results["confirmed"].items():
        for mine, big in zip(items, largest, strict=True):
            if mine.answer is True:  # every "yes" is the largest configuration's answer
                assert big.answer is True, lam


def test_the_runner_table_covers_every_policy_and_runs_prerequisites_first():
    assert set(RUNNERS) == set(ALL_POLICIES) - {"fmp"}
    assert set(LAMBDA_POLICIES) == {"static", "routing", "paper", "learned", "shared", "shared-budget",
                                    "cascade", "audited", "confirmed", "fmp"}
    order = list(RUNNERS)
    for name, runner in RUNNERS.items():
        for need in runner.needs:
            assert not RUNNERS[need].per_lambda and order.index(need) < order.index(name), (name, need)
    # fmp: the recommended learner per answer type, the one the flows' default policy runs
    from policies.specs import DEFAULT_POLICY, policy_spec

    for answer_type in ("bool", "str"):
        assert resolve("fmp", answer_type) == policy_spec(DEFAULT_POLICY).learner_for(answer_type)
    assert (resolve("fmp", "bool"), resolve("fmp", "str"), resolve("learned", "str")) == \
        ("confirmed", "cascade", "learned")


def test_a_policy_table_is_injected_and_only_asked_policies_are_reported(tmp_path):
    out = tmp_path / "eval-binary.json"
    argv = ["--benchmark", "binary", "--query", "red_circle_left_of_blue_square", "--scenes", "8",
            "--batch-size", "4", "--lam", "1", "2", "--policies", "cheapest", "static", "--out", str(out),
            "--no-call-table"]
    table = {n: RUNNERS[n] for n in ("cheapest", "largest", "static")}
    seen = {}
    rep = evaluate(parser().parse_args(argv), runners=table, on_query=lambda query, got: seen.update({query: got}))
    # largest runs (static starts from it) but is not reported
    assert list(rep["sweep"]) == ["cheapest", "static"]
    assert set(seen["red_circle_left_of_blue_square"]) == {"cheapest", "static"}
    assert [r["lam"] for r in rep["sweep"]["static"]] == [1.0, 2.0]
    assert set(rep["static_configurations"]) == {"red_circle_left_of_blue_square@1", "red_circle_left_of_blue_square@2"}


def test_a_policy_outside_the_table_is_a_clear_error():
    args = parser().parse_args(["--policies", "fmp", "--scenes", "5"])
    with pytest.raises(SystemExit, match="unknown policy"):
        evaluate(args, runners={n: RUNNERS[n] for n in ("cheapest", "largest")})


def test_unknown_query_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown query id"):
        evaluate(parser().parse_args(["--query", "no_such_query", "--scenes", "5"]))


def test_workers_and_a_warm_call_table_give_todays_numbers(tmp_path):
    """--jobs 2 from an empty call table, then a re-run from the table it left, report every
    policy's numbers at every λ exactly as today's path (--baseline) does; the re-run computes
    no model call."""
    argv = ["--benchmark", "binary", "--max-queries", "2", "--scenes", "12", "--batch-size", "4",
            "--lam", "1", "4", "--paper-width", "4", "--paper-input", "16"]
    table = ["--call-table", str(tmp_path / "calls")]
    base = evaluate(parser().parse_args([*argv, "--baseline", "--out", str(tmp_path / "base.json")]))
    cold = evaluate(parser().parse_args([*argv, *table, "--jobs", "2", "--out", str(tmp_path / "cold.json")]))
    warm = evaluate(parser().parse_args([*argv, *table, "--out", str(tmp_path / "warm.json")]))
    # with workers again: the streams are kept, so the across-query policies run here from
    # the table while the workers run the first phases, and the numbers stay the same
    ahead = evaluate(parser().parse_args([*argv, *table, "--jobs", "2", "--out", str(tmp_path / "ahead.json")]))
    assert set(base["sweep"]) == set(DEFAULT_POLICIES)
    assert differences(base, cold) == [] and differences(base, warm) == [] and differences(base, ahead) == []
    assert ahead["model_calls"] == {**warm["model_calls"], "reused": ahead["model_calls"]["reused"]}
    assert cold["model_calls"]["stored"] == cold["model_calls"]["computed"] > 0
    assert warm["model_calls"]["computed"] == 0 and warm["model_calls"]["loaded"] == cold["model_calls"]["stored"]
    assert base["call_table"] is None and base["model_calls"]["stored"] == 0
    # the cold run's workers kept each query's drawn stream; the warm run read them back
    assert len(list((tmp_path / "calls" / "streams" / "binary").glob("*-s0-n12-*.npz"))) == 2
    # the workers yielded the CPU to the main process, which ran the across-query policies
    assert cold["worker_niceness"] == min(WORKER_NICENESS, 19 - os.nice(0)) and warm["worker_niceness"] == 0


def test_the_cycle_collector_runs_rarely_during_an_evaluation_and_as_before_after_it(tmp_path):
    """The policies allocate by the million beside millions of long-lived objects: the run
    raises the collector's thresholds (today's path, --baseline, keeps Python's) and puts the
    caller's back, also when the run fails."""
    import gc

    from benchmarks.evaluate.cli import GC_THRESHOLDS

    argv = ["--benchmark", "binary", "--query", "red_circle_left_of_blue_square", "--scenes", "4",
            "--batch-size", "4", "--lam", "1", "--policies", "cheapest", "--no-call-table"]
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    during = []
    evaluate(parser().parse_args([*argv, "--out", str(tmp_path / "a.json")]),
             on_query=lambda query, got: during.append(gc.get_threshold()))
    evaluate(parser().parse_args([*argv, "--baseline", "--out", str(tmp_path / "b.json")]),
             on_query=lambda query, got: during.append(gc.get_threshold()))
    assert during == [GC_THRESHOLDS, before] and gc.get_threshold() == before

    def fail(query, got):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        evaluate(parser().parse_args([*argv, "--out", str(tmp_path / "c.json")]), on_query=fail)
    assert gc.get_threshold() == before
