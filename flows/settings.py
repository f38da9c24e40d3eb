"""All settings in one place, read from the environment with the ``FMP_`` prefix."""

from __future__ import annotations

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
    catalog: Path = Field(DEFAULT_CATALOG, description="Backend catalog YAML.")
    lam: float = Field(1.0, ge=0, description="Cost weight λ in reward = -λ·cost - loss/N "
                                              "(cost in units of one monolithic call).")
    seed: int = Field(0, description="Seed for policy sampling; with the pinned version, replays are exact.")
    lock_timeout_s: float = Field(60.0, gt=0, description="How long to wait for the DuckDB file lock.")
    model_threads: int = Field(1, ge=1, description="CPU threads per model call (torch's intra-op "
                                                    "threads). The models are small; see "
                                                    "flows._runtime.limit_model_threads.")

    @property
    def store_url(self) -> str:
        return self.storage_url or str(self.home / "objects")

    @property
    def database(self) -> Path:
        return self.db_path or self.home / "fmp.duckdb"
