"""Answer normalisation for the ledger (answers/labels stored as text) and rewards.

The rule lives in ``modules.answers`` (shared with the benchmark's ground truth); this
module only reports a value it cannot normalise as the policy store's ``AnswerError``.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from modules import answers
from policy_store.errors import AnswerError


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
