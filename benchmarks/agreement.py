"""Do synthesized programs agree with the reference programs? ``python -m benchmarks.agreement``.

For every benchmark query, each synthesizer writes a program from the question text alone.
Both programs then run on the same seeded sample of scenes (half positive, the rest with
near misses as in the streams), on the real catalog backends, with a fixed router that
picks the largest backend for every call site. Agreement: both give the same answer, or
both fail. Accuracy against the scenes' ground truth is shown for both programs too.

The grammar compiler always runs. LLM synthesizers run when configured: ``openai`` with
FMP_LLM_BASE_URL and FMP_LLM_MODEL, ``transformers`` with FMP_LLM_MODEL set to a local path
and ``--synthesizer transformers``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from benchmarks.publish import sample_scene
from benchmarks.queries import QUERIES, Query
from benchmarks.scenes import Scene
from modules.catalog import DEFAULT_CATALOG
from modules.executor import BatchExecutor, ItemInput, Route
from modules.program import CallSite, Program, parse_program
from modules.registry import Registry
from modules.synthesis import LLMSettings, SynthesisError, make_synthesizer, synthesize
from modules.tasks import local_round_runner


class LargestRouter:
    """Every call site goes to the last (largest) routable backend serving its function."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def choose(self, item_id: str, site: CallSite, features: np.ndarray) -> Route:
        return Route(self.registry.candidates(site.function)[-1], 1.0)


@dataclass(frozen=True)
class Row:
    synthesizer: str
    query_id: str
    identical: bool | None  # None: no program was synthesized
    agree: int
    scenes: int
    reference_correct: int
    synthesized_correct: int
    note: str = ""


def sample_scenes(query: Query, n: int, seed: int) -> list[Scene]:
    """``n`` scenes for ``query``: half positive, the rest negatives with near misses."""
    rng = np.random.default_rng([seed, *query.query_id.encode()])
    return [sample_scene(query, k % 2 == 0, rng, near_miss_rate=0.5) for k in range(n)]


def answers(program: Program, scenes: list[Scene], registry: Registry) -> list[object]:
    """Each scene's answer (None for a failed item) on the largest backends."""
    items = [ItemInput(f"s{k}", s.image, np.zeros(1)) for k, s in enumerate(scenes)]
    outcomes = BatchExecutor(program, LargestRouter(registry), local_round_runner(registry)).run(items)
    return [o.answer if o.status == "ok" else None for o in outcomes]


def measure(name: str, query: Query, scenes: list[Scene], registry: Registry, reference: list[object]) -> Row:
    truth = [query.truth(s) for s in scenes]
    ref_correct = sum(a == t for a, t in zip(reference, truth, strict=True))
    try:
        result = synthesize(query.question, make_synthesizer(name))
    except SynthesisError as exc:
        first_line = str(exc).splitlines()[0]
        return Row(name, query.query_id, None, 0, len(scenes), ref_correct, 0, first_line[:100])
    mine = answers(result.program, scenes, registry)
    agree = sum(a == b for a, b in zip(reference, mine, strict=True))
    return Row(name, query.query_id, result.source == query.program, agree, len(scenes), ref_correct,
               sum(a == t for a, t in zip(mine, truth, strict=True)))


def configured_synthesizers(requested: list[str] | None) -> list[str]:
    """The grammar compiler, plus the LLM synthesizers whose settings are present."""
    if requested:
        return requested
    settings = LLMSettings()
    return ["grammar"] + (["openai"] if settings.base_url and settings.model else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40, help="scenes per query (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalog", default=str(DEFAULT_CATALOG))
    parser.add_argument("--synthesizer", action="append", choices=["grammar", "openai", "transformers"])
    args = parser.parse_args(argv)
    registry = Registry.from_catalog(args.catalog)
    names = configured_synthesizers(args.synthesizer)
    rows: list[Row] = []
    for query in QUERIES.values():
        scenes = sample_scenes(query, args.scenes, args.seed)
        reference = answers(parse_program(query.program), scenes, registry)
        rows += [measure(name, query, scenes, registry, reference) for name in names]
    print(f"{'synthesizer':12} {'query':32} {'same source':11} {'agree':>9} {'ref acc':>8} {'syn acc':>8}")
    for r in rows:
        same = "-" if r.identical is None else "yes" if r.identical else "no"
        print(f"{r.synthesizer:12} {r.query_id:32} {same:11} {r.agree:>4}/{r.scenes:<4} "
              f"{r.reference_correct / r.scenes:>8.3f} {r.synthesized_correct / r.scenes:>8.3f} {r.note}")
    print("\nagreement rate per synthesizer (synthesized vs reference answers, largest backends):")
    for name in names:
        mine = [r for r in rows if r.synthesizer == name]
        agree, total = sum(r.agree for r in mine), sum(r.scenes for r in mine)
        print(f"  {name:12} {agree}/{total} = {agree / total:.3f} over {len(mine)} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
