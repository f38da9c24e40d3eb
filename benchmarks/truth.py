"""A small declarative language for a query's exact answer on a scene's ground truth.

A truth spec is JSON/YAML data, evaluated on a ``SignedScene`` (objects, sign) and the
benchmark fact table. *Selectors* pick objects; *expressions* compute answers.

Selector (a mapping; every key optional, all must hold):
  ``shape``, ``colour`` (a value, or an expression giving one), ``not_shape``, ``not_colour``
  (a value or list), ``left_of`` / ``right_of`` / ``above`` / ``below`` / ``larger_than`` /
  ``smaller_than`` (a selector: some *other* object it matches stands in that relation),
  ``where`` (an expression that must be true; ``{own: colour|shape}`` reads the object).
Expressions (a mapping with one operator key, or a plain constant):
  ``exists`` / ``count`` / ``unique`` SEL; ``the`` SEL + ``attr`` (colour, shape, area);
  ``every`` SEL + ``is`` SEL (N/A when nothing matches ``every``); ``and`` / ``or`` [E...];
  ``not`` E; ``cmp`` [op, E, E] (op in == != < <= > >=); ``in`` [E, [values]]; ``sub`` [E, E];
  ``rel`` [relation, SEL, SEL] between two unique objects; ``largest`` SEL + ``attr``;
  ``sign`` {} (its word, "" if none); ``fact`` template + ``args`` [E...] (fact table; N/A if
  absent); ``require`` E + ``then`` E (N/A unless E); ``pick`` [[E, value]...] + ``else``;
  ``argmax_count`` {name: SEL} + ``tie``; ``yesno`` E; ``str`` E; ``lower`` E; ``nonempty`` E;
  ``own`` attr.

Ground truth is three-valued where the pixels are: an object hidden 35-65 % is *maybe*
present, relations within ``POS_MARGIN`` px and sizes within ``AREA_RATIO`` are *maybe*, and
so is the word of a sign drawn too faint to read (``benchmarks.signs.Sign.legible``: its
strokes under ``LEGIBLE_SNR`` noise deviations from the panel).
A scene whose answer depends on a *maybe* raises ``Ambiguous`` and is never sampled; an
answer that does not exist (no such object, no such fact) raises ``NotApplicable`` ("N/A").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.scenes import SceneObject
from benchmarks.signs import SignedScene
from modules.answers import NA as NA  # the benchmark code imports it from here
from modules.answers import normalise_answer as normalise_answer
from modules.backends.facts import normalise

FACTS_FILE = Path(__file__).resolve().parent.parent / "modules" / "weights" / "benchmark_facts.json"
POS_MARGIN = 5.0  # px between centres below which left/right/above/below is uncertain
AREA_RATIO = 1.25  # box-area ratio below which larger/smaller is uncertain
VISIBLE, HIDDEN = 0.35, 0.65  # occlusion: <= VISIBLE present, > HIDDEN absent, between: maybe
YES, NO, MAYBE = 1, 0, -1


class Ambiguous(Exception):
    """The scene's ground truth cannot settle the answer (reject the scene)."""


class NotApplicable(Exception):
    """The question has no answer on this scene: its answer is "N/A"."""


def load_facts(path: Path = FACTS_FILE) -> dict[str, str]:
    """The fact table, keyed by normalised question."""
    return {normalise(q): a for q, a in json.loads(path.read_text()).items()}


def _relation(name: str, a: Any, b: Any) -> int:
    if name in ("larger_than", "smaller_than", "larger", "smaller"):
        ra, rb = (a.size ** 2, b.size ** 2) if name.startswith("larger") else (b.size ** 2, a.size ** 2)
        return YES if ra >= AREA_RATIO * rb else NO if ra * AREA_RATIO <= rb else MAYBE
    axis, sign = {"left_of": (0, 1), "right_of": (0, -1), "above": (1, 1), "below": (1, -1)}[name]
    d = sign * (b.center[axis] - a.center[axis])  # > 0: a is left of / above b
    return YES if d > POS_MARGIN else NO if d < -POS_MARGIN else MAYBE


RELATIONS = ("left_of", "right_of", "above", "below", "larger_than", "smaller_than")


class Evaluator:
    """Evaluates truth specs on one scene."""

    def __init__(self, item: SignedScene, facts: dict[str, str]) -> None:
        self.item = item
        self.facts = facts
        self.objects = [(o, YES if o.occlusion <= VISIBLE else MAYBE)
                        for o in item.objects if o.occlusion <= HIDDEN]
        self._own: Any = None

    # -- selectors -------------------------------------------------------------------------
    def select(self, sel: dict[str, Any]) -> tuple[list[SceneObject], list[SceneObject]]:
        """(objects that surely match, objects that may match)."""
        if not isinstance(sel, dict):
            raise ValueError(f"selector must be a mapping, got {sel!r}")
        sure: list[SceneObject] = []
        maybe: list[SceneObject] = []
        for obj, present in self.objects:
            m = self._match(obj, sel)
            if m == NO:
                continue
            (sure if m == YES and present == YES else maybe).append(obj)
        return sure, maybe

    def _match(self, obj: Any, sel: dict[str, Any]) -> int:
        result = YES
        for key, value in sel.items():
            if key in ("shape", "colour"):
                ok = getattr(obj, key) == self._value(value)
            elif key in ("not_shape", "not_colour"):
                ok = getattr(obj, key[4:]) not in (value if isinstance(value, list) else [value])
            elif key in RELATIONS:
                ok = self._related(obj, key, value)
            elif key == "where":
                saved, self._own = self._own, obj
                try:
                    ok = bool(self.eval(value))
                except NotApplicable:
                    ok = False
                finally:
                    self._own = saved
            else:
                raise ValueError(f"unknown selector key {key!r}; valid: shape, colour, not_shape, "
                                 f"not_colour, where, {', '.join(RELATIONS)}")
            ok = int(ok)  # bools -> YES/NO; relations are already YES/NO/MAYBE
            if ok == NO:
                return NO
            result = MAYBE if ok == MAYBE else result
        return result

    def _related(self, obj: Any, name: str, sel: dict[str, Any]) -> int:
        sure, maybe = self.select(sel)
        best = NO
        for other in sure + maybe:
            if other is obj:
                continue
            r = _relation(name, obj, other)
            if r != NO and other not in sure:
                r = MAYBE  # the other object itself may not be there
            if r == YES:
                return YES
            best = MAYBE if r == MAYBE else best
        return best

    def _value(self, value: Any) -> Any:
        return self.eval(value) if isinstance(value, dict) else value

    def _the(self, sel: dict[str, Any]) -> Any:
        sure, maybe = self.select(sel)
        if not sure and not maybe:
            raise NotApplicable
        if len(sure) == 1 and not maybe:
            return sure[0]
        raise Ambiguous

    # -- expressions -----------------------------------------------------------------------
    def eval(self, spec: Any) -> Any:
        """Evaluate an expression (constants evaluate to themselves)."""
        if not isinstance(spec, dict):
            return spec
        ops = [k for k in spec if k in _OPS]
        if len(ops) != 1:
            raise ValueError(f"expression needs exactly one operator of {sorted(_OPS)}, got {sorted(spec)}")
        return _OPS[ops[0]](self, spec)

    def _exists(self, s: dict[str, Any]) -> bool:
        sure, maybe = self.select(s["exists"])
        if not sure and maybe:
            raise Ambiguous
        return bool(sure)

    def _count(self, s: dict[str, Any]) -> int:
        sure, maybe = self.select(s["count"])
        if maybe:
            raise Ambiguous
        return len(sure)

    def _attr(self, obj: Any, attr: str) -> Any:
        return obj.size ** 2 if attr == "area" else getattr(obj, attr)

    def _largest(self, s: dict[str, Any]) -> Any:
        sure, maybe = self.select(s["largest"])
        if not sure and not maybe:
            raise NotApplicable
        ranked = sorted(sure + maybe, key=lambda o: -o.size)
        if ranked[0] in maybe or (len(ranked) > 1 and _relation("larger", ranked[0], ranked[1]) != YES):
            raise Ambiguous
        return self._attr(ranked[0], s.get("attr", "colour"))

    def _every(self, s: dict[str, Any]) -> bool:
        sure, maybe = self.select(s["every"])
        if maybe:
            raise Ambiguous
        if not sure:
            raise NotApplicable
        return all(self._match(o, s["is"]) == YES for o in sure)

    def _rel(self, s: dict[str, Any]) -> bool:
        name, a, b = s["rel"]
        r = _relation(name, self._the(a), self._the(b))
        if r == MAYBE:
            raise Ambiguous
        return r == YES

    def _fact(self, s: dict[str, Any]) -> str:
        args = [str(self.eval(a)).lower() for a in s.get("args", [])]
        key = normalise(s["fact"].format(*args))
        if key not in self.facts:
            raise NotApplicable
        return self.facts[key]

    def _cmp(self, s: dict[str, Any]) -> bool:
        op, a, b = s["cmp"]
        a, b = self.eval(a), self.eval(b)
        return _CMP[op](a, b)

    def _pick(self, s: dict[str, Any]) -> Any:
        for cond, value in s["pick"]:
            if self.eval(cond):
                return value
        return s["else"]

    def _argmax(self, s: dict[str, Any]) -> str:
        counts = {name: self._count({"count": sel}) for name, sel in s["argmax_count"].items()}
        top = max(counts.values())
        winners: list[str] = [n for n, c in counts.items() if c == top]
        if len(winners) == 1:
            return winners[0]
        tie: str = s.get("tie", "same")
        return tie

    def _require(self, s: dict[str, Any]) -> Any:
        if not self.eval(s["require"]):
            raise NotApplicable
        return self.eval(s["then"])

    def _nonempty(self, s: dict[str, Any]) -> Any:
        value = self.eval(s["nonempty"])
        if value in ("", None):
            raise NotApplicable
        return value

    def _unique(self, s: dict[str, Any]) -> bool:
        self._the(s["unique"])
        return True

    def _sign(self, s: dict[str, Any]) -> str:
        sign = self.item.sign
        if sign is not None and not sign.legible:
            raise Ambiguous  # the word is drawn, but not readable from the pixels
        return self.item.sign_text

    def _own_attr(self, s: dict[str, Any]) -> Any:
        if self._own is None:
            raise ValueError("`own` is only valid inside a selector's `where`")
        return self._attr(self._own, s["own"])


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_OPS: dict[str, Callable[[Evaluator, dict[str, Any]], Any]] = {
    "exists": Evaluator._exists, "count": Evaluator._count, "every": Evaluator._every,
    "the": lambda ev, s: ev._attr(ev._the(s["the"]), s.get("attr", "colour")),
    "largest": Evaluator._largest, "rel": Evaluator._rel, "fact": Evaluator._fact,
    "cmp": Evaluator._cmp, "pick": Evaluator._pick, "argmax_count": Evaluator._argmax,
    "require": Evaluator._require, "nonempty": Evaluator._nonempty, "unique": Evaluator._unique,
    "own": Evaluator._own_attr,
    "and": lambda ev, s: all(ev.eval(e) for e in s["and"]),
    "or": lambda ev, s: any(ev.eval(e) for e in s["or"]),
    "not": lambda ev, s: not ev.eval(s["not"]),
    "in": lambda ev, s: ev.eval(s["in"][0]) in s["in"][1],
    "sub": lambda ev, s: ev.eval(s["sub"][0]) - ev.eval(s["sub"][1]),
    "sign": Evaluator._sign,
    "yesno": lambda ev, s: "yes" if ev.eval(s["yesno"]) else "no",
    "str": lambda ev, s: str(ev.eval(s["str"])),
    "lower": lambda ev, s: str(ev.eval(s["lower"])).lower(),
}


def evaluate(spec: Any, item: SignedScene, facts: dict[str, str], answer_type: str) -> bool | str:
    """The exact answer of ``spec`` on ``item``: a bool, or a string ("N/A" when none).

    For yes/no benchmarks an inapplicable question is a "no" (False).

    Raises:
        Ambiguous: the ground truth cannot settle it (the sampler rejects the scene).
    """
    try:
        value = Evaluator(item, facts).eval(spec)
    except NotApplicable:
        return False if answer_type == "bool" else NA
    if answer_type == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"a yes/no truth spec must give a bool, got {value!r}")
        return value
    return normalise_answer(str(value))
