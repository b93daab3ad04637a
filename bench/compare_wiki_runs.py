"""Compare two runs of ``bench/wiki_defaults.py --json``: per cell (scenario,
code length, database, direction) the change of the mean MAP over the splits
next to the cell's standard deviation, the mean change over all cells, and
the iteration counts.

Run: ``python bench/compare_wiki_runs.py BEFORE.json AFTER.json``.
"""
import json
import sys

import numpy as np


def main(before_path, after_path):
    with open(before_path) as fh:
        before = json.load(fh)
    with open(after_path) as fh:
        after = json.load(fh)
    rows, deltas, over_std = [], [], 0
    for key in sorted(before["maps"]):
        a, b = np.array(before["maps"][key]), np.array(after["maps"][key])
        delta, std = b.mean() - a.mean(), a.std()
        deltas.append(delta)
        over_std += abs(delta) >= std
        rows.append(f"| {key.replace('|', ' | ')} | {a.mean():.4f} | {b.mean():.4f} | "
                    f"{delta:+.4f} | {std:.4f} |")
    print(f"{before_path} ({before['dtype']}) -> {after_path} ({after['dtype']})\n")
    print("| scenario | bits | database | direction | before | after | change | std before |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nmean change over {len(deltas)} cells {np.mean(deltas):+.4f} (mean absolute "
          f"{np.mean(np.abs(deltas)):.4f}, largest {max(deltas, key=abs):+.4f}); "
          f"cells moving by at least their standard deviation: {over_std}")
    for scen in sorted(before["iters"]):
        i, j = np.array(before["iters"][scen]), np.array(after["iters"][scen])
        print(f"{scen}: iterations median {np.median(i):.0f} -> {np.median(j):.0f}, "
              f"mean {i.mean():.1f} -> {j.mean():.1f}; converged "
              f"{sum(before['converged'][scen])}/{i.size} -> "
              f"{sum(after['converged'][scen])}/{j.size}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
