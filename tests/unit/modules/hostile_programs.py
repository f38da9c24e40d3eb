"""A corpus of hostile programs: escapes, resource exhaustion, obfuscation, type confusion.

Each entry names the stage that must stop it (``parse``: ``parse_program`` raises
ProgramError; ``run``: the item fails with ExecutionError while the batch goes on) and a
fragment of the exact message. ``python -m tests.unit.modules.hostile_programs`` (from the
repository root) prints the count; ``tests/unit/modules/test_sandbox.py`` asserts every outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modules.interpreter import Limits

HEAD = "def execute_command(image):\n"


@dataclass(frozen=True)
class Hostile:
    name: str
    body: str  # the function body, indented by four spaces
    stage: str  # "parse" or "run"
    message: str  # fragment of the error that must stop it
    limits: Limits = field(default_factory=Limits)

    @property
    def source(self) -> str:
        return HEAD + self.body


def _nest(depth: int) -> str:
    return "    return " + "-(" * depth + "1" + ")" * depth + " > 0\n"


PARSE: list[Hostile] = [
    Hostile("import", "    import os\n    return True\n", "parse", "statement `Import` is not allowed"),
    Hostile("from-import", "    from os import system\n    return True\n", "parse",
            "statement `ImportFrom` is not allowed"),
    Hostile("dunder-import", "    return __import__('os')\n", "parse", "unknown function `__import__`"),
    Hostile("eval", "    return eval('1')\n", "parse", "unknown function `eval`"),
    Hostile("exec", "    exec('x = 1')\n    return True\n", "parse", "unknown function `exec`"),
    Hostile("open", "    return open('/etc/passwd')\n", "parse", "unknown function `open`"),
    Hostile("compile", "    return compile('1', 'f', 'eval')\n", "parse", "unknown function `compile`"),
    Hostile("globals", "    return globals()\n", "parse", "unknown function `globals`"),
    Hostile("getattr", "    return getattr(image, 'image')\n", "parse", "unknown function `getattr`"),
    Hostile("type", "    return type(image)\n", "parse", "unknown function `type`"),
    Hostile("breakpoint", "    breakpoint()\n    return True\n", "parse", "unknown function `breakpoint`"),
    Hostile("dunder-attribute", "    return image.__class__.__mro__\n", "parse",
            "attribute `.__mro__` is not allowed"),
    Hostile("subclasses-walk", "    return [].__class__.__base__.__subclasses__()\n", "parse",
            "method `.__subclasses__()` is not allowed"),
    Hostile("raw-array", "    return image.image\n", "parse", "attribute `.image` is not allowed"),
    Hostile("function-globals", "    return exists.__globals__\n", "parse",
            "attribute `.__globals__` is not allowed"),
    Hostile("builtins-name", "    return __builtins__['eval']('1')\n", "parse",
            "unknown function `__builtins__['eval']`"),
    Hostile("private-name", "    _x = 1\n    return True\n", "parse", "name `_x` is not allowed"),
    Hostile("fullwidth-eval", "    return \uff45\uff56\uff41\uff4c('1')\n", "parse", "unknown function `eval`"),
    Hostile("split-dunder", "    n = '__cla' + 'ss__'\n    return getattr(image, n)\n", "parse",
            "unknown function `getattr`"),
    Hostile("format-escape", "    return '{0.__class__}'.format(image)\n", "parse",
            "method `.format()` is not allowed"),
    Hostile("fstring-dunder", "    return f'{image.__class__}'\n", "parse", "attribute `.__class__` is not allowed"),
    Hostile("lambda", "    f = lambda: 1\n    return True\n", "parse", "expression `Lambda` is not allowed"),
    Hostile("recursion-def", "    def g(x):\n        return g(x)\n    return g(1)\n", "parse",
            "statement `FunctionDef` is not allowed"),
    Hostile("while-true", "    while True:\n        pass\n", "parse", "statement `While` is not allowed"),
    Hostile("list-comprehension", "    return [x for x in find(image, 'a')]\n", "parse",
            "expression `ListComp` is not allowed"),
    Hostile("generator-expression", "    return max(x for x in find(image, 'a'))\n", "parse",
            "expression `GeneratorExp` is not allowed"),
    Hostile("walrus", "    if (n := 1):\n        return True\n", "parse", "expression `NamedExpr` is not allowed"),
    Hostile("try-except", "    try:\n        pass\n    except Exception:\n        pass\n", "parse",
            "statement `Try` is not allowed"),
    Hostile("with-open", "    with open('x') as f:\n        pass\n", "parse", "statement `With` is not allowed"),
    Hostile("global", "    global exists\n    return True\n", "parse", "statement `Global` is not allowed"),
    Hostile("class", "    class A:\n        pass\n", "parse", "statement `ClassDef` is not allowed"),
    Hostile("yield", "    yield image\n", "parse", "expression `Yield` is not allowed"),
    Hostile("del", "    x = 1\n    del x\n    return True\n", "parse", "statement `Delete` is not allowed"),
    Hostile("raise", "    raise SystemExit\n", "parse", "statement `Raise` is not allowed"),
    Hostile("slice", "    return find(image, 'a')[0:1000000]\n", "parse", "expression `Slice` is not allowed"),
    Hostile("shadow-function", "    exists = len\n    return True\n", "parse",
            "cannot assign to `exists`: it names a function"),
    Hostile("function-as-value", "    f = find\n    return True\n", "parse", "`find` is a function"),
    Hostile("huge-int-constant", "    return 123456789012345678901234567890 > 0\n", "parse",
            "integer constant exceeds 64 bits"),
    Hostile("bytes-constant", "    return b'payload'\n", "parse", "constant b'payload' is not allowed"),
    Hostile("deep-nesting", _nest(200), "parse", "nested more than 64 levels deep"),
    Hostile("huge-source", "    x = '" + "a" * 25_000 + "'\n    return True\n", "parse",
            "the limit is 20000"),
    Hostile("star-args", "    return exists(*[image, 'a'])\n", "parse", "star-arguments are not allowed"),
    Hostile("keyword-args", "    return exists(image, name='a')\n", "parse", "keyword arguments are not allowed"),
]

#: Under the fake catalog of the test: ``find|a`` answers 100 boxes, ``find|b`` 11, ``find|many`` 2000.
RUN: list[Hostile] = [
    Hostile("nested-loop-steps", "    for a in find(image, 'a'):\n        for b in find(image, 'a'):\n"
            "            for c in find(image, 'a'):\n                x = 1\n    return True\n",
            "run", "program exceeded 20000 steps"),
    Hostile("call-flood", "    for a in find(image, 'a'):\n        for b in find(image, 'a'):\n"
            "            x = exists(image, 'b')\n    return True\n", "run", "program exceeded 500 module calls"),
    Hostile("long-loop", "    for a in find(image, 'many'):\n        x = 1\n    return True\n", "run",
            "loop over 2000 items exceeds 1000"),
    Hostile("string-doubling", "    s = 'ab'\n    for a in find(image, 'a'):\n        s = s + s\n    return True\n",
            "run", "string of 16384 characters exceeds the limit of 10000"),
    Hostile("fstring-doubling", "    s = 'ab'\n    for a in find(image, 'a'):\n        s = f'{s}{s}'\n"
            "    return True\n", "run", "string of 16384 characters exceeds the limit of 10000"),
    Hostile("integer-squaring", "    x = 3\n    for a in find(image, 'a'):\n        x = x * x\n    return True\n",
            "run", "integer exceeds 64 bits"),
    Hostile("list-doubling", "    x = [image]\n    for a in find(image, 'a'):\n        x = [x, x]\n"
            "    return True\n", "run", "list exceeds 10000 elements (counting nested lists)"),
    Hostile("repr-bomb", "    x = [image]\n    for a in find(image, 'b'):\n        x = [x, x]\n"
            "    return f'{x}' == ''\n", "run", "f-strings format strings and numbers only"),
    Hostile("leak-patch-repr", "    return f'{image}' == ''\n", "run", "f-strings format strings and numbers only"),
    Hostile("compare-bomb", "    x = [1]\n    y = [1]\n    for a in find(image, 'b'):\n        x = [x, x]\n"
            "        y = [y, y]\n    for a in find(image, 'a'):\n        for b in find(image, 'a'):\n"
            "            z = x == y\n    return True\n", "run", "time limit of 0.05s",
            Limits(max_seconds=0.05, max_steps=10**6)),
    Hostile("return-the-image", "    return image\n", "run", "program returned ImagePatch(0, 0, 8, 8)"),
    Hostile("type-confusion-method", "    return 'x'.left_of(image)\n", "run", "`.left_of()` needs a patch"),
    Hostile("type-confusion-call", "    return exists(query(image, 'q'), 'a')\n", "run",
            "first argument must be an image patch, got str"),
    Hostile("string-index", "    return find(image, 'a')['x']\n", "run",
            "only lists and strings can be indexed by an int"),
    Hostile("break-outside-loop", "    break\n", "run", "break/continue outside a loop"),
    Hostile("crop-with-strings", "    return exists(image.crop('a', 0, 1, 1), 'a')\n", "run",
            "crop expects integer coordinates, got 'a'"),
]

CORPUS: list[Hostile] = PARSE + RUN


def fake_answers() -> dict[str, object]:
    """The scripted backend answers the RUN entries are written against."""
    return {"find|a": [[0, 0, 1, 1]] * 100, "find|many": [[0, 0, 1, 1]] * 2000,
            "find|b": [[0, 0, 1, 1]] * 11, "query|q": "x", "exists|a": True, "exists|b": True}


def outcome(entry: Hostile) -> tuple[str, str]:
    """(stage that stopped it, error message); ("ran", answer) when nothing stopped it."""
    import numpy as np

    from modules.catalog import parse_catalog
    from modules.errors import ProgramError
    from modules.executor import BatchExecutor, ItemInput, Route
    from modules.program import parse_program
    from modules.registry import Registry
    from modules.tasks import local_round_runner

    try:
        program = parse_program(entry.source)
    except ProgramError as exc:
        return "parse", str(exc)
    registry = Registry(parse_catalog([{
        "name": "scripted", "kind": "fake", "answers": fake_answers(), "default": False,
        "functions": ["find", "exists", "count", "verify_property", "query", "llm_query"]}]))

    class _One:
        def choose(self, item_id, site, features) -> Route:
            return Route("scripted", 1.0)

    items = [ItemInput(f"i{k}", np.zeros((8, 8, 3), np.uint8), np.zeros(2)) for k in range(2)]
    outs = BatchExecutor(program, _One(), local_round_runner(registry), limits=entry.limits).run(items)
    if all(o.status == "failed" for o in outs):
        # time limits may trip on different lines per item; the reason is what must agree
        return "run", str(outs[0].error)
    return "ran", repr([o.answer for o in outs])


def stopped(entry: Hostile) -> bool:
    """True when the entry was stopped at its stage with its message."""
    stage, message = outcome(entry)
    return stage == entry.stage and entry.message in message


if __name__ == "__main__":  # pragma: no cover
    import sys

    n = sum(stopped(e) for e in CORPUS)
    print(f"hostile corpus: {n}/{len(CORPUS)} programs rejected or stopped "
          f"({len(PARSE)} at parse, {len(RUN)} at run time)")
    sys.exit(0 if n == len(CORPUS) else 1)
