"""How much faster the evaluation harness runs than today's path: ``python -m benchmarks.speed``.

Runs ``python -m benchmarks.evaluate`` four times on the same subset, each in a fresh
process: today's path (``--baseline``: one process, every policy of a query in turn, no call
table, nothing reused across λ, the paper learner deciding item by item), this harness from a
cold (empty, temporary) call table with ``--jobs N``, and the same again with the table it
left (a re-run that changes only policies: same scenes, every backend output reused), and
that re-run once more with ``--no-path-memo`` (every item's program interpreted again). Prints
wall and CPU seconds (this process's children: the harness and its workers) side by side,
the speed-ups as ratios, and whether the four reports agree on every number a policy is
judged by (quality, accuracy, GFLOPs, Mparams·calls, price, savings, cost ÷ oracle, regret;
not the measured wall ms or µs per decision) at every λ. Any other option goes to the
harness, e.g. ``--benchmark binary --max-queries 3 --scenes 200 --lam 1 4``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Report fields that are measured times, not outcomes: they may differ between runs.
TIMINGS = {"wall_ms_per_item"}


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run(argv: list[str], out: Path) -> dict[str, Any]:
    """One harness run in a fresh process: its report plus wall and CPU seconds."""
    cpu, wall = _children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.evaluate", *argv, "--out", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"benchmarks.evaluate {' '.join(argv)} failed:\n{done.stderr[-4000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    return {"report": report, "wall": wall, "cpu": cpu}


def outcomes(report: dict[str, Any]) -> dict[tuple[str, float], dict[str, Any]]:
    """Every policy's row at every λ, without the measured times."""
    return {(name, row["lam"]): {k: v for k, v in row.items() if k not in TIMINGS}
            for name, rows in report["sweep"].items() for row in rows}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def differences(base: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """'policy@λ: field, ...' for every row whose outcomes differ."""
    a, b = outcomes(base), outcomes(other)
    out = [f"{n}@{lam:g}: missing" for n, lam in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        bad = [f for f in sorted(set(a[key]) | set(b[key])) if not _same(a[key].get(f), b[key].get(f))]
        if bad:
            out.append(f"{key[0]}@{key[1]:g}: {', '.join(bad)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="worker processes of this harness's runs (default 2)")
    p.add_argument("--work-dir", type=Path, help="where the reports and the cold run's call table go "
                                                 "(default: a temporary folder, removed after)")
    args, rest = p.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="fmp-speed-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ours = [*rest, "--call-table", str(work / "calls"), "--jobs", str(args.jobs)]
        runs = {
            "today's path (--baseline)": run([*rest, "--baseline"], work / "baseline.json"),
            f"cold call table, --jobs {args.jobs}": run(ours, work / "cold.json"),
            f"re-run, warm call table, --jobs {args.jobs}": run(ours, work / "warm.json"),
            # the same re-run interpreting every item's program again (no path memo)
            f"re-run, warm, --no-path-memo, --jobs {args.jobs}": run([*ours, "--no-path-memo"],
                                                                     work / "warm-no-memo.json"),
        }
    base = next(iter(runs.values()))
    rep = base["report"]
    items = len(rep["queries"]) * rep["scenes_per_query"]
    print(f"{rep['benchmark']}: {len(rep['queries'])} queries × {rep['scenes_per_query']} scenes, "
          f"λ {' '.join(f'{v:g}' for v in rep['lams'])}, paper learner {rep['paper_learner']['width']}/"
          f"{rep['paper_learner']['input']} px, {len(rep['sweep'])} policies")
    print(f"{'run':46} {'wall s':>8} {'CPU s':>8} {'CPU ms/item':>11} {'× wall':>7} {'× CPU':>7} "
          f"{'calls computed':>14} {'loaded':>8}")
    for name, r in runs.items():
        calls = r["report"].get("model_calls", {})
        print(f"{name:46} {r['wall']:8.1f} {r['cpu']:8.1f} {1000 * r['cpu'] / items:11.1f} "
              f"{base['wall'] / r['wall']:7.2f} {base['cpu'] / r['cpu']:7.2f} "
              f"{calls.get('computed', '-'):>14} {calls.get('loaded', '-'):>8}")
    agree = True
    for name, r in list(runs.items())[1:]:
        diff = differences(rep, r["report"])
        agree &= not diff
        print(f"{name}: " + ("every policy's numbers at every λ equal today's path's" if not diff else
                             f"differs from today's path in {len(diff)} rows: " + "; ".join(diff)))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
