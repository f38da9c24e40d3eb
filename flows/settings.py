"""All settings in one place, read from the environment with the ``FMP_`` prefix."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modules.catalog import DEFAULT_CATALOG


class Settings(BaseSettings):
    """fmp's settings; every field can be set as ``FMP_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="FMP_", frozen=True)

    home: Path = Field(Path(".fmp"), description="Folder for the embedded store, database and reports.")
    storage_url: str = Field("", description="Object store: a folder path, file:// or s3://bucket/prefix. "
                                             "Empty means <home>/objects.")
    db_path: Path | None = Field(None, description="DuckDB policy store file; default <home>/fmp.duckdb.")
    policy_store_url: str = Field(
        "", validation_alias="FMP_STORE_URL",
        description="The policy store when not the DuckDB file: a DuckLake that many processes "
                    "write at once, ducklake:sqlite:<file> (one machine) or ducklake:postgres:"
                    "<conninfo>, optionally ?data_path=<folder or s3://bucket/prefix/>.")
    catalog: Path = Field(DEFAULT_CATALOG, description="Backend catalog YAML.")
    lam: float = Field(1.0, ge=0, description="Cost weight λ in reward = -λ·cost - loss/N "
                                              "(cost in units of one monolithic call).")
    seed: int = Field(0, description="Seed for policy sampling; with the pinned version, replays are exact.")
    lock_timeout_s: float = Field(60.0, gt=0, description="How long to wait for the DuckDB file lock.")
    model_threads: int = Field(1, ge=1, description="CPU threads per model call (torch's intra-op "
                                                    "threads). The models are small; see "
                                                    "flows._runtime.limit_model_threads.")
    batch_shards: int = Field(3, ge=1, description="A batch's items run as this many lockstep "
                                                   "shards at once, so one shard's models compute "
                                                   "while another's images are read and its "
                                                   "program advances; see flows._batch.shards.")

    @property
    def store_url(self) -> str:
        return self.storage_url or str(self.home / "objects")

    @property
    def database(self) -> Path:
        return self.db_path or self.home / "fmp.duckdb"

    @property
    def policy_store(self) -> Path | str:
        """What ``PolicyStore`` opens: ``FMP_STORE_URL`` when set, else the DuckDB file."""
        return self.policy_store_url or self.database


# --- the settings file: one source for the CLI, `make serve` and the worker's flow runs -----------

#: ``<FMP_HOME>/settings.env``: written by ``make serve`` and ``fmp settings --set``, read by every
#: ``fmp`` command and every flow run, so a command in any terminal uses the worker's settings.
SETTINGS_FILE = "settings.env"
#: What a settings file may set: fmp's own variables, boto3's credentials and region, and the
#: Prefect API the CLI's flow runs report to.
_FILE_PREFIXES = ("FMP_", "AWS_")
_FILE_NAMES = frozenset({"PREFECT_API_URL"})
#: Where a command and the worker must agree: a value in the environment that differs from the
#: file's is an error for ``fmp`` (its publish would land where the worker does not look).
SHARED = ("FMP_STORAGE_URL", "FMP_S3_ENDPOINT_URL", "FMP_DB_PATH", "FMP_STORE_URL", "FMP_CATALOG")


class SettingsFileError(ValueError):
    """A malformed settings file (the message names the file and line)."""


def settings_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$FMP_HOME/settings.env`` (``FMP_HOME`` from the environment, default ``.fmp``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("FMP_HOME") or ".fmp") / SETTINGS_FILE


def _allowed(name: str) -> bool:
    return name.startswith(_FILE_PREFIXES) or name in _FILE_NAMES


def parse_settings_file(text: str, path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments and blank lines skipped, one pair of quotes stripped).

    Raises:
        SettingsFileError: a line without ``=``, a bad name, a name outside ``FMP_*``, ``AWS_*``
            and ``PREFECT_API_URL``, or ``FMP_HOME`` (the file lives in it); names the line.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise SettingsFileError(f"{path}:{number}: expected NAME=value, got {raw.strip()!r}")
        if not _allowed(name) or name == "FMP_HOME":
            raise SettingsFileError(f"{path}:{number}: {name} cannot be set here; the file sets "
                                    "FMP_* (not FMP_HOME), AWS_* and PREFECT_API_URL")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def read_settings_file(path: Path | None = None) -> dict[str, str]:
    """The settings file's values; empty when there is no file."""
    path = path or settings_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return parse_settings_file(text, path)


def write_settings_file(updates: Mapping[str, str], path: Path | None = None) -> Path:
    """Set (or, with an empty value, remove) names in the settings file; returns its path."""
    path = path or settings_file()
    values = read_settings_file(path)
    for name, value in updates.items():
        if not _allowed(name) or name == "FMP_HOME" or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise SettingsFileError(f"{name} cannot be set in {path}; it takes FMP_* (not "
                                    "FMP_HOME), AWS_* and PREFECT_API_URL")
        if value:
            values[name] = value
        else:
            values.pop(name, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{name}={value}\n" for name, value in sorted(values.items()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# fmp settings: read by every fmp command and flow run (FMP_HOME="
                   f"{path.parent}); the environment overrides them\n{body}")
    tmp.replace(path)
    return path


def apply_settings_file(environ: MutableMapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Put the settings file's values into the environment where it has none.

    Returns:
        ``{name: (environment value, file value)}`` for the shared settings (``SHARED``) that
        the environment sets to something else than the file.
    """
    env = os.environ if environ is None else environ
    conflicts = {}
    for name, value in read_settings_file(settings_file(env)).items():
        current = env.get(name)
        if current is None or current == "":
            env[name] = value
        elif name in SHARED and current != value:
            conflicts[name] = (current, value)
    return conflicts
