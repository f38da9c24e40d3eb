"""A scripted backend for tests and docs: answers from a table, costs as declared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.backends.base import Backend, Call, Output

if TYPE_CHECKING:
    from modules.catalog import FakeSpec


class FakeBackend(Backend):
    kind = "fake"
    spec: FakeSpec

    def setup(self) -> None:
        self.calls: list[Call] = []

    def infer(self, calls: list[Call]) -> list[Output]:
        self.calls.extend(calls)
        out = []
        for call in calls:
            key = "|".join((call.function, *call.args))
            value = self.spec.answers.get(key, self.spec.default)
            out.append(Output(value, self.declared_usage(self.flops(call), self.params())))
        return out

    def flops(self, call: Call) -> float:
        return self.spec.flops_per_call

    def params(self) -> int:
        return self.spec.n_params
