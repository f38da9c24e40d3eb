"""A client for OpenAI-compatible chat-completions endpoints (vLLM, Ollama, llama.cpp, OpenAI).

Used by the LLM synthesizer and by the ``openai`` backend kind. Transient failures
(connection errors, timeouts, HTTP 408/409/429/5xx) are retried with exponential backoff,
honouring ``Retry-After``; anything else fails at once with the endpoint's own message.
The API key comes from the argument, else an environment variable; local servers need none.
A key kept in a Prefect Secret block is loaded by the flows (``flows.secrets``) and handed
in as the argument: nothing in ``modules`` but ``modules.tasks`` imports Prefect.
"""

from __future__ import annotations

import os
import time
from typing import Any

from modules.synthesis.errors import LLMError
from modules.synthesis.synthesizers import Completion, Message

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0


def resolve_api_key(api_key: str | None, env_var: str | None) -> str | None:
    """The key to send: explicit, else ``$env_var``, else none."""
    if api_key:
        return api_key
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    return None


class OpenAIChatClient:
    """POSTs ``/chat/completions`` and returns the first choice's text and token usage."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 api_key_env: str | None = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 0.5,
                 temperature: float = 0.0, max_tokens: int = 1024) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LLMError(f"base URL {base_url!r} must start with http:// or https:// "
                           "(e.g. http://localhost:8000/v1 for vLLM)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = resolve_api_key(api_key, api_key_env)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.options = {"temperature": temperature, "max_tokens": max_tokens}
        self.retries = 0  # transient failures retried so far (for tests and logs)

    def complete(self, messages: list[Message] | list[dict[str, Any]], **options: Any) -> Completion:
        """One chat completion; ``options`` override temperature, max_tokens and the like."""
        body = {"model": self.model, "messages": messages, **self.options, **options}
        return _parse(self.url, self._post(body))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout_s)
            except httpx.TransportError as exc:
                if last:
                    raise LLMError(f"{self.url}: no answer after {attempt + 1} tries: "
                                   f"{type(exc).__name__}: {exc}") from exc
                self._wait(attempt, None)
                continue
            if response.status_code in RETRY_STATUS and not last:
                self._wait(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code != 200:
                hint = " (check the API key)" if response.status_code in (401, 403) else ""
                raise LLMError(f"{self.url}: HTTP {response.status_code}{hint}: {response.text[:300]}")
            try:
                reply: dict[str, Any] = response.json()
                return reply
            except ValueError as exc:
                raise LLMError(f"{self.url}: reply is not JSON: {response.text[:200]!r}") from exc
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        self.retries += 1
        delay = self.backoff_s * 2**attempt
        if retry_after:
            try:
                delay = min(float(retry_after), MAX_RETRY_AFTER_S)
            except ValueError:
                pass  # an HTTP date; keep the exponential delay
        time.sleep(delay)


def _parse(url: str, reply: dict[str, Any]) -> Completion:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"{url}: reply has no choices[0].message.content: {str(reply)[:300]}") from exc
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise LLMError(f"{url}: message content is {type(content).__name__}, not text")
    usage = reply.get("usage") or {}
    return Completion(content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
