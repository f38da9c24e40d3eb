"""The one interface every backend implements.

A backend loads its model in ``setup()`` (once per worker process) and answers a
list of calls in ``infer()``. It never chooses itself: the runtime hands it calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

#: The generic functions a program may call, and what each returns.
FUNCTIONS: dict[str, str] = {
    "find": "list of boxes (x0, y0, x1, y1) in the call image's pixels",
    "exists": "bool",
    "count": "int",
    "verify_property": "bool",
    "query": "str",
    "llm_query": "str",
    "read_text": "str",  # the text written in the patch: upper-case words, "" if none
}

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class Call:
    """One module call as a backend sees it.

    Attributes:
        function: one of ``FUNCTIONS``.
        image: the HxWx3 uint8 pixels the call looks at (a crop for patch calls);
            ``None`` for ``llm_query``.
        args: the call's string arguments: ``(name,)`` for find/exists/count,
            ``(name, prop)`` for verify_property, ``(question,)`` for query/llm_query,
            ``()`` for read_text.
    """

    function: str
    image: np.ndarray | None
    args: tuple[str, ...] = field(default_factory=tuple)


class Backend(ABC):
    """A model that serves one or more generic functions."""

    kind: ClassVar[str]

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def setup(self) -> None:
        """Load weights; idempotent, heavy imports belong here."""

    @abstractmethod
    def infer(self, calls: list[Call]) -> list[Any]:
        """Answer calls in order; types per ``FUNCTIONS``."""

    @abstractmethod
    def flops(self, call: Call) -> float:
        """Measured floating-point operations of one call (cached per input shape)."""

    @abstractmethod
    def params(self) -> int:
        """Parameter count of the model that answers (the paper's cost unit)."""

    def price(self, call: Call) -> float:
        """Declared $ cost of one answered call; per-token backends override it."""
        return float(self.spec.price)
