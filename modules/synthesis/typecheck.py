"""Type-check a parsed program against the runtime's API before it ever runs.

``parse_program`` already guarantees the allowed subset, known functions and arity. This
pass follows types through assignments, branches and loops and reports, with line and
column, what would fail or silently mislead at run time: a string where a patch belongs,
``query(...) == True`` (always False), a patch used as a condition, a name assigned only
on some paths, a method on a number, a return of the wrong type, or falling off the end.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from modules.program import Program
from modules.synthesis.api import ATTRIBUTE_TYPES, FUNCTION_SIGNATURES, METHOD_SIGNATURES

_NUMBERS = ("int", "float")
_OPERATOR_SIGNS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                   ast.Mod: "%"}


@dataclass(frozen=True)
class _Var:
    type: str
    definite: bool  # assigned on every path that reaches here


Env = dict[str, _Var]


def join(a: str, b: str) -> str:
    """The least type holding both (``any`` when they have nothing useful in common)."""
    if a == b:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    if a.startswith("list[") and b.startswith("list["):
        return f"list[{join(a[5:-1], b[5:-1])}]"
    return "any"


def fits(actual: str, expected: str) -> bool:
    """May a value of type ``actual`` stand where ``expected`` is required?"""
    if "any" in (actual, expected) or actual == expected:
        return True
    if expected == "float" and actual == "int":
        return True
    return actual.startswith("list[") and expected.startswith("list[") and fits(actual[5:-1], expected[5:-1])


def _a(t: str) -> str:
    """The type with its article: "an int", "a str"."""
    return f"{'an' if t[0] in 'aeiou' else 'a'} {t}"


def _kind(t: str) -> str:
    """What a type compares as: bools and numbers alike (True == 1), lists by shape only."""
    return "number" if t in (*_NUMBERS, "bool") else "list" if t.startswith("list[") else t


def typecheck(program: Program, answer_type: str = "bool") -> list[str]:
    """Type errors of ``program`` as ``line L, col C: message`` strings (empty when it checks)."""
    checker = _Checker(answer_type)
    env, returns = checker.block(program.tree.body, {program.param: _Var("patch", True)})
    if not returns:
        fn = program.tree
        checker.issue(fn, f"the program can reach its end without returning {_a(answer_type)}; "
                          f"end it with `return {'False' if answer_type == 'bool' else repr('')}`")
    return checker.issues


class _Checker:
    def __init__(self, answer_type: str) -> None:
        self.answer_type = answer_type
        self.issues: list[str] = []

    def issue(self, node: ast.stmt | ast.expr, message: str) -> None:
        self.issues.append(f"line {node.lineno}, col {node.col_offset}: {message}")

    def block(self, body: list[ast.stmt], env: Env) -> tuple[Env, bool]:
        """Check statements in order; returns the env after them and whether they always return."""
        for stmt in body:
            env, returns = self.stmt(stmt, env)
            if returns:
                return env, True
        return env, False

    def stmt(self, node: ast.stmt, env: Env) -> tuple[Env, bool]:
        if isinstance(node, ast.Assign):
            target = node.targets[0]
            assert isinstance(target, ast.Name)  # parse_program admits plain-name targets only
            return {**env, target.id: _Var(self.expr(node.value, env), True)}, False
        if isinstance(node, ast.Return):
            self.returned(node, "none" if node.value is None else self.expr(node.value, env))
            return env, True
        if isinstance(node, ast.Expr):
            self.expr(node.value, env)
        elif isinstance(node, ast.If):
            self.truth(node.test, env)
            then_env, then_returns = self.block(node.body, dict(env))
            else_env, else_returns = self.block(node.orelse, dict(env))
            if then_returns or else_returns:
                return (else_env if then_returns else then_env), then_returns and else_returns
            return _merge(then_env, else_env), False
        elif isinstance(node, ast.For):
            items = self.expr(node.iter, env)
            if not (items.startswith("list[") or items == "any"):
                self.issue(node.iter, f"for-loops iterate over lists; this is {_a(items)}")
            element = items[5:-1] if items.startswith("list[") else "any"
            assert isinstance(node.target, ast.Name)  # parse_program admits plain-name targets only
            body_env, _ = self.block(node.body, {**env, node.target.id: _Var(element, True)})
            return _merge(env, body_env), False  # the body may run zero times
        return env, False

    def returned(self, node: ast.Return, t: str) -> None:
        if not fits(t, self.answer_type):
            hint = " (compare it, e.g. `query(patch, question) == \"yes\"`)" if t == "str" else ""
            self.issue(node, f"the program must return a {self.answer_type}; this returns {_a(t)}{hint}")

    def truth(self, node: ast.expr, env: Env) -> str:
        t = self.expr(node, env)
        if t == "patch":
            self.issue(node, "a patch has no truth value; test it with a function such as "
                             "exists(patch, name) or verify_property(patch, name, property)")
        return t

    def expr(self, node: ast.expr, env: Env) -> str:
        method = getattr(self, f"_{type(node).__name__}", None)
        return method(node, env) if method else "any"

    def _Constant(self, node: ast.Constant, env: Env) -> str:
        return "none" if node.value is None else type(node.value).__name__

    def _Name(self, node: ast.Name, env: Env) -> str:
        var = env.get(node.id)
        if var is None:
            self.issue(node, f"name `{node.id}` is not defined")
            return "any"
        if not var.definite:
            self.issue(node, f"`{node.id}` may be unassigned here: it is only assigned on some paths "
                             "(inside an if-branch or a loop); assign it before")
        return var.type

    def _BoolOp(self, node: ast.BoolOp, env: Env) -> str:
        types = [self.truth(v, env) for v in node.values]
        out = types[0]
        for t in types[1:]:
            out = join(out, t)
        return out

    def _UnaryOp(self, node: ast.UnaryOp, env: Env) -> str:
        if isinstance(node.op, ast.Not):
            self.truth(node.operand, env)
            return "bool"
        t = self.expr(node.operand, env)
        if t not in (*_NUMBERS, "any"):
            self.issue(node, f"unary minus/plus needs a number, got {_a(t)}")
            return "any"
        return t

    def _BinOp(self, node: ast.BinOp, env: Env) -> str:
        left, right = self.expr(node.left, env), self.expr(node.right, env)
        if "any" in (left, right):
            return "any"
        if left in _NUMBERS and right in _NUMBERS:
            return "float" if isinstance(node.op, ast.Div) or "float" in (left, right) else "int"
        if isinstance(node.op, ast.Add) and left == right == "str":
            return "str"
        self.issue(node, f"cannot apply `{_OPERATOR_SIGNS.get(type(node.op), '?')}` to {_a(left)} "
                         f"and {_a(right)}")
        return "any"

    def _Compare(self, node: ast.Compare, env: Env) -> str:
        left = self.expr(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.expr(comparator, env)
            self.compare(node, op, left, right)
            left = right
        return "bool"

    def compare(self, node: ast.Compare, op: ast.cmpop, left: str, right: str) -> None:
        if "any" in (left, right):
            return
        if isinstance(op, (ast.In, ast.NotIn)):
            if right == "str" and left != "str":
                self.issue(node, f"`in` a string needs a string on the left, got {_a(left)}")
            elif right != "str" and not right.startswith("list["):
                self.issue(node, f"`in` needs a list or string on the right, got {_a(right)}")
            return
        if isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
            if _kind(left) != _kind(right) and "none" not in (left, right):
                self.issue(node, f"comparing {_a(left)} with {_a(right)} is always "
                                 f"{'False' if isinstance(op, ast.Eq) else 'True'}")
            return
        if not (_kind(left) == _kind(right) and _kind(left) in ("number", "str")):
            self.issue(node, f"cannot order {_a(left)} and {_a(right)}; `<`, `>` compare numbers or strings")

    def _IfExp(self, node: ast.IfExp, env: Env) -> str:
        self.truth(node.test, env)
        return join(self.expr(node.body, env), self.expr(node.orelse, env))

    def _List(self, node: ast.List | ast.Tuple, env: Env) -> str:
        types = [self.expr(e, env) for e in node.elts]
        out = types[0] if types else "any"
        for t in types[1:]:
            out = join(out, t)
        return f"list[{out}]"

    _Tuple = _List

    def _Subscript(self, node: ast.Subscript, env: Env) -> str:
        value, index = self.expr(node.value, env), self.expr(node.slice, env)
        if not fits(index, "int") or index == "float":
            self.issue(node.slice, f"index with an int, not {_a(index)}")
        if value.startswith("list["):
            return value[5:-1]
        if value in ("str", "any"):
            return value
        self.issue(node, f"only lists and strings can be indexed; this is {_a(value)}")
        return "any"

    def _JoinedStr(self, node: ast.JoinedStr, env: Env) -> str:
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                t = self.expr(part.value, env)
                if t == "patch" or t.startswith("list["):
                    self.issue(part, f"f-strings format strings and numbers only, not {_a(t)}")
        return "str"

    def _Attribute(self, node: ast.Attribute, env: Env) -> str:
        owner = self.expr(node.value, env)
        if owner not in ("patch", "any"):
            self.issue(node, f"`.{node.attr}` belongs to patches; this is {_a(owner)}")
        return ATTRIBUTE_TYPES.get(node.attr, "any")

    def _Call(self, node: ast.Call, env: Env) -> str:
        args = [self.expr(a, env) for a in node.args]
        if isinstance(node.func, ast.Attribute):
            owner = self.expr(node.func.value, env)
            if owner not in ("patch", "any"):
                self.issue(node, f"`.{node.func.attr}()` is a patch method; it was called on {_a(owner)}")
            expected, ret = METHOD_SIGNATURES[node.func.attr]
            self.arguments(node, f".{node.func.attr}()", args, expected)
            return ret
        assert isinstance(node.func, ast.Name)  # parse_program admits calls by name or of patch methods
        name = node.func.id
        if name in FUNCTION_SIGNATURES:
            expected, ret = FUNCTION_SIGNATURES[name]
            self.arguments(node, f"{name}()", args, expected)
            for arg in node.args[1 if name != "llm_query" else 0:]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.strip():
                    self.issue(arg, f"{name}() needs a non-empty string here")
            return ret
        return self.builtin(node, name, args)

    def arguments(self, node: ast.Call, what: str, args: list[str], expected: tuple[str, ...]) -> None:
        if len(args) != len(expected):
            self.issue(node, f"{what} takes {len(expected)} arguments ({', '.join(expected)}), "
                             f"got {len(args)}")
            return
        for k, (actual, want) in enumerate(zip(args, expected, strict=True), start=1):
            if not fits(actual, want):
                self.issue(node.args[k - 1], f"{what} argument {k} must be {_a(want)}, got {_a(actual)}")

    def builtin(self, node: ast.Call, name: str, args: list[str]) -> str:
        if name == "len":
            if len(args) != 1 or not (args[0] in ("str", "any") or args[0].startswith("list[")):
                self.issue(node, f"len() takes one list or string, got {args}")
            return "int"
        if name == "abs":
            if len(args) != 1 or args[0] not in (*_NUMBERS, "any"):
                self.issue(node, f"abs() takes one number, got {args}")
                return "any"
            return args[0]
        # min / max: one list, or two or more numbers or strings
        if len(args) == 1 and args[0].startswith("list["):
            return args[0][5:-1]
        if len(args) >= 2 and all(a in (*_NUMBERS, "any") for a in args):
            out = args[0]
            for a in args[1:]:
                out = join(out, a)
            return out
        if len(args) >= 2 and all(a in ("str", "any") for a in args):
            return "str"
        self.issue(node, f"{name}() takes a list, or two or more numbers, got {args}")
        return "any"


def _merge(a: Env, b: Env) -> Env:
    """Names from two paths: definite only when definite on both."""
    out: Env = {}
    for name in a.keys() | b.keys():
        va, vb = a.get(name), b.get(name)
        if va and vb:
            out[name] = _Var(join(va.type, vb.type), va.definite and vb.definite)
        else:
            only = va or b[name]  # the name is in a or in b
            out[name] = _Var(only.type, False)
    return out
