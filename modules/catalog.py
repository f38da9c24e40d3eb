"""Backend specs are data: a YAML catalog validated by a pydantic union on ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from modules.backends.base import FUNCTIONS
from modules.errors import CatalogError

DEFAULT_CATALOG = Path(__file__).parent / "catalog.yaml"
WEIGHTS_DIR = Path(__file__).parent / "weights"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Unique backend name.")
    functions: list[str] = Field(min_length=1, description="Generic functions it serves.")
    description: str = Field("", description="What the model is, for humans.")
    price: float = Field(0.0, ge=0, description="Declared price per call, in $.")
    baseline_only: bool = Field(
        False, description="Only used when pinned (the monolithic baseline), never routed to."
    )

    def model_post_init(self, __context: Any) -> None:
        unknown = sorted(set(self.functions) - set(FUNCTIONS))
        if unknown:
            raise ValueError(f"unknown functions {unknown}; valid: {sorted(FUNCTIONS)}")


class TorchVisionSpec(_Spec):
    kind: Literal["torch_vision"] = "torch_vision"
    architecture: str = Field(description="Model family in modules.backends.vision.ARCHITECTURES.")
    weights: str = Field(description="File name under modules/weights/.")
    input_size: int = Field(gt=0, description="Square input resolution in pixels.")
    width: int = Field(gt=0, description="Channel width of the first stage.")


class FactTableSpec(_Spec):
    kind: Literal["fact_table"] = "fact_table"
    facts: str = Field(description="JSON file of {question: answer} under modules/weights/.")
    matcher: Literal["exact", "token_overlap"] = Field(description="How questions are matched.")


class FakeSpec(_Spec):
    kind: Literal["fake"] = "fake"
    answers: dict[str, Any] = Field(default_factory=dict, description="Answer per joined args.")
    default: Any = Field(None, description="Answer when args are not in answers.")
    flops_per_call: float = Field(1.0, ge=0, description="Declared FLOPs per call.")
    n_params: int = Field(1, ge=0, description="Declared parameter count.")


BackendSpec = Annotated[TorchVisionSpec | FactTableSpec | FakeSpec, Field(discriminator="kind")]
_SPECS = TypeAdapter(list[BackendSpec])


def parse_catalog(entries: list[dict[str, Any]], source: str = "<catalog>") -> list[BackendSpec]:
    """Validate catalog entries; raise CatalogError naming the source and entry."""
    try:
        specs = _SPECS.validate_python(entries)
    except ValidationError as exc:
        raise CatalogError(f"{source}: invalid backend catalog: {exc}") from exc
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogError(f"{source}: duplicate backend names {dupes}")
    return specs


def load_catalog(path: Path | str = DEFAULT_CATALOG) -> list[BackendSpec]:
    """Read and validate a YAML catalog (a list of backend specs)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read backend catalog: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("backends"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'backends' list")
    return parse_catalog(data["backends"], str(path))
