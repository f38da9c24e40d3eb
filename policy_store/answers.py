"""Answer normalisation for the ledger (answers/labels stored as text) and rewards.

The rule lives in ``modules.answers`` (shared with the benchmark's ground truth); this
module reports a value it cannot normalise as the policy store's ``AnswerError`` and reads
a label against its stream's answer type (``normalise_label``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from modules import answers
from policy_store.errors import AnswerError

#: Label texts (after ``normalise_answer``) that a bool stream reads as True / False.
BOOL_TEXTS: dict[str, bool] = {"yes": True, "no": False, "1": True, "0": False}


@overload
def normalise_answer(value: str | bool | np.bool_) -> str: ...
@overload
def normalise_answer(value: str | bool | np.bool_ | None) -> str | None: ...


def normalise_answer(value: bool | np.bool_ | str | None) -> str | None:
    """``modules.answers.normalise_answer``; a value of another type is an ``AnswerError``."""
    try:
        return answers.normalise_answer(value)
    except TypeError as exc:
        raise AnswerError(str(exc)) from None


@dataclass(frozen=True)
class NormalisedLabel:
    """A label read against its stream's answer type.

    ``value`` is what the learner gets (a bool on a bool stream, the normalised text on a
    str stream), ``text`` what the ledger stores (``normalise_answer(value)``), and
    ``changed`` says the label was not already in that form (``"False"`` or ``"1"`` on a
    bool stream, ``"Red."`` on a str stream, a JSON bool on a str stream).
    """

    value: bool | str
    text: str
    changed: bool


def normalise_label(raw: bool | str, answer_type: Literal["bool", "str"]) -> NormalisedLabel:
    """Read a label for a stream of ``answer_type``.

    bool streams take JSON booleans and the texts yes/no/true/false/1/0 (any case, trailing
    punctuation ignored); str streams take any non-empty text (a JSON boolean becomes
    yes/no).

    Raises:
        AnswerError: the label is empty, of another type, or not a yes/no on a bool stream.
    """
    text = normalise_answer(raw)
    if answer_type == "bool":
        if isinstance(raw, bool):
            return NormalisedLabel(raw, text, False)
        if text not in BOOL_TEXTS:
            raise AnswerError(f"label {raw!r} on a bool stream; expected true/false, or the text "
                              "yes/no/true/false/1/0")
        value = BOOL_TEXTS[text]
        return NormalisedLabel(value, normalise_answer(value), True)
    if answer_type != "str":
        raise AnswerError(f"answer_type {answer_type!r} is not 'bool' or 'str'")
    if not text:
        raise AnswerError(f"label {raw!r} is empty after normalisation; give the answer's text")
    return NormalisedLabel(text, text, isinstance(raw, bool) or raw != text)
