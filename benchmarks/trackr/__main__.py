"""``python -m benchmarks.trackr``: every Track R question on every backend of its ladder."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.trackr import (
    CATALOG,
    LADDERS,
    accepted,
    export_photos,
    load_photo,
    load_questions,
    program_for,
)
from modules.backends.mobilenet import CLASSES_FILE
from modules.catalog import parse_catalog
from modules.executor import BatchExecutor, ItemInput, Route
from modules.program import parse_program
from modules.registry import Registry
from modules.tasks import local_round_runner


class LadderRouter:
    """Pins one function to the backend under test, the rest to their largest backend."""

    def __init__(self, function: str, backend: str) -> None:
        self.function, self.backend = function, backend

    def choose(self, item_id: str, site: Any, features: Any) -> Route:
        if site.function == self.function:
            return Route(self.backend, 1.0)
        largest = {"query": "mnv2-224", "read_text": "ocr-rapid", "llm_query": "kbr-minilm"}
        return Route(largest[site.function], 1.0)


def run(registry: Registry) -> list[dict[str, Any]]:
    classes = CLASSES_FILE.read_text().splitlines()
    rows = []
    for q in load_questions():
        function, ladder = LADDERS[q["kind"]]
        image = load_photo(q["photo"])
        program = parse_program(program_for(q))
        for backend in ladder:
            ex = BatchExecutor(program, LadderRouter(function, backend), local_round_runner(registry), "str")
            out = ex.run([ItemInput(q["id"], image, np.zeros(1))])[0]
            tally = next(d for d in out.decisions if d.function == function)
            rows.append({"id": q["id"], "kind": q["kind"], "backend": backend, "answer": out.answer,
                         "error": out.error, "ok": accepted(out.answer, q["accept"], classes),
                         "ms": tally.wall_ms / tally.calls, "flops": tally.flops / tally.calls,
                         "params": tally.params / tally.calls})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--export"] and len(args) == 2:  # the photos alone, for `fmp stream add`
        files = export_photos(Path(args[1]))
        print(f"wrote {len(files)} Track R photos under {args[1]}: "
              + ", ".join(str(f.relative_to(args[1])) for f in files))
        return 0
    if args:
        print("usage: python -m benchmarks.trackr [--export FOLDER]", file=sys.stderr)
        return 2
    registry = Registry(parse_catalog(CATALOG, "benchmarks.trackr.CATALOG"))
    for spec in CATALOG:
        registry.get(spec["name"])  # load first: set-up is not a call's cost
    rows = run(registry)
    print(f"{'question':18} {'backend':12} {'ok':3} {'ms':>7}  answer")
    for r in rows:
        answer = r["answer"] if r["error"] is None else f"FAILED: {r['error']}"
        print(f"{r['id']:18} {r['backend']:12} {'yes' if r['ok'] else 'no':3} {r['ms']:7.1f}  "
              f"{str(answer)[:70]}")
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["backend"]].append(r)
    print(f"\n{'backend':12} {'right':>7} {'ms/call':>8} {'MFLOPs/call':>12} {'params':>9}")
    for name, rs in by.items():
        print(f"{name:12} {sum(r['ok'] for r in rs):3d}/{len(rs):<3d} {np.mean([r['ms'] for r in rs]):8.1f} "
              f"{np.mean([r['flops'] for r in rs]) / 1e6:12.4g} {rs[0]['params'] / 1e6:8.3g}M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
