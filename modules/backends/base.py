"""The one interface every backend implements.

A backend loads its model in ``setup()`` (once per worker process) and answers a
list of calls in ``infer()``: per call an :class:`Output`, the value together with the
:class:`Usage` it ran up. It never chooses itself: the runtime hands it calls.
``flops(call)`` and ``params()`` estimate a call's cost before it runs (unit costs for
the policies); what a call did cost is only ever read from its ``Output.usage``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from modules.catalog import BackendSpec

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


def pixels(call: Call) -> np.ndarray:
    """The image of a call already checked to have one (every function but ``llm_query``)."""
    assert call.image is not None, f"{call.function}() call without an image"
    return call.image


@dataclass(frozen=True)
class Usage:
    """What answering one call cost, as the backend measured it.

    Attributes:
        flops: floating-point operations the call ran.
        params: parameter count of the model that answered.
        price: US dollars the call cost.
        tokens: tokens processed (prompt and generated) where the model counts them, else 0.
        confidence: the model's probability for its answer where it has one, else None.
        cached: True when the answer was reused, not computed (its costs are those of the
            computation that first produced it).
    """

    flops: float
    params: int
    price: float
    tokens: int = 0
    confidence: float | None = None
    cached: bool = False


@dataclass(frozen=True)
class CallFailure:
    """Stands in for the value of a call the backend could not answer."""

    message: str

    def at(self, where: str) -> CallFailure:
        """The same failure, its message prefixed by where it happened."""
        return CallFailure(f"{where}: {self.message}")


@dataclass(frozen=True)
class Output:
    """One call's answer (a value of the type ``FUNCTIONS`` names, or a CallFailure) and its usage."""

    value: Any
    usage: Usage


class Backend(ABC):
    """A model that serves one or more generic functions."""

    kind: ClassVar[str]
    #: Each kind narrows this to its own spec class.
    spec: BackendSpec

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def setup(self) -> None:
        """Load weights; idempotent, heavy imports belong here."""

    @abstractmethod
    def infer(self, calls: list[Call]) -> list[Output]:
        """Answer calls in order, each with its usage; values typed per ``FUNCTIONS``.

        Raises ValueError (or TypeError) when the batch holds a call the backend cannot
        answer at all. A call that ran but whose reply cannot be read may instead come back
        as a ``CallFailure`` value, with the usage it ran up.
        """

    @abstractmethod
    def flops(self, call: Call) -> float:
        """Estimated floating-point operations of one call, before it runs (unit costs)."""

    @abstractmethod
    def params(self) -> int:
        """Parameter count of the model that answers (the paper's cost unit)."""

    def declared_usage(self, flops: float, params: int, tokens: int = 0,
                       confidence: float | None = None) -> Usage:
        """A call's usage at the spec's declared price per call."""
        return Usage(float(flops), int(params), float(self.spec.price), tokens, confidence)

    def estimate(self, call: Call) -> Usage:
        """The usage charged for a call the backend rejected: its estimated cost."""
        return self.declared_usage(self.flops(call), self.params())

    def answer(self, calls: list[Call]) -> list[Output]:
        """``infer``; when it rejects the batch, each call alone, so a bad call fails alone.

        A call rejected alone comes back as a ``CallFailure`` charged ``estimate(call)``.
        """
        try:
            return self.infer(calls)
        except (ValueError, TypeError):
            outputs: list[Output] = []
            for call in calls:
                try:
                    outputs.extend(self.infer([call]))
                except (ValueError, TypeError) as exc:
                    outputs.append(Output(CallFailure(str(exc)), self.estimate(call)))
            return outputs
