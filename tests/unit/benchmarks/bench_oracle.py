"""An oracle runtime for the benchmark programs: every module call answered from ground truth.

Calls carry only pixels; patch pixels are numpy views of the item image, so the oracle
recovers a patch's box from the view's memory offset and answers from the scene's objects,
its sign and the benchmark fact table (any wording of ``backend_tasks.PHRASINGS``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from numpy.lib.array_utils import byte_bounds

from benchmarks.backend_tasks import PHRASINGS
from benchmarks.signs import SignedScene
from benchmarks.truth import load_facts
from modules.backends.base import Output, Usage
from modules.backends.facts import normalise
from modules.executor import GroupRequest, GroupResult, Route

PRESENT = 0.5  # the oracle sees objects hidden at most this much


def patch_box(image: np.ndarray, view: np.ndarray) -> tuple[int, int, int, int]:
    offset = byte_bounds(view)[0] - byte_bounds(image)[0]
    y0, x0 = divmod(offset // image.strides[1], image.shape[1])
    return int(x0), int(y0), int(x0 + view.shape[1]), int(y0 + view.shape[0])


class Oracle:
    """A RoundRunner (and Router) answering from one scene per item image."""

    def __init__(self, items: list[SignedScene]) -> None:
        self.items = items
        self.facts = load_facts()

    def choose(self, item_id: str, site: Any, features: Any) -> Route:
        return Route("oracle", 1.0)

    def _scene(self, view: np.ndarray) -> SignedScene:
        lo = byte_bounds(view)[0]
        for it in self.items:
            a, b = byte_bounds(it.image)
            if a <= lo < b:
                return it
        raise AssertionError("call image is not a view of any item image")

    def __call__(self, requests: list[GroupRequest]) -> list[GroupResult]:
        out = []
        for req in requests:
            free = Usage(flops=0.0, params=0, price=0.0)
            out.append(GroupResult([Output(self.answer(req.function, c), free) for c in req.calls], 0.0))
        return out

    def answer(self, function: str, call: Any) -> Any:
        if function == "llm_query":
            return self.llm(call.args[0])
        item = self._scene(call.image)
        x0, y0, x1, y1 = patch_box(item.image, call.image)
        if function == "read_text":
            return item.sign_text if item.sign and (x0, y0, x1, y1) == (0, 0, 128, 128) else ""
        objs = [o for o in item.objects if o.occlusion <= PRESENT]
        if function in ("find", "exists", "count"):
            name = call.args[0]
            found = sorted((o for o in objs if name in ("object", o.shape)
                            and x0 <= o.center[0] < x1 and y0 <= o.center[1] < y1), key=lambda o: o.z)
            boxes = [(max(o.box[0], x0) - x0, max(o.box[1], y0) - y0, min(o.box[2], x1) - x0,
                      min(o.box[3], y1) - y0) for o in found]
            return {"find": boxes, "exists": bool(boxes), "count": len(boxes)}[function]
        obj = next(o for o in objs if tuple(max(v, 0) for v in o.box) == (x0, y0, x1, y1)
                   or (o.box[0] >= x0 and o.box[1] >= y0 and min(o.box[2], 128) == x1 and min(o.box[3], 128) == y1))
        if function == "verify_property":
            return call.args[1] in (obj.colour, obj.shape)
        return obj.colour if "colour" in call.args[0] else obj.shape

    def llm(self, question: str) -> str:
        for family in PHRASINGS:
            for wording in family:
                parts = [re.escape(normalise(part)) for part in wording.split("{}")]
                pattern = "^" + " ?(.+?) ?".join(parts) + "$"
                m = re.match(pattern, normalise(question))
                if m:
                    key = normalise(family[0].format(*m.groups()))
                    return self.facts.get(key, "unknown")
        return "unknown"
