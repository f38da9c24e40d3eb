"""The Pareto plot: quality against cost, every policy at every λ, with each point's 95 %
bootstrap interval over queries as an error bar when the rows carry one (matplotlib is
imported here only, when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pareto_png(path: Path, sweep: dict[str, list[dict[str, Any]]], metric: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    for name, pts in sweep.items():
        pts = sorted(pts, key=lambda p: p["gflops_per_item"])
        xs, ys = [p["gflops_per_item"] for p in pts], [p["quality"] for p in pts]
        style = "o-" if len(pts) > 1 else "s"
        (line,) = ax.plot(xs, ys, style, label=name, markersize=6, linewidth=2.5 if name == "fmp" else 1.5)
        if all("quality_ci" in p for p in pts):
            yerr = [[p["quality"] - p["quality_ci"][0] for p in pts],
                    [p["quality_ci"][1] - p["quality"] for p in pts]]
            ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor=line.get_color(), alpha=0.35, capsize=2)
        for p in pts if len(pts) > 1 else []:
            ax.annotate(f"λ={p['lam']:g}", (p["gflops_per_item"], p["quality"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("cost: GFLOPs per item (backends + the policy's own compute, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
