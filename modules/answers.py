"""The one answer normaliser: how answers and labels are compared and stored as text.

The ledger (``policy_store``: stored answers and labels, rewards), the benchmark's ground
truth and every harness score use this rule, so "right" and "loss" never disagree.

Rule (``normalise_answer``):

* ``None`` (a failed item, no answer) stays ``None``.
* ``True``/``False`` (Python or numpy booleans) become ``"yes"``/``"no"``.
* A string is trimmed and lower-cased, loses trailing punctuation and quotes
  (``. , ; : ! ? " '``, so ``"Yes!"`` == ``"Yes."`` == ``"yes"``), and then
  ``"true"``/``"false"`` become ``"yes"``/``"no"`` and ``"n/a"`` becomes ``NA`` (``"N/A"``),
  the answer of a question that has none.
* Anything else (numbers included) is a ``TypeError``: convert it to ``str`` first.
"""

from __future__ import annotations

from typing import overload

import numpy as np

#: The answer of a question that has no answer on an item (no such object, no such fact).
NA = "N/A"

#: Characters stripped from the end of a free-text answer ("Yes." == "yes").
_TRAILING = ".,;:!?\"' \t\n"

_SYNONYMS = {"true": "yes", "false": "no", "n/a": NA}


@overload
def normalise_answer(value: str | bool | np.bool_) -> str: ...
@overload
def normalise_answer(value: str | bool | np.bool_ | None) -> str | None: ...


def normalise_answer(value: str | bool | np.bool_ | None) -> str | None:
    """The canonical text form of an answer or label (the rule is in the module docstring).

    Raises:
        TypeError: ``value`` is not a bool, numpy bool, str or None.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):  # backends may return numpy booleans
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value.strip().lower().rstrip(_TRAILING).strip()
        return _SYNONYMS.get(text, text)
    raise TypeError(
        f"answer {value!r} has type {type(value).__name__}; expected bool, str or None "
        "(convert numbers to str before storing them)"
    )
