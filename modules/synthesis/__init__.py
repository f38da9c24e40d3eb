"""From task text to a validated program: prompt, parse, validate, type-check, repair.

``synthesize(task_text, synthesizer)`` runs the loop; ``make_synthesizer`` picks the
grammar compiler (offline, deterministic), an OpenAI-compatible endpoint, or a local
transformers model. No heavy import happens here: the LLM clients load lazily.
"""

from __future__ import annotations

from modules.synthesis.config import SYNTHESIZERS, LLMSettings, make_synthesizer
from modules.synthesis.core import MAX_TRIES, SynthesisResult, normalise_task, synthesize, task_hash
from modules.synthesis.errors import GrammarError, LLMError, SynthesisError
from modules.synthesis.synthesizers import (
    Attempt,
    ChatClient,
    Completion,
    GrammarSynthesizer,
    LLMSynthesizer,
    Synthesizer,
)
from modules.synthesis.validate import Validation, extract_code, validate

__all__ = [
    "MAX_TRIES", "SYNTHESIZERS", "Attempt", "ChatClient", "Completion", "GrammarError",
    "GrammarSynthesizer", "LLMError", "LLMSettings", "LLMSynthesizer", "SynthesisError",
    "SynthesisResult", "Synthesizer", "Validation", "extract_code", "make_synthesizer",
    "normalise_task", "synthesize", "task_hash", "validate",
]
