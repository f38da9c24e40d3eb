"""Parse a program's source into a validated tree and its call sites.

A program is one function of one parameter (the image), written in a small Python
subset: assignments to names, if/else, for-loops over lists, return, comparisons,
boolean logic, arithmetic, the generic functions and patch methods. Anything else
is rejected here, before it ever runs, with the line and column that offend.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field

from modules.backends.base import FUNCTIONS
from modules.errors import ProgramError
from modules.patch import PATCH_ATTRIBUTES, PATCH_METHODS

#: Arity of each generic function (the image patch counts as an argument).
ARITY: dict[str, int] = {
    "find": 2,
    "exists": 2,
    "count": 2,
    "verify_property": 3,
    "query": 2,
    "llm_query": 1,
    "read_text": 1,
}
#: Plain helpers a program may call; they cost nothing and reach no model.
BUILTINS = frozenset({"len", "abs", "min", "max"})
#: Bounds on a program's source, checked before anything else looks at it.
MAX_SOURCE_CHARS = 20_000
MAX_DEPTH = 64  # syntax-tree nesting; the reference programs need about 15
MAX_INT_BITS = 64

_STATEMENTS = (ast.Assign, ast.If, ast.For, ast.Return, ast.Expr, ast.Pass, ast.Break, ast.Continue)
_EXPRESSIONS = (
    ast.Constant, ast.Name, ast.BoolOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Attribute,
    ast.List, ast.Tuple, ast.IfExp, ast.Subscript, ast.BinOp, ast.JoinedStr, ast.FormattedValue,
)
_OPERATORS = (
    ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
    ast.GtE, ast.In, ast.NotIn, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
    ast.Load, ast.Store,
)
#: Where a node is: (line, column), None where the node has none.
_Where = tuple[int | None, int | None]


@dataclass(frozen=True)
class CallSite:
    """One call of a generic function, named by its position in the program's AST."""

    id: str
    function: str
    line: int
    col: int


@dataclass(frozen=True, eq=False)
class Program:
    """A validated program: its source, function tree and call sites in source order."""

    source: str
    tree: ast.FunctionDef
    param: str
    call_sites: tuple[CallSite, ...]
    _by_node: dict[int, CallSite] = field(init=False, repr=False, compare=False)

    @property
    def program_id(self) -> str:
        return program_id_of(self.source)

    def site_of(self, node: ast.Call) -> CallSite:
        return self._by_node[id(node)]

    def __post_init__(self) -> None:
        by_node: dict[int, CallSite] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and _function_name(node) in FUNCTIONS:
                by_node[id(node)] = _site(node)
        object.__setattr__(self, "_by_node", by_node)


def program_id_of(source: str) -> str:
    """A program's id: the first 16 hex digits of sha256(source)."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def parse_program(source: str) -> Program:
    """Parse and validate program source.

    Args:
        source: Python source holding exactly one function of one parameter.

    Returns:
        The validated Program.

    Raises:
        ProgramError: with line and column, when anything is outside the subset.
    """
    if len(source) > MAX_SOURCE_CHARS:
        raise ProgramError(f"program source has {len(source)} characters; the limit is "
                           f"{MAX_SOURCE_CHARS}", 1, 0)
    try:
        module = ast.parse(source)
    except SyntaxError as exc:
        raise ProgramError(f"syntax error: {exc.msg}", exc.lineno, exc.offset) from None
    except (RecursionError, MemoryError):
        raise ProgramError("program is nested too deeply to parse", 1, 0) from None
    _check_depth(module)
    if len(module.body) != 1 or not isinstance(module.body[0], ast.FunctionDef):
        raise ProgramError("a program is exactly one function definition, `def f(image): ...`", 1, 0)
    fn = module.body[0]
    args = fn.args
    if fn.decorator_list or fn.returns or len(args.args) != 1 or args.vararg or args.kwarg \
            or args.kwonlyargs or args.posonlyargs or args.defaults:
        raise ProgramError("the program function takes exactly one plain parameter", fn.lineno, fn.col_offset)
    for stmt in fn.body:
        _check(stmt)
    sites = sorted(
        {_site(n) for n in ast.walk(fn) if isinstance(n, ast.Call) and _function_name(n) in FUNCTIONS},
        key=lambda s: (s.line, s.col),
    )
    return Program(source, fn, args.args[0].arg, tuple(sites))


def _site(node: ast.Call) -> CallSite:
    name = _function_name(node)
    assert name is not None  # call sites are calls of generic functions by name
    return CallSite(f"{name}@{node.lineno}:{node.col_offset}", name, node.lineno, node.col_offset)


def _function_name(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else None


def _check_depth(module: ast.Module) -> None:
    """Reject deep nesting before the recursive checks and the interpreter meet it."""
    stack: list[tuple[ast.AST, int]] = [(module, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProgramError(f"program is nested more than {MAX_DEPTH} levels deep",
                               getattr(node, "lineno", None), getattr(node, "col_offset", None))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _check(node: ast.AST) -> None:
    where: _Where = (getattr(node, "lineno", None), getattr(node, "col_offset", None))
    if isinstance(node, ast.stmt) and not isinstance(node, _STATEMENTS):
        raise ProgramError(f"statement `{type(node).__name__}` is not allowed in programs", *where)
    if isinstance(node, ast.expr) and not isinstance(node, _EXPRESSIONS):
        raise ProgramError(f"expression `{type(node).__name__}` is not allowed in programs", *where)
    if not isinstance(node, (ast.stmt, ast.expr, ast.comprehension, ast.arguments)) \
            and not isinstance(node, _OPERATORS + (ast.keyword,)):
        raise ProgramError(f"`{type(node).__name__}` is not allowed in programs", *where)
    if isinstance(node, ast.Assign) and (len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name)):
        raise ProgramError("assign to a single plain name only", *where)
    if isinstance(node, ast.For):
        if not isinstance(node.target, ast.Name) or node.orelse:
            raise ProgramError("for-loops bind one plain name and have no else", *where)
    if isinstance(node, ast.Name):
        _check_name(node, where)
    if isinstance(node, ast.Attribute):
        _check_attribute(node, where)
    if isinstance(node, ast.Constant):
        _check_constant(node.value, where)
    children = list(ast.iter_child_nodes(node))
    if isinstance(node, ast.Call):
        _check_call(node, where)
        if isinstance(node.func, ast.Name):
            children.remove(node.func)  # a called name is checked by _check_call, not as a value
    for child in children:
        _check(child)


def _check_constant(value: object, where: _Where) -> None:
    if not isinstance(value, (str, int, float, bool, type(None))):
        raise ProgramError(f"constant {value!r} is not allowed", *where)
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ProgramError(f"integer constant exceeds {MAX_INT_BITS} bits", *where)


def _check_name(node: ast.Name, where: _Where) -> None:
    name = node.id
    if name.startswith("_"):
        raise ProgramError(f"name `{name}` is not allowed (no private or dunder names)", *where)
    if name in ARITY or name in BUILTINS:
        if isinstance(node.ctx, ast.Store):
            raise ProgramError(f"cannot assign to `{name}`: it names a function", *where)
        raise ProgramError(f"`{name}` is a function; call it, e.g. `{name}(...)`", *where)


def _check_attribute(node: ast.Attribute, where: _Where) -> None:
    if node.attr not in PATCH_ATTRIBUTES | PATCH_METHODS:
        valid = sorted(PATCH_ATTRIBUTES | PATCH_METHODS)
        raise ProgramError(f"attribute `.{node.attr}` is not allowed; patches offer {valid}", *where)


def _check_call(node: ast.Call, where: _Where) -> None:
    if node.keywords:
        raise ProgramError("keyword arguments are not allowed; pass arguments by position", *where)
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise ProgramError("star-arguments are not allowed", *where)
    if isinstance(node.func, ast.Attribute):
        if node.func.attr not in PATCH_METHODS:
            raise ProgramError(f"method `.{node.func.attr}()` is not allowed; patches offer "
                               f"{sorted(PATCH_METHODS)}", *where)
        return
    name = _function_name(node)
    if name in ARITY:
        if len(node.args) != ARITY[name]:
            raise ProgramError(f"{name}() takes {ARITY[name]} arguments, got {len(node.args)}", *where)
        return
    if name in BUILTINS:
        return
    valid = sorted(set(ARITY) | BUILTINS)
    raise ProgramError(f"unknown function `{ast.unparse(node.func)}`; programs may call {valid}", *where)
