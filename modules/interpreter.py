"""Run one validated program on one image as a generator of module calls.

The interpreter walks the program's tree itself (no ``exec``). Each generic function
call is *yielded* as a PendingCall; whoever drives the generator sends back the
backend's output. This lets a batch of items advance in lockstep so that calls of the
same call site and backend are answered together, and it gives short-circuit semantics
for free: a call that is never reached is never yielded, run, charged or learned from.
"""

from __future__ import annotations

import ast
import operator
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from modules.backends.base import Call
from modules.errors import ExecutionError
from modules.patch import PATCH_METHODS, ImagePatch
from modules.program import BUILTINS, CallSite, Program


@dataclass(frozen=True)
class Limits:
    """Bounds on one item's work and memory.

    ``max_seconds`` counts the interpreter's own time on the item, not the time its
    module calls wait for a backend. Strings, lists (elements counted through nested
    lists) and integers are bounded so that no single operation can exhaust memory.
    """

    max_steps: int = 20_000
    max_iterations: int = 1_000
    max_calls: int = 500
    max_seconds: float = 2.0
    max_str_len: int = 10_000
    max_list_len: int = 10_000
    max_int_bits: int = 64


@dataclass(frozen=True, eq=False)
class PendingCall:
    """A module call the program is waiting on."""

    site: CallSite
    call: Call
    patch: ImagePatch | None


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Continue(_Break):
    pass


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_BUILTINS: dict[str, Callable[..., Any]] = {"len": len, "abs": abs, "min": min, "max": max}
Run = Generator[PendingCall, Any, Any]


class Interpreter:
    """Evaluates a Program on one image; use ``run()`` to get the call generator."""

    def __init__(self, program: Program, image: np.ndarray, limits: Limits = Limits()) -> None:
        self.program = program
        self.limits = limits
        self.env: dict[str, Any] = {program.param: ImagePatch.whole(image)}
        self.steps = 0
        self.calls = 0
        self.busy_s = 0.0  # interpreter time spent before the last pause
        self._resumed = time.perf_counter()

    def run(self) -> Run:
        """Yield PendingCalls; the generator's return value is the program's answer."""
        self._resumed = time.perf_counter()
        try:
            yield from self._block(self.program.tree.body)
        except _Return as ret:
            return ret.value
        except _Break as stray:  # ast.parse accepts a stray break; only running finds it
            raise ExecutionError(f"line {stray.line}: break/continue outside a loop") from None
        return None

    def _tick(self, node: ast.AST) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise ExecutionError(f"line {getattr(node, 'lineno', '?')}: program exceeded "
                                 f"{self.limits.max_steps} steps")
        if self.busy_s + time.perf_counter() - self._resumed > self.limits.max_seconds:
            raise ExecutionError(f"line {getattr(node, 'lineno', '?')}: program exceeded its time "
                                 f"limit of {self.limits.max_seconds:g}s on this item")

    def _bounded(self, value: Any, node: ast.AST) -> Any:
        """Refuse values that could exhaust memory: long strings, big lists, huge integers."""
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(value, str) and len(value) > self.limits.max_str_len:
            raise ExecutionError(f"{where}: string of {len(value)} characters exceeds the limit "
                                 f"of {self.limits.max_str_len}")
        if isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
            raise ExecutionError(f"{where}: integer exceeds {self.limits.max_int_bits} bits")
        if isinstance(value, list) and _size(value, self.limits.max_list_len) > self.limits.max_list_len:
            raise ExecutionError(f"{where}: list exceeds {self.limits.max_list_len} elements "
                                 "(counting nested lists)")
        return value

    def _block(self, body: list[ast.stmt]) -> Run:
        for stmt in body:
            yield from self._stmt(stmt)

    def _stmt(self, node: ast.stmt) -> Run:
        self._tick(node)
        if isinstance(node, ast.Assign):
            target = node.targets[0]
            assert isinstance(target, ast.Name)  # parse_program admits plain-name targets only
            self.env[target.id] = yield from self._expr(node.value)
        elif isinstance(node, ast.If):
            test = yield from self._expr(node.test)
            yield from self._block(node.body if _truth(test, node) else node.orelse)
        elif isinstance(node, ast.For):
            yield from self._for(node)
        elif isinstance(node, ast.Return):
            value = None if node.value is None else (yield from self._expr(node.value))
            raise _Return(value)
        elif isinstance(node, ast.Expr):
            yield from self._expr(node.value)
        elif isinstance(node, ast.Break):
            raise _Break(node.lineno)
        elif isinstance(node, ast.Continue):
            raise _Continue(node.lineno)

    def _for(self, node: ast.For) -> Run:
        items = yield from self._expr(node.iter)
        if not isinstance(items, (list, tuple)):
            raise ExecutionError(f"line {node.lineno}: for-loops iterate over lists, got "
                                 f"{type(items).__name__}")
        if len(items) > self.limits.max_iterations:
            raise ExecutionError(f"line {node.lineno}: loop over {len(items)} items exceeds "
                                 f"{self.limits.max_iterations}")
        assert isinstance(node.target, ast.Name)  # parse_program admits plain-name targets only
        for item in items:
            self.env[node.target.id] = item
            try:
                yield from self._block(node.body)
            except _Continue:
                continue
            except _Break:
                break

    def _expr(self, node: ast.expr) -> Run:
        self._tick(node)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BoolOp):
            return (yield from self._boolop(node))
        if isinstance(node, ast.UnaryOp):
            value = yield from self._expr(node.operand)
            if isinstance(node.op, ast.Not):
                return not _truth(value, node)
            return _arith(operator.neg if isinstance(node.op, ast.USub) else operator.pos, node, value)
        if isinstance(node, ast.Compare):
            return (yield from self._compare(node))
        if isinstance(node, ast.BinOp):
            left = yield from self._expr(node.left)
            right = yield from self._expr(node.right)
            return self._bounded(_arith(_BINARY[type(node.op)], node, left, right), node)
        if isinstance(node, ast.IfExp):
            test = yield from self._expr(node.test)
            return (yield from self._expr(node.body if _truth(test, node) else node.orelse))
        if isinstance(node, (ast.List, ast.Tuple)):
            return self._bounded((yield from self._exprs(node.elts)), node)
        if isinstance(node, ast.Subscript):
            return (yield from self._subscript(node))
        if isinstance(node, ast.JoinedStr):
            parts = yield from self._exprs(node.values)
            if not all(isinstance(p, (str, int, float)) or p is None for p in parts):
                raise ExecutionError(f"line {node.lineno}: f-strings format strings and numbers only, "
                                     f"got {[type(p).__name__ for p in parts]}")
            return self._bounded("".join(str(p) for p in parts), node)
        if isinstance(node, ast.FormattedValue):
            return (yield from self._expr(node.value))
        if isinstance(node, ast.Attribute):
            return _attribute(node, (yield from self._expr(node.value)))
        if isinstance(node, ast.Call):
            return (yield from self._call(node))
        raise ExecutionError(f"line {node.lineno}: cannot evaluate {type(node).__name__}")

    def _exprs(self, nodes: list[ast.expr]) -> Run:
        values = []
        for node in nodes:
            values.append((yield from self._expr(node)))
        return values

    def _name(self, node: ast.Name) -> Any:
        try:
            return self.env[node.id]
        except KeyError:
            raise ExecutionError(f"line {node.lineno}: name `{node.id}` is not defined") from None

    def _boolop(self, node: ast.BoolOp) -> Run:
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for operand in node.values:
            value = yield from self._expr(operand)
            if _truth(value, node) != is_and:
                return value
        return value

    def _compare(self, node: ast.Compare) -> Run:
        left = yield from self._expr(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = yield from self._expr(comparator)
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError as exc:
                raise ExecutionError(f"line {node.lineno}: cannot compare: {exc}") from None
            if not ok:
                return False
            left = right
        return True

    def _subscript(self, node: ast.Subscript) -> Run:
        value = yield from self._expr(node.value)
        index = yield from self._expr(node.slice)
        if not isinstance(value, (list, tuple, str)) or not isinstance(index, int):
            raise ExecutionError(f"line {node.lineno}: only lists and strings can be indexed by an int")
        try:
            return value[index]
        except IndexError:
            raise ExecutionError(f"line {node.lineno}: index {index} out of range "
                                 f"(length {len(value)})") from None

    def _call(self, node: ast.Call) -> Run:
        args = yield from self._exprs(node.args)
        if isinstance(node.func, ast.Attribute):
            target = yield from self._expr(node.func.value)
            if not isinstance(target, ImagePatch) or node.func.attr not in PATCH_METHODS:
                raise ExecutionError(f"line {node.lineno}: `.{node.func.attr}()` needs a patch")
            try:
                return getattr(target, node.func.attr)(*args)
            except TypeError as exc:
                raise ExecutionError(f"line {node.lineno}: .{node.func.attr}(): {exc}") from None
            except ExecutionError as exc:
                raise ExecutionError(f"line {node.lineno}: {exc}") from None
        assert isinstance(node.func, ast.Name)  # parse_program admits calls by name or of patch methods
        name = node.func.id
        if name in BUILTINS:
            try:
                return _BUILTINS[name](*args)
            except (TypeError, ValueError) as exc:
                raise ExecutionError(f"line {node.lineno}: {name}(): {exc}") from None
        return (yield from self._module_call(self.program.site_of(node), args))

    def _module_call(self, site: CallSite, args: list[Any]) -> Run:
        self.calls += 1
        if self.calls > self.limits.max_calls:
            raise ExecutionError(f"{site.id}: program exceeded {self.limits.max_calls} module calls")
        patch = None
        if site.function != "llm_query":
            patch, args = args[0], args[1:]
            if not isinstance(patch, ImagePatch):
                raise ExecutionError(f"{site.id}: first argument must be an image patch, "
                                     f"got {type(patch).__name__}")
        if not all(isinstance(a, str) for a in args):
            raise ExecutionError(f"{site.id}: arguments after the patch must be strings, got {args!r}")
        call = Call(site.function, None if patch is None else patch.pixels, tuple(args))
        self.busy_s += time.perf_counter() - self._resumed  # waiting on a backend is not our time
        output = yield PendingCall(site, call, patch)
        self._resumed = time.perf_counter()
        _check_output(site, output)
        if site.function == "find":
            assert patch is not None  # find is not llm_query: its patch was checked above
            return [patch.child(box) for box in output]
        return output


_OUTPUT_TYPES = {"exists": bool, "verify_property": bool, "count": int, "query": str, "llm_query": str,
                 "read_text": str}


def _check_output(site: CallSite, output: Any) -> None:
    """A backend that answers with the wrong type fails the item, not the batch."""
    if site.function == "find":
        ok = isinstance(output, list) and all(
            isinstance(b, (tuple, list)) and len(b) == 4 and all(isinstance(v, (int, np.integer)) for v in b)
            for b in output)
    else:
        ok = isinstance(output, _OUTPUT_TYPES[site.function])
    if not ok:
        raise ExecutionError(f"{site.id}: backend answered {output!r}, which is not a valid "
                             f"{site.function}() result")


def _truth(value: Any, node: ast.AST) -> bool:
    if isinstance(value, (bool, int, float, str, list, tuple)) or value is None:
        return bool(value)
    raise ExecutionError(f"line {getattr(node, 'lineno', '?')}: a {type(value).__name__} has no truth value")


def _arith(fn: Callable[..., Any], node: ast.expr, *values: Any) -> Any:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and \
            not (fn is operator.add and all(isinstance(v, str) for v in values)):
        raise ExecutionError(f"line {node.lineno}: arithmetic needs numbers, got "
                             f"{[type(v).__name__ for v in values]}")
    try:
        return fn(*values)
    except ZeroDivisionError:
        raise ExecutionError(f"line {node.lineno}: division by zero") from None
    except OverflowError as exc:
        raise ExecutionError(f"line {node.lineno}: arithmetic overflow: {exc}") from None


def _size(values: list[Any], limit: int) -> int:
    """Elements of ``values`` counting through nested lists; stops counting past ``limit``."""
    total, stack = 0, [values]
    while stack and total <= limit:
        current = stack.pop()
        total += len(current)
        stack.extend(v for v in current if isinstance(v, list))
    return total


def _attribute(node: ast.Attribute, value: Any) -> Any:
    if not isinstance(value, ImagePatch):
        raise ExecutionError(f"line {node.lineno}: `.{node.attr}` needs a patch, got {type(value).__name__}")
    return getattr(value, node.attr)
