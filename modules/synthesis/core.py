"""Task text -> validated program, with repairs; stored once per task in the policy store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from modules.program import Program
from modules.synthesis.errors import SynthesisError
from modules.synthesis.synthesizers import Attempt, GrammarSynthesizer, Synthesizer
from modules.synthesis.validate import extract_code, validate

MAX_TRIES = 3


@dataclass(frozen=True)
class SynthesisResult:
    """A validated program and how it was reached."""

    task_text: str
    task_hash: str
    program: Program
    synthesizer: str
    model: str
    version: str
    attempts: list[Attempt]

    @property
    def source(self) -> str:
        return self.program.source


def normalise_task(task_text: str) -> str:
    """What makes two task texts the same task: case and spacing do not count."""
    return " ".join(task_text.lower().split())


def task_hash(task_text: str) -> str:
    """sha256 hex of the normalised task text."""
    return hashlib.sha256(normalise_task(task_text).encode()).hexdigest()


def synthesize(task_text: str, synthesizer: Synthesizer | None = None, answer_type: str = "bool",
               max_tries: int = MAX_TRIES) -> SynthesisResult:
    """Ask ``synthesizer`` for a program, validate it, and send errors back for repairs.

    Args:
        task_text: the question, e.g. "Is there a red circle left of a blue square?".
        synthesizer: what writes candidate programs; default the offline grammar compiler.
        answer_type: what the program returns, ``bool`` or ``str``.
        max_tries: tries in all (the first and its repairs); a deterministic synthesizer
            gets one, since a repair could not change its answer.

    Raises:
        SynthesisError: no valid program; the message holds the last attempt and its errors.
    """
    if not task_text.strip():
        raise SynthesisError("the task text is empty; pass a question such as "
                             "'Is there a red circle left of a blue square?'")
    synthesizer = synthesizer or GrammarSynthesizer()
    attempts: list[Attempt] = []
    tries = 1 if synthesizer.deterministic else max_tries
    for _ in range(tries):
        text = synthesizer.propose(task_text, answer_type, attempts)
        source = extract_code(text)
        checked = validate(source, answer_type)
        attempts.append(Attempt(text, source, checked.errors))
        if checked.ok:
            assert checked.program is not None
            return SynthesisResult(task_text, task_hash(task_text), checked.program, synthesizer.name,
                                   synthesizer.model, synthesizer.version, attempts)
    last = attempts[-1]
    errors = "\n".join(f"  - {e}" for e in last.errors)
    raise SynthesisError(
        f"{synthesizer.name} synthesizer ({synthesizer.model}) gave no valid program for "
        f"{task_text!r} in {len(attempts)} {'try' if len(attempts) == 1 else 'tries'}. "
        f"Last attempt:\n{last.source}Its errors:\n{errors}",
        [(a.text, a.errors) for a in attempts])
