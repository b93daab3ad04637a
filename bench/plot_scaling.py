"""Plot the FlexCMH scaling series (docs/img/scaling.png).

The series is NUS-WIDE-shaped synthetic data (500-d dense + 1,000-d sparse
tags, weak 2a, k = 80, 16 bits) at 25k / 50k / 100k / 200k samples, a fixed
number of outer iterations each; the y axis is the median seconds per
iteration divided by n (microseconds per sample and iteration), flat when
the cost is linear in n.  The shaded band is +-30% around the 25k value.

Usage (from the repository root)::

    # measure (about 5 minutes on 2 cores) and plot
    python bench/benchmarks/scale.py /tmp/flexcmh_scale scaling --json scaling.jsonl
    python bench/plot_scaling.py scaling.jsonl -o docs/img/scaling.png

Each JSON line of ``scale.py --json`` is one measurement; lines with
``"what": "scaling"`` are plotted, one curve per ``blas_threads`` setting
(``null``: the trainer as shipped; ``1``: the diagnostic ``--blas-threads 1``).
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path


def load_series(paths):
    """``{label: [(n, us_per_sample_iteration), ...]}`` from JSON-lines files
    (the last measurement of an (n, label) wins)."""
    series = defaultdict(dict)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("what") != "scaling":
                continue
            bt = r.get("blas_threads")
            label = ("as shipped" if bt is None else f"BLAS pinned to {bt} thread(s)")
            series[label][r["n"]] = r["us_per_sample_iter_median"]
    return {label: sorted(points.items()) for label, points in series.items()}


def plot(series, out, title=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for (label, points), marker in zip(sorted(series.items()), "os^D"):
        ns = [n for n, _ in points]
        us = [u for _, u in points]
        ax.plot(ns, us, marker=marker, label=label)
        ax.fill_between([ns[0], ns[-1]], 0.7 * us[0], 1.3 * us[0], alpha=0.12)
    from matplotlib.ticker import NullFormatter

    # Log axes: a flat line is linear cost whatever its level, and curves
    # that differ by 10x (thread contention) stay readable together.
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([n for n, _ in next(iter(series.values()))])
    ax.set_xticklabels([f"{n // 1000}k" for n, _ in next(iter(series.values()))])
    ax.set_xlabel("training samples n (per modality)")
    ax.set_ylabel("µs per sample and iteration (median)")
    ax.set_title(title or "FlexCMH training cost per sample (NUS-WIDE shape, k = 80)")
    ax.grid(True, alpha=0.3)
    ax.legend(title="shaded: ±30% of the 25k value", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+", help="JSON-lines output of scale.py --json")
    ap.add_argument("-o", "--output", default=str(
        Path(__file__).resolve().parents[1] / "docs" / "img" / "scaling.png"))
    ap.add_argument("--title")
    args = ap.parse_args(argv)
    series = load_series(args.json)
    if not series:
        raise SystemExit("no scaling measurements in " + ", ".join(args.json))
    plot(series, args.output, args.title)
    for label, points in series.items():
        base = points[0][1]
        print(label + ": " + ", ".join(f"{n}: {u:.1f} us ({u / base:.2f}x)"
                                       for n, u in points))
    print("wrote", args.output)


if __name__ == "__main__":
    main()
