"""Errors of program synthesis and of the LLM clients it uses.

    FmpModuleError (modules.errors)
    ├── SynthesisError (ValueError)      no valid program after the allowed repairs
    │   └── GrammarError                 a task outside the grammar compiler's grammar
    └── LLMError (ConnectionError)       an LLM endpoint or local model failed to answer
"""

from __future__ import annotations

from modules.errors import FmpModuleError


class SynthesisError(FmpModuleError, ValueError):
    """Synthesis gave up; ``attempts`` holds (answer text, errors) of every try."""

    def __init__(self, message: str, attempts: list[tuple[str, list[str]]] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


class GrammarError(SynthesisError):
    """The grammar compiler does not understand the task text."""


class LLMError(FmpModuleError, ConnectionError):
    """An LLM endpoint or model could not answer (HTTP error, timeout, malformed reply)."""
