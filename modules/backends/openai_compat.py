"""Vision chat over an OpenAI-compatible endpoint (kind ``openai``): vLLM, Ollama, OpenAI, ...

Each call becomes one chat request: the question of ``fm_text.question_for`` and, except
for llm_query, the call's image as a base64 PNG ``image_url`` part. Transient HTTP errors
are retried by the client. The endpoint's token usage is recorded per call: FLOPs are
2 x declared parameters x tokens, and ``usage``/``price`` give the token bill.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modules.backends import fm_text
from modules.backends.base import Backend, Call
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
            spec.base_url, spec.model, api_key_env=spec.api_key_env, secret_block=spec.secret_block,
            timeout_s=spec.timeout_s, max_retries=spec.max_retries, backoff_s=spec.backoff_s,
            temperature=0.0, max_tokens=spec.max_tokens)
        # Per call (keyed by the Call object, kept alive meanwhile): reply text and token usage.
        # When one reply cannot be read the executor retries the group call by call; the kept
        # replies spare the endpoint a second request.
        self._replies: dict[Call, str] = {}
        self._usage: dict[Call, tuple[int, int]] = {}
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

    def _one(self, call: Call) -> Any:
        text = self._replies.get(call)
        if text is None:
            answer = self._client.complete(self.messages(call))
            text = answer.text
            with self._lock:
                self._replies[call] = text
                self._usage[call] = (answer.prompt_tokens, answer.completion_tokens)
                self.prompt_tokens += answer.prompt_tokens
                self.completion_tokens += answer.completion_tokens
        return fm_text.parse_answer(call, text)

    def infer(self, calls: list[Call]) -> list[Any]:
        fm_text.forget_old(self._replies)
        fm_text.forget_old(self._usage)
        if self.spec.max_concurrency == 1 or len(calls) == 1:
            return [self._one(c) for c in calls]
        with ThreadPoolExecutor(max_workers=min(self.spec.max_concurrency, len(calls))) as pool:
            return list(pool.map(self._one, calls))

    def usage(self, call: Call) -> tuple[int, int]:
        """(prompt, completion) tokens the endpoint reported for a call answered by ``infer``."""
        return self._usage.get(call, (0, 0))

    def price(self, call: Call) -> float:
        """The call's $ cost at the spec's per-token prices."""
        p, c = self.usage(call)
        return (p * self.spec.price_per_1m_input_tokens + c * self.spec.price_per_1m_output_tokens) / 1e6

    def flops(self, call: Call) -> float:
        p, c = self.usage(call)
        return 2.0 * self.spec.n_params * max(p + c, 1)

    def params(self) -> int:
        return self.spec.n_params
