"""A deterministic compiler for the benchmark's question grammar: no LLM, no network.

This is not a language model and understands nothing outside this grammar (case and a
final "?" are ignored; "color" is read as "colour")::

    question  := "is there" np [relation np] | "is there" np "and" np
               | "are there" [quantity] number noun-plural ["," "one of them" colour]
    np        := ("a" | "an" | "any") [colour] noun
    relation  := ["to the"] ("left of" | "right of") | "above" | "below"
    quantity  := "at least" | "at most" | "exactly" | "more than" | "fewer than" | "less than"

Nouns are the scene shapes (circle, square, triangle) or object/shape/thing; colours the
scene colours. The programs it writes follow the paper's style: cheap existence checks
first, early exits, then finds and property checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modules.synthesis.errors import GrammarError
from modules.vocab import COLOURS, SHAPES

VERSION = "grammar/1"
ANY_OBJECT = ("object", "shape", "thing")
RELATIONS = {"left of": "left_of", "right of": "right_of", "above": "above", "below": "below"}
QUANTITIES = {"at least": ">=", "at most": "<=", "exactly": "==", "more than": ">",
              "fewer than": "<", "less than": "<"}
NUMBERS = {w: n for n, w in enumerate("zero one two three four five six seven eight nine ten".split())}
HEAD = "def execute_command(image):\n"

_NOUN = "|".join(SHAPES + ANY_OBJECT)
_COLOUR = "|".join(COLOURS)
_NP = rf"(?:a|an|any)\s+(?:(?P<{{c}}>{_COLOUR})\s+)?(?P<{{s}}>{_NOUN})"
_REL = r"(?:to\s+the\s+)?(?P<rel>left\s+of|right\s+of|above|below)"
_SINGLE = re.compile(rf"^is\s+there\s+{_NP.format(c='c1', s='s1')}$")
_RELATION = re.compile(
    rf"^is\s+there\s+{_NP.format(c='c1', s='s1')}\s+{_REL}\s+{_NP.format(c='c2', s='s2')}$")
_AND = re.compile(rf"^is\s+there\s+{_NP.format(c='c1', s='s1')}\s+and\s+{_NP.format(c='c2', s='s2')}$")
_QUANTITY = "|".join(q.replace(" ", r"\s+") for q in QUANTITIES)
_NUMBER = "|".join(NUMBERS)
_COUNT = re.compile(
    rf"^are\s+there\s+(?:(?P<q>{_QUANTITY})\s+)?(?P<n>\d+|{_NUMBER})\s+(?P<s>{_NOUN})s"
    rf"(?:\s*,?\s*one\s+of\s+them\s+(?:is\s+)?(?P<c>{_COLOUR}))?$")


@dataclass(frozen=True)
class _Np:
    colour: str | None
    noun: str

    @property
    def name(self) -> str:
        """The name the detector is asked for: a shape, or "object" for any shape."""
        return "object" if self.noun in ANY_OBJECT else self.noun


def normalise(task_text: str) -> str:
    """Lower case, one space between words, no final punctuation, British "colour"."""
    text = " ".join(task_text.lower().replace("color", "colour").split())
    return text.rstrip("?.! ").replace(" ,", ",")


def compile_task(task_text: str) -> str:
    """Program source for a question in the grammar.

    Raises:
        GrammarError: naming the task when it is outside the grammar.
    """
    text = normalise(task_text)
    if m := _RELATION.match(text):
        return _relation(_Np(m["c1"], m["s1"]), RELATIONS[" ".join(m["rel"].split())], _Np(m["c2"], m["s2"]))
    if m := _AND.match(text):
        return _conjunction(_Np(m["c1"], m["s1"]), _Np(m["c2"], m["s2"]))
    if m := _SINGLE.match(text):
        return _single(_Np(m["c1"], m["s1"]))
    if m := _COUNT.match(text):
        n = int(m["n"]) if m["n"].isdigit() else NUMBERS[m["n"]]
        op = QUANTITIES[" ".join(m["q"].split())] if m["q"] else ">="
        return _count(_Np(m["c"], m["s"]), op, n)
    # the advice first: the CLI's one-line error cuts long messages (flows.cli.MAX_ERROR_CHARS)
    raise GrammarError(
        f"the grammar compiler does not understand {task_text!r}; it compiles yes/no questions "
        "only (others need --synthesizer openai or transformers): 'Is there a red circle [and|left "
        "of|right of|above|below a blue square]?', 'Are there at least two triangles[, one of them "
        f"green]?'; shapes {', '.join(SHAPES)}, object; colours {', '.join(COLOURS)}")


def _exists_guards(*nps: _Np) -> str:
    """Early exits on cheap existence checks, one per distinct concrete shape."""
    shapes = dict.fromkeys(np.name for np in nps if np.name != "object")
    return "".join(f'    if not exists(image, "{s}"):\n        return False\n' for s in shapes)


def _check(var: str, np: _Np) -> str:
    return f'verify_property({var}, "{np.name}", "{np.colour}")' if np.colour else ""


def _single(np: _Np) -> str:
    if not np.colour:
        return HEAD + f'    return exists(image, "{np.name}")\n'
    var = _var(np, "")
    return (HEAD + _exists_guards(np) + f'    for {var} in find(image, "{np.name}"):\n'
            f"        if {_check(var, np)}:\n            return True\n    return False\n")


def _relation(a: _Np, method: str, b: _Np) -> str:
    va = _var(a, "")
    vb = _var(b, "other" if b.name == a.name else "")
    lines = [f'    for {va} in find(image, "{a.name}"):']
    indent = "        "
    if a.colour:
        lines.append(f"{indent}if {_check(va, a)}:")
        indent += "    "
    lines.append(f'{indent}for {vb} in find(image, "{b.name}"):')
    test = " and ".join(t for t in (f"{va}.{method}({vb})", _check(vb, b)) if t)
    lines += [f"{indent}    if {test}:", f"{indent}        return True", "    return False"]
    return HEAD + _exists_guards(a, b) + "\n".join(lines) + "\n"


def _conjunction(a: _Np, b: _Np) -> str:
    body = _exists_guards(a, b)
    for np, found in ((a, "first"), (b, "second")):
        if not np.colour:
            continue
        var = _var(np, "")
        body += (f"    {found} = False\n    for {var} in find(image, \"{np.name}\"):\n"
                 f"        if {_check(var, np)}:\n            {found} = True\n            break\n"
                 f"    if not {found}:\n        return False\n")
    return HEAD + body + "    return True\n"


def _count(np: _Np, op: str, n: int) -> str:
    plural = _var(np, "") + "s"
    if not np.colour:
        return HEAD + f'    return count(image, "{np.name}") {op} {n}\n'
    # "at least n, one of them <colour>": enough objects, then any one of the colour.
    guard = {">=": f"< {n}", ">": f"<= {n}", "==": f"!= {n}", "<=": f"> {n}", "<": f">= {n}"}[op]
    var = _var(np, "")
    return (HEAD + f'    {plural} = find(image, "{np.name}")\n    if len({plural}) {guard}:\n'
            f"        return False\n    for {var} in {plural}:\n        if {_check(var, np)}:\n"
            "            return True\n    return False\n")


def _var(np: _Np, override: str) -> str:
    return override or ("obj" if np.name == "object" else np.name)
