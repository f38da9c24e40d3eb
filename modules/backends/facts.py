"""A stand-in for a language model: answers ``llm_query`` from a table of facts.

Kind ``fact_table``: the spec names a JSON ``{question: answer}`` file under
``modules/weights/`` and a matcher:

* ``exact`` — the normalised question (lower case, punctuation stripped, "color" ->
  "colour") must equal a stored one; otherwise the answer is ``"unknown"``.
* ``token_overlap`` — the stored question with the best Jaccard overlap of content words
  (stop words dropped) answers, if the overlap is at least ``MIN_OVERLAP``; robust to
  paraphrase ("how many sides has a triangle" finds "how many sides does a triangle have?").

Costs are estimates, not measurements: ``flops`` counts token comparisons, ``params`` the
tokens stored in the table. Confidence: 1 for an exact match, the Jaccard overlap for a
token-overlap match, none for "unknown".
"""

from __future__ import annotations

import json

from modules.backends.base import Backend, Call, Output
from modules.catalog import WEIGHTS_DIR, FactTableSpec

UNKNOWN = "unknown"
MIN_OVERLAP = 0.5
STOP_WORDS = frozenset(
    "a an the is are was be do does did has have of to in on by and or you we i it what which "
    "how get at each".split())


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces, British spelling of colour."""
    cleaned = "".join(c if c.isalnum() else " " for c in text.lower())
    return " ".join("colour" if t == "color" else t for t in cleaned.split())


def content_tokens(text: str) -> frozenset[str]:
    """The words of ``text`` that carry meaning (stop words dropped)."""
    return frozenset(t for t in normalise(text).split() if t not in STOP_WORDS)


def load_fact_table(backend: str, file_name: str) -> dict[str, str]:
    """Read a {question: answer} JSON table under the weights folder; ValueError says why not."""
    path = WEIGHTS_DIR / file_name
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"backend {backend!r}: cannot read fact table {path}: {exc}") from exc
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"backend {backend!r}: {path} must map question strings to answer strings")
    return table


class FactTableBackend(Backend):
    """Looks questions up in a fact table; never guesses below the match threshold."""

    kind = "fact_table"
    spec: FactTableSpec

    def setup(self) -> None:
        if getattr(self, "_exact", None) is not None:
            return
        table = load_fact_table(self.name, self.spec.facts)
        self._exact = {normalise(q): a for q, a in table.items()}
        self._keyed = [(content_tokens(q), a) for q, a in table.items()]
        self._n_tokens = sum(len(normalise(q).split()) + len(normalise(a).split())
                             for q, a in table.items())

    def infer(self, calls: list[Call]) -> list[Output]:
        params = self.params()
        out = []
        for call in calls:
            answer, confidence = self._answer(call)
            out.append(Output(answer, self.declared_usage(self.flops(call), params, confidence=confidence)))
        return out

    def _answer(self, call: Call) -> tuple[str, float | None]:
        """The answer and how well the question matched a stored one (None: no match)."""
        if call.function != "llm_query":
            raise ValueError(f"backend {self.name!r} serves only llm_query, got {call.function!r}")
        if len(call.args) != 1 or not isinstance(call.args[0], str):
            raise ValueError(f"llm_query expects one question string, got {call.args!r}")
        question = call.args[0]
        if self.spec.matcher == "exact":
            found = self._exact.get(normalise(question))
            return (UNKNOWN, None) if found is None else (found, 1.0)
        tokens = content_tokens(question)
        best, answer = 0.0, UNKNOWN
        for keys, value in self._keyed:  # ties keep the earlier fact: deterministic
            union = len(tokens | keys)
            score = len(tokens & keys) / union if union else 0.0
            if score > best:
                best, answer = score, value
        return (answer, best) if best >= MIN_OVERLAP else (UNKNOWN, None)

    def flops(self, call: Call) -> float:
        """Estimated comparisons: one per question token (exact), per token pair set-op (overlap)."""
        n = len(normalise(call.args[0]).split()) if call.args else 0
        if self.spec.matcher == "exact":
            return float(max(n, 1))
        return float(sum(n + len(keys) for keys, _ in self._keyed))

    def params(self) -> int:
        return self._n_tokens
