"""Writing results to a folder: CSV, JSON and Markdown files and the plots."""
import csv
import json
import os

import numpy as np

from ._plots import plot_comparison, plot_results
from ._tables import (
    comparison_cells,
    format_comparison,
    format_comparison_markdown,
    format_markdown,
)


def write_results(result, out_dir, plots=True):
    """Write ``runs.csv``, ``summary.csv``, ``summary.md``, ``results.json`` and (``plots``)
    ``map_vs_bits.png``, ``pr_curves.png``, ``objective.png`` into
    ``out_dir`` (created if needed).  Returns the list of written paths."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    runs_path = os.path.join(out_dir, "runs.csv")
    _write_csv(runs_path, result["runs"])
    written.append(runs_path)
    summary_path = os.path.join(out_dir, "summary.csv")
    _write_csv(summary_path, result["summary"])
    written.append(summary_path)
    md_path = os.path.join(out_dir, "summary.md")
    with open(md_path, "w") as fh:
        fh.write(format_markdown(result) + "\n")
    written.append(md_path)
    json_path = os.path.join(out_dir, "results.json")
    payload = {
        "config": result["config"], "summary": result["summary"], "runs": result["runs"],
        "pr_curves": [{"scenario": k[0], "bits": k[1], "direction": k[2], **v}
                      for k, v in result["pr_curves"].items()],
        "objectives": [{"scenario": k[0], "bits": k[1], "objective": v}
                       for k, v in result["objectives"].items()],
    }
    tmp = json_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(_jsonable(payload), fh, indent=1)
    os.replace(tmp, json_path)
    written.append(json_path)
    if plots:
        written += plot_results(result, out_dir)
    return written


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # JSON has no NaN
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def _write_csv(path, rows):
    if not rows:
        return
    fields = list(rows[0].keys())
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})


def write_comparison(comparison, out_dir, plots=True):
    """Write every method's files (see :func:`write_results`, without its
    plots) into ``out_dir/<method>/``, then ``comparison.md``,
    ``comparison.txt`` and (``plots``) ``map_vs_bits_methods.png`` into
    ``out_dir``.  Returns the list of written paths."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for method, result in comparison["results"].items():
        written += write_results(result, os.path.join(out_dir, method), plots=False)
    for name, text in (("comparison.md", format_comparison_markdown(comparison)),
                       ("comparison.txt", format_comparison(
                           comparison, paper=comparison_cells(comparison)[1].get("paper")))):
        path = os.path.join(out_dir, name)
        with open(path, "w") as fh:
            fh.write(text + "\n")
        written.append(path)
    if plots:
        written.append(plot_comparison(comparison, out_dir))
    return written
