"""Bad command-line input is rejected before any work starts, in one line naming the valid range."""

from __future__ import annotations

import pytest

from flows.cli import main


@pytest.mark.parametrize(("argv", "expected"), [
    (["--batch-size", "-5"], "argument --batch-size: -5 is out of range (valid: 1 or more)"),
    (["--batch-size", "0"], "argument --batch-size: 0 is out of range (valid: 1 or more)"),
    (["--batches", "-1"], "argument --batches: -1 is out of range (valid: 1 or more)"),
    (["--positive-rate", "7"], "argument --positive-rate: 7 is out of range (valid: 0 to 1)"),
    (["--batches", "two"], "argument --batches: 'two' is not an integer (valid: 1 or more)"),
])
def test_publish_rejects_out_of_range_numbers_in_one_line(argv, expected, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--storage", str(tmp_path / "objects"), "stream", "publish",
              "red_circle_left_of_blue_square", *argv])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"fmp stream publish: error: {expected} (--help shows the usage)\n"
    assert not (tmp_path / "objects").exists()  # nothing was published


def test_ledger_rejects_a_lock_timeout_of_zero(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--db", str(tmp_path / "x.duckdb"), "ledger", "SELECT 1", "--lock-timeout", "0"])
    assert capsys.readouterr().err == ("fmp ledger: error: argument --lock-timeout: 0 is out of range "
                                       "(valid: more than 0) (--help shows the usage)\n")


def test_an_unknown_policy_is_rejected_with_the_choices(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--storage", str(tmp_path), "run-batch", "s1", "--policy", "nope"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fmp run-batch: error: argument --policy: invalid choice: 'nope' (choose from ")
    assert "'learned'" in err and "'cheapest'" in err
