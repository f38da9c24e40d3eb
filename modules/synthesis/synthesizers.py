"""Synthesizers turn task text into candidate program text; ``core`` validates and repairs.

* ``GrammarSynthesizer`` — the deterministic compiler for the benchmark grammar (offline).
* ``LLMSynthesizer`` — prompts a chat model with the API and, on a repair, with the errors of
  its previous answers. Any client with ``complete(messages) -> Completion`` works: the
  OpenAI-compatible endpoint client and the local transformers client are provided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from modules.synthesis import grammar
from modules.synthesis.api import PROMPT_VERSION, repair_prompt, system_prompt, task_prompt
from modules.synthesis.errors import GrammarError

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """One chat answer and its token usage (0 when the backend does not say)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient(Protocol):
    model: str

    def complete(self, messages: list[Message]) -> Completion: ...


@dataclass(frozen=True)
class Attempt:
    """One try: the raw answer, the program taken from it, and its validation errors."""

    text: str
    source: str
    errors: list[str] = field(default_factory=list)


class Synthesizer(Protocol):
    name: str
    model: str
    version: str
    deterministic: bool  # a repair cannot change a deterministic synthesizer's answer

    def propose(self, task_text: str, answer_type: str, history: list[Attempt]) -> str: ...


class GrammarSynthesizer:
    """The benchmark grammar's compiler, labelled as what it is: not a language model."""

    name = "grammar"
    model = "grammar-compiler"
    version = grammar.VERSION
    deterministic = True

    def propose(self, task_text: str, answer_type: str, history: list[Attempt]) -> str:
        if answer_type != "bool":
            raise GrammarError(f"the grammar compiler writes yes/no programs only, "
                               f"not answer_type {answer_type!r}")
        return grammar.compile_task(task_text)


class LLMSynthesizer:
    """Asks a chat model for a program; each repair replays the conversation plus the errors."""

    deterministic = False
    version = PROMPT_VERSION

    def __init__(self, name: str, client: ChatClient) -> None:
        self.name = name
        self.client = client
        self.model = client.model
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def messages(self, task_text: str, answer_type: str, history: list[Attempt]) -> list[Message]:
        """The conversation for the next try."""
        messages = [{"role": "system", "content": system_prompt(answer_type)},
                    {"role": "user", "content": task_prompt(task_text)}]
        for attempt in history:
            messages += [{"role": "assistant", "content": attempt.text},
                         {"role": "user", "content": repair_prompt(attempt.errors)}]
        return messages

    def propose(self, task_text: str, answer_type: str, history: list[Attempt]) -> str:
        answer = self.client.complete(self.messages(task_text, answer_type, history))
        self.prompt_tokens += answer.prompt_tokens
        self.completion_tokens += answer.completion_tokens
        return answer.text
