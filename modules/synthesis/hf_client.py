"""A local transformers causal LM as a chat client (loaded from a path, cached per process).

The conversation is rendered with the tokenizer's chat template when it has one, else as
``role: content`` lines ending in ``assistant:``. A prompt longer than the model's context
keeps its end (the task and the latest errors), and decoding is greedy, so answers repeat.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from modules.synthesis.errors import LLMError
from modules.synthesis.synthesizers import Completion, Message

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def load_causal_lm(path: str, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """(tokenizer, model) for a local path or model id, loaded once per process."""
    key = (path, device, dtype)
    with _lock:
        if key not in _loaded:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(
                    path, dtype="auto" if dtype == "auto" else getattr(torch, dtype))
            except (OSError, ValueError) as exc:
                raise LLMError(f"cannot load a causal LM from {path!r}: {exc}") from exc
            # PreTrainedModel.to is wrapped by functools.wraps, which mypy types as unbound
            _loaded[key] = (tokenizer, model.to(device).eval())  # type: ignore[arg-type]
        return _loaded[key]


class TransformersChatClient:
    """Greedy chat completions from a local causal LM."""

    def __init__(self, path: str | Path, *, device: str = "cpu", dtype: str = "float32",
                 max_new_tokens: int = 512) -> None:
        self.path = str(path)
        self.model = self.path
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens

    def render(self, tokenizer: Any, messages: list[Message]) -> str:
        """The prompt text for ``messages``."""
        if getattr(tokenizer, "chat_template", None):
            prompt: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return prompt
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def complete(self, messages: list[Message]) -> Completion:
        import torch

        tokenizer, model = load_causal_lm(self.path, self.device, self.dtype)
        ids = tokenizer(self.render(tokenizer, messages), return_tensors="pt")["input_ids"]
        limit = (getattr(model.config, "max_position_embeddings", None)
                 or getattr(model.config, "n_positions", None))
        new_tokens = self.max_new_tokens
        if limit:
            new_tokens = min(new_tokens, max(limit // 2, 1))
            ids = ids[:, -(limit - new_tokens):]  # keep the end: the task and the latest errors
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.no_grad():
            out = model.generate(ids.to(self.device), attention_mask=torch.ones_like(ids).to(self.device),
                                 max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        generated = out[0, ids.shape[1]:]
        text = tokenizer.decode(generated, skip_special_tokens=True)
        return Completion(text, int(ids.shape[1]), int(generated.shape[0]))
