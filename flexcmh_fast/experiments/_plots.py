"""The plots of a result (MAP against code length, precision-recall
curves, the training objective) and of a comparison of methods, drawn on
matplotlib's Agg canvas."""
import os

import numpy as np

from ._paper import SCENARIO_TITLES, paper_value
from ._tables import comparison_cells


def _figure(n_panels, n_rows=1):
    """A matplotlib Figure on the Agg canvas (no global backend change)
    with ``n_rows`` x ``n_panels`` axes (row by row)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "Writing plots needs matplotlib ('pip install matplotlib' or "
            "'pip install flexcmh-fast[plot]'); pass --no-plots to skip them."
        ) from None
    fig = Figure(figsize=(4.2 * n_panels, 3.6 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(n_rows, n_panels, i + 1) for i in range(n_rows * n_panels)]
    return fig, axes


def plot_results(result, out_dir):
    """``map_vs_bits.png``, ``pr_curves.png`` and ``objective.png`` of one
    method's result into ``out_dir``; returns their paths."""
    cfg = result["config"]
    scenarios, bits, dirs = cfg["scenarios"], cfg["bits"], cfg["directions"]
    written = []
    cell = {(s["scenario"], s["bits"], s["direction"]): s for s in result["summary"]}
    fig, axes = _figure(len(scenarios))
    for ax, scenario in zip(axes, scenarios):
        for d_name in dirs:
            mean = [cell[(scenario, b, d_name)]["map_mean"] for b in bits]
            std = [cell[(scenario, b, d_name)]["map_std"] for b in bits]
            line = ax.errorbar(bits, mean, yerr=std, marker="o", capsize=3, label=f"ours {d_name}")
            paper = [paper_value(scenario, d_name, b) for b in bits]
            if cfg.get("paper") and all(p is not None for p in paper):
                ax.plot(bits, paper, ls="--", marker="x", color=line[0].get_color(),
                        label=f"paper {d_name}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(bits)
        ax.set_xticklabels([str(b) for b in bits])
        ax.set_xlabel("code length (bits)")
        ax.set_ylabel("MAP")
        ax.set_title(SCENARIO_TITLES.get(scenario, scenario), fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    path = os.path.join(out_dir, "map_vs_bits.png")
    fig.savefig(path, dpi=110)
    written.append(path)

    fig, axes = _figure(len(scenarios))
    for ax, scenario in zip(axes, scenarios):
        for b in bits:
            for d_name in dirs:
                c = result["pr_curves"].get((scenario, b, d_name))
                if c is not None:
                    ax.plot(c["recall"], c["precision"], label=f"{d_name} {b}b", lw=1)
        ax.set_xlabel("recall (Hamming radius 0..n_bits)")
        ax.set_ylabel("precision")
        ax.set_title(SCENARIO_TITLES.get(scenario, scenario), fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
    path = os.path.join(out_dir, "pr_curves.png")
    fig.savefig(path, dpi=110)
    written.append(path)

    fig, axes = _figure(1)
    ax = axes[0]
    for (scenario, b), obj in result["objectives"].items():
        if obj:
            ax.plot(np.arange(1, len(obj) + 1), obj, label=f"{scenario} {b}b", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective")
    if all(v > 0 for obj in result["objectives"].values() for v in obj):
        ax.set_yscale("log")
    ax.set_title("training objective (first repetition)", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, ncol=2)
    path = os.path.join(out_dir, "objective.png")
    fig.savefig(path, dpi=110)
    written.append(path)
    return written


def plot_comparison(comparison, out_dir):
    """MAP against code length, one line per method, a panel per scenario
    and direction (rows: directions), error bars = std over repetitions."""
    cells, cfg = comparison_cells(comparison)
    scenarios, bits, dirs = cfg["scenarios"], cfg["bits"], cfg["directions"]
    fig, axes = _figure(len(scenarios), n_rows=len(dirs))
    for i, d_name in enumerate(dirs):
        for j, scenario in enumerate(scenarios):
            ax = axes[i * len(scenarios) + j]
            for method in comparison["methods"]:
                rows = [cells.get((method, scenario, b, d_name)) for b in bits]
                mean = [np.nan if r is None else r["map_mean"] for r in rows]
                std = [np.nan if r is None else r["map_std"] for r in rows]
                if not np.all(np.isnan(mean)):
                    ax.errorbar(bits, mean, yerr=std, marker="o", capsize=3, label=method)
            paper = [paper_value(scenario, d_name, b) for b in bits]
            if cfg.get("paper") and "flexcmh" in comparison["methods"] and all(
                    p is not None for p in paper):
                ax.plot(bits, paper, ls="--", marker="x", color="grey", label="FlexCMH paper")
            ax.set_xscale("log", base=2)
            ax.set_xticks(bits)
            ax.set_xticklabels([str(b) for b in bits])
            ax.set_xlabel("code length (bits)")
            ax.set_ylabel(f"MAP {d_name}")
            ax.set_title(SCENARIO_TITLES.get(scenario, scenario), fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
    path = os.path.join(out_dir, "map_vs_bits_methods.png")
    fig.savefig(path, dpi=110)
    return path
