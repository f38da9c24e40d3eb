"""Vision chat over an OpenAI-compatible endpoint (kind ``openai``): vLLM, Ollama, OpenAI, ...

Each call becomes one chat request: the question of ``fm_text.question_for`` and, except
for llm_query, the call's image as a base64 PNG ``image_url`` part. Transient HTTP errors
are retried by the client. Each call's usage comes from the token counts the endpoint
reports for its request: FLOPs are 2 x declared parameters x tokens, the price is the token
bill at the spec's per-token prices. A call that cannot be sent (an empty patch) or whose
reply cannot be read is that call's ``CallFailure``, with its usage; the other calls keep
their answers and no request is sent twice.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modules.backends import fm_text
from modules.backends.base import Backend, Call, CallFailure, Output, Usage
from modules.catalog import OpenAISpec


class OpenAIBackend(Backend):
    kind = "openai"
    spec: OpenAISpec

    def setup(self) -> None:
        if getattr(self, "_client", None) is not None:
            return
        from modules.synthesis.openai_client import OpenAIChatClient

        spec = self.spec
        self._client = OpenAIChatClient(
            spec.base_url, spec.model, spec.api_key.get_secret_value() if spec.api_key else None,
            api_key_env=spec.api_key_env,
            timeout_s=spec.timeout_s, max_retries=spec.max_retries, backoff_s=spec.backoff_s,
            temperature=0.0, max_tokens=spec.max_tokens)
        self._lock = threading.Lock()  # infer answers calls from a thread pool
        self.prompt_tokens = 0  # totals since setup, for logs and tests
        self.completion_tokens = 0

    def messages(self, call: Call) -> list[dict[str, Any]]:
        """The chat request for one call."""
        content: list[dict[str, Any]] = [{"type": "text", "text": fm_text.question_for(call)}]
        if call.function != "llm_query":
            if call.image is None or 0 in call.image.shape[:2]:
                raise ValueError(f"backend {self.name!r}: {call.function}() got an empty image patch")
            content.append({"type": "image_url", "image_url": {"url": fm_text.png_data_url(call.image)}})
        return [{"role": "user", "content": content}]

    def token_usage(self, prompt_tokens: int, completion_tokens: int) -> Usage:
        """The usage of one request that took these tokens."""
        spec = self.spec
        price = (prompt_tokens * spec.price_per_1m_input_tokens
                 + completion_tokens * spec.price_per_1m_output_tokens) / 1e6
        tokens = prompt_tokens + completion_tokens
        return Usage(2.0 * spec.n_params * max(tokens, 1), spec.n_params, price, tokens)

    def _one(self, call: Call) -> Output:
        try:
            messages = self.messages(call)
        except ValueError as exc:  # nothing to send: fails alone, no tokens used
            return Output(CallFailure(str(exc)), self.token_usage(0, 0))
        answer = self._client.complete(messages)
        with self._lock:
            self.prompt_tokens += answer.prompt_tokens
            self.completion_tokens += answer.completion_tokens
        usage = self.token_usage(answer.prompt_tokens, answer.completion_tokens)
        try:
            return Output(fm_text.parse_answer(call, answer.text), usage)
        except ValueError as exc:
            return Output(CallFailure(str(exc)), usage)

    def infer(self, calls: list[Call]) -> list[Output]:
        if self.spec.max_concurrency == 1 or len(calls) == 1:
            return [self._one(c) for c in calls]
        with ThreadPoolExecutor(max_workers=min(self.spec.max_concurrency, len(calls))) as pool:
            return list(pool.map(self._one, calls))

    def flops(self, call: Call) -> float:
        """Before the call runs: 2 x declared parameters x one token."""
        return self.token_usage(0, 0).flops

    def params(self) -> int:
        return self.spec.n_params
