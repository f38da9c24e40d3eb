"""Which synthesizer writes programs, configured from ``FMP_LLM_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modules.synthesis.errors import SynthesisError
from modules.synthesis.synthesizers import GrammarSynthesizer, LLMSynthesizer, Synthesizer

SYNTHESIZERS = ("grammar", "openai", "transformers")


class LLMSettings(BaseSettings):
    """LLM synthesizer settings; each field can be set as ``FMP_LLM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FMP_LLM_", frozen=True)

    base_url: str = Field("", description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    model: str = Field("", description="Model name at the endpoint, or a local path for transformers.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    secret_block: str = Field("", description="Prefect Secret block holding the API key, used when the "
                              "api_key_env variable is unset; the flows load it and hand the key in.")
    device: str = Field("cpu", description="Device of a local transformers model.")
    dtype: str = Field("float32", description="Weights dtype of a local transformers model.")
    max_tokens: int = Field(1024, gt=0, description="Most tokens one answer may have.")
    timeout_s: float = Field(120.0, gt=0, description="HTTP timeout per request.")


def make_synthesizer(name: str = "grammar", model: str | None = None, base_url: str | None = None,
                     settings: LLMSettings | None = None, api_key: str | None = None) -> Synthesizer:
    """A synthesizer by name; arguments override the environment settings.

    ``api_key``: the openai synthesizer's key; without it, ``$<api_key_env>``. The flows load
    ``secret_block`` (a Prefect Secret) into it; this module never does.

    Raises:
        SynthesisError: an unknown name, or an LLM synthesizer without its endpoint or model.
    """
    settings = settings or LLMSettings()
    model = model or settings.model
    if name == "grammar":
        return GrammarSynthesizer()
    if name == "openai":
        base_url = base_url or settings.base_url
        if not base_url or not model:
            raise SynthesisError("the openai synthesizer needs an endpoint and a model: set "
                                 "FMP_LLM_BASE_URL and FMP_LLM_MODEL (or pass --base-url/--model)")
        from modules.synthesis.openai_client import OpenAIChatClient

        return LLMSynthesizer("openai", OpenAIChatClient(
            base_url, model, api_key, api_key_env=settings.api_key_env,
            timeout_s=settings.timeout_s, max_tokens=settings.max_tokens))
    if name == "transformers":
        if not model:
            raise SynthesisError("the transformers synthesizer needs a local model path: set "
                                 "FMP_LLM_MODEL (or pass --model)")
        from modules.synthesis.hf_client import TransformersChatClient

        return LLMSynthesizer("transformers", TransformersChatClient(
            model, device=settings.device, dtype=settings.dtype, max_new_tokens=settings.max_tokens))
    raise SynthesisError(f"unknown synthesizer {name!r}; valid: {list(SYNTHESIZERS)}")
