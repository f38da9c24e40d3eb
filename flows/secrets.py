"""API keys kept in Prefect Secret blocks: loaded here, handed to ``modules`` as plain keys.

Two knobs name a block: ``FMP_LLM_SECRET_BLOCK`` (the openai synthesizer,
``modules.synthesis.LLMSettings.secret_block``) and ``secret_block`` of an ``openai`` catalog
entry. As always, a key in the environment variable ``api_key_env`` wins and the block is
not read. ``modules`` never imports Prefect (``modules.tasks`` aside): the flows load the
block and pass the key in, ``make_synthesizer(api_key=...)`` and ``OpenAISpec.api_key``.
"""

from __future__ import annotations

import os
from typing import cast

from pydantic import SecretStr

from modules.catalog import OpenAISpec
from modules.registry import Registry
from modules.synthesis import LLMSettings
from modules.synthesis.errors import LLMError


def secret_value(block: str) -> str:
    """The value of the Prefect Secret block ``block``; LLMError naming it when it cannot load."""
    from prefect.blocks.system import Secret

    try:
        secret = cast("Secret[str]", Secret.load(block))  # a Secret outside an event loop
        return str(secret.get())
    except ValueError as exc:  # Prefect raises ValueError for a block that does not exist
        raise LLMError(f"Prefect Secret block {block!r} cannot be loaded: {exc}") from exc


def api_key_for(env_var: str | None, secret_block: str | None) -> str | None:
    """The key held in ``secret_block``, or None when there is no block or ``$env_var`` is set
    (the client then reads the variable itself)."""
    if not secret_block or (env_var and os.environ.get(env_var)):
        return None
    return secret_value(secret_block)


def synthesizer_api_key(name: str, settings: LLMSettings | None = None) -> str | None:
    """The key for ``make_synthesizer(name, api_key=...)``: only the openai synthesizer has one."""
    if name != "openai":
        return None
    settings = settings or LLMSettings()
    return api_key_for(settings.api_key_env, settings.secret_block or None)


def with_api_keys(registry: Registry) -> Registry:
    """``registry`` with the key of every ``openai`` backend that names a secret block filled in
    (the same registry when none does)."""
    specs, changed = [], False
    for spec in registry.specs.values():
        if isinstance(spec, OpenAISpec) and spec.api_key is None:
            key = api_key_for(spec.api_key_env, spec.secret_block)
            if key is not None:
                spec, changed = spec.model_copy(update={"api_key": SecretStr(key)}), True
        specs.append(spec)
    return Registry(specs) if changed else registry
