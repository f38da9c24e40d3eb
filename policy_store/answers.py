"""Answer normalisation shared by the ledger (answers/labels stored as text) and rewards."""

from __future__ import annotations

import numpy as np

from policy_store.errors import AnswerError

#: Characters stripped from the end of a free-text answer ("Yes." == "yes").
_TRAILING = ".,;:!?\"' \t\n"

_SYNONYMS = {"true": "yes", "false": "no"}


def normalise_answer(value: bool | np.bool_ | str | None) -> str | None:
    """Return the canonical text form of an answer or label.

    ``True``/``False`` become ``"yes"``/``"no"``; strings are lower-cased, stripped,
    lose trailing punctuation, and ``"true"``/``"false"`` map to ``"yes"``/``"no"``;
    ``None`` (a failed item) stays ``None`` (stored as SQL NULL).
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):  # backends may return numpy booleans
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value.strip().lower().rstrip(_TRAILING).strip()
        return _SYNONYMS.get(text, text)
    raise AnswerError(
        f"answer {value!r} has type {type(value).__name__}; expected bool, str or None "
        "(convert numbers to str before storing them)"
    )
