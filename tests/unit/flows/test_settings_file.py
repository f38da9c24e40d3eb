"""$FMP_HOME/settings.env: one settings source for every fmp command and flow run."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.cli import main
from flows.settings import (
    SettingsFileError,
    apply_settings_file,
    parse_settings_file,
    read_settings_file,
    settings_file,
    write_settings_file,
)


def test_parse_reads_names_values_comments_and_quotes(tmp_path: Path) -> None:
    text = "# a comment\n\nFMP_STORAGE_URL=s3://b/p\nexport AWS_DEFAULT_REGION='eu-west-1'\n" \
           'PREFECT_API_URL="http://127.0.0.1:4200/api"\n'
    assert parse_settings_file(text, tmp_path / "s.env") == {
        "FMP_STORAGE_URL": "s3://b/p", "AWS_DEFAULT_REGION": "eu-west-1",
        "PREFECT_API_URL": "http://127.0.0.1:4200/api"}


@pytest.mark.parametrize(("text", "match"), [
    ("FMP_LAM=1\njust words\n", r"s.env:2: expected NAME=value"),
    ("HOME=/tmp\n", r"s.env:1: HOME cannot be set here"),
    ("FMP_HOME=/elsewhere\n", r"s.env:1: FMP_HOME cannot be set here"),
])
def test_parse_names_the_bad_line(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(SettingsFileError, match=match):
        parse_settings_file(text, tmp_path / "s.env")


def test_the_file_fills_the_environment_and_the_environment_wins(tmp_path: Path) -> None:
    env = {"FMP_HOME": str(tmp_path), "FMP_CATALOG": "mine.yaml"}
    path = settings_file(env)
    assert path == tmp_path / "settings.env"
    write_settings_file({"FMP_STORAGE_URL": "s3://b/p", "FMP_CATALOG": "theirs.yaml", "FMP_LAM": "2"}, path)
    assert apply_settings_file(env) == {"FMP_CATALOG": ("mine.yaml", "theirs.yaml")}
    assert env["FMP_STORAGE_URL"] == "s3://b/p" and env["FMP_LAM"] == "2"
    assert env["FMP_CATALOG"] == "mine.yaml"
    write_settings_file({"FMP_LAM": ""}, path)  # an empty value removes the name
    assert read_settings_file(path) == {"FMP_CATALOG": "theirs.yaml", "FMP_STORAGE_URL": "s3://b/p"}
    with pytest.raises(SettingsFileError, match="FMP_HOME cannot be set"):
        write_settings_file({"FMP_HOME": "x"}, path)


def test_commands_use_the_file_and_refuse_a_conflicting_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("FMP_STORAGE_URL", "FMP_DB_PATH", "FMP_S3_ENDPOINT_URL", "FMP_CATALOG"):
        monkeypatch.setenv(name, "")  # recorded, so what the file puts there is undone after
        monkeypatch.delenv(name)
    monkeypatch.setenv("FMP_HOME", str(tmp_path / "home"))
    assert main(["settings", "--set", f"FMP_STORAGE_URL={tmp_path / 'objects'}"]) == 0
    assert f"object store {tmp_path / 'objects'}" in capsys.readouterr().out
    program = tmp_path / "p.py"
    program.write_text("def execute_command(image):\n    return exists(image, 'cat')\n")
    assert main(["stream", "create", "s", "--program", str(program)]) == 0
    assert (tmp_path / "objects" / "streams" / "s" / "stream.json").exists()  # where the file says
    monkeypatch.setenv("FMP_STORAGE_URL", str(tmp_path / "elsewhere"))
    capsys.readouterr()
    assert main(["stream", "list"]) == 1
    err = capsys.readouterr().err
    assert f"FMP_STORAGE_URL={tmp_path / 'elsewhere'} in the environment, but" in err
    assert err.count("\n") == 1
