"""The results as text and Markdown tables: one method (the paper's layout,
the paper's numbers beside ours on Wiki) and several methods compared."""
import numpy as np

from ._paper import SCENARIO_TITLES, paper_value


def format_table(result, paper=False):
    """The paper's layout: one row per scenario and direction, one column
    per code length, ``ours ± std`` and (``paper``) the paper's FlexCMH."""
    cfg = result["config"]
    bits, dirs = cfg["bits"], cfg["directions"]
    cell = {(s["scenario"], s["bits"], s["direction"]): s for s in result["summary"]}
    width = 26 if paper else 16
    tw = max([4] + [len(d) for d in dirs])
    head = (f"{'scenario':<10} {'task':<{tw}}"
            + "".join(f"{str(b) + ' bits':>{width}}" for b in bits))
    lines = [f"MAP ({cfg['method']}, {cfg['repeats']} repetition(s), {cfg['split']} split; "
             "stable tie-break"
             + ("; ours" + (" mean ± std" if cfg["repeats"] > 1 else "") + " | paper FlexCMH"
                if paper else ("; mean ± std" if cfg["repeats"] > 1 else ""))
             + ")", head, "-" * len(head)]
    if cfg.get("seconds") is not None:
        lines.insert(1, f"{cfg['n_samples']} objects, {len(dirs)} direction(s), "
                        f"{cfg['seconds']:.1f} s")
    for scenario in cfg["scenarios"]:
        for d_name in dirs:
            row = f"{scenario:<10} {d_name:<{tw}}"
            for b in bits:
                s = cell.get((scenario, b, d_name))
                if s is None or np.isnan(s["map_mean"]):
                    text = "n/a"
                elif s["n_repeats"] > 1:
                    text = f"{s['map_mean']:.4f}±{s['map_std']:.4f}"
                else:
                    text = f"{s['map_mean']:.4f}"
                if paper:
                    pv = paper_value(scenario, d_name, b)
                    text += f" | {pv:.4f}" if pv is not None else " |   -   "
                row += f"{text:>{width}}"
            lines.append(row)
    notes = sorted({r["note"] for r in result["runs"] if r.get("note")})
    lines += [f"n/a: {note}" for note in notes]
    return "\n".join(lines)


def format_markdown(result):
    """The summary as a Markdown table: ``mean ± std`` per cell and, where
    the paper has a number (Wiki, FlexCMH), the paper's value beside it; a
    cell below the paper is marked **▼**."""
    cfg = result["config"]
    bits, dirs = cfg["bits"], cfg["directions"]
    cell = {(s["scenario"], s["bits"], s["direction"]): s for s in result["summary"]}
    paper = cfg.get("paper", False)
    lines = ["| scenario | task | " + " | ".join(f"{b} bits" for b in bits) + " |",
             "|---|---|" + "---|" * len(bits)]
    for scenario in cfg["scenarios"]:
        for d_name in dirs:
            texts = []
            for b in bits:
                s = cell.get((scenario, b, d_name))
                if s is None or np.isnan(s["map_mean"]):
                    texts.append("n/a")
                    continue
                text = f"{s['map_mean']:.4f} ± {s['map_std']:.4f}"
                pv = paper_value(scenario, d_name, b) if paper else None
                if pv is not None:
                    text += f" ({pv:.4f})" + (" **▼**" if s["map_mean"] < pv else "")
                texts.append(text)
            lines.append(f"| {scenario} | {d_name} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def comparison_cells(comparison):
    """``{(method, scenario, bits, direction): summary row}`` and the
    first result's config (shared by all methods)."""
    cells = {}
    for method, result in comparison["results"].items():
        for s in result["summary"]:
            cells[(method, s["scenario"], s["bits"], s["direction"])] = s
    cfg = comparison["results"][comparison["methods"][0]]["config"]
    return cells, cfg


def _train_seconds(cells, method, scenario, bits, direction):
    """Mean training seconds per model, per code length, as ``a/b/c``."""
    rows = [cells.get((method, scenario, b, direction)) for b in bits]
    return "/".join("-" if r is None or np.isnan(r["map_mean"])
                    else f"{r['train_seconds_mean']:.2g}" for r in rows)


def format_comparison(comparison, paper=False):
    """One text table per scenario: a row per method and direction, a
    column per code length with ``mean ± std`` over the repetitions and
    (``paper``) the FlexCMH paper's number beside FlexCMH's row, then the
    mean training time per model at each code length."""
    cells, cfg = comparison_cells(comparison)
    bits, dirs = cfg["bits"], cfg["directions"]
    width = 24 if paper else 16
    mw = max(len(m) for m in comparison["methods"])
    tw = max([4] + [len(d) for d in dirs])
    lines = [f"MAP, {cfg['repeats']} repetition(s) on the same {cfg['split']} splits, "
             f"database '{cfg['database']}', stable tie-break; mean ± std"
             + (" | paper FlexCMH" if paper else "")
             + "; train s = seconds per model at " + "/".join(map(str, bits)) + " bits"]
    for scenario in cfg["scenarios"]:
        head = (f"{'method':<{mw}} {'task':<{tw}}"
                + "".join(f"{str(b) + ' bits':>{width}}" for b in bits) + "   train s")
        lines += ["", f"[{scenario}] {SCENARIO_TITLES.get(scenario, scenario)}", head,
                  "-" * len(head)]
        for method in comparison["methods"]:
            for d_name in dirs:
                row = f"{method:<{mw}} {d_name:<{tw}}"
                for b in bits:
                    s = cells.get((method, scenario, b, d_name))
                    text = "n/a" if s is None or np.isnan(s["map_mean"]) else (
                        f"{s['map_mean']:.4f}±{s['map_std']:.4f}" if s["n_repeats"] > 1
                        else f"{s['map_mean']:.4f}")
                    pv = paper_value(scenario, d_name, b) if paper and method == "flexcmh" else None
                    if pv is not None:
                        text += f" | {pv:.4f}"
                    row += f"{text:>{width}}"
                row += "   " + _train_seconds(cells, method, scenario, bits, d_name)
                lines.append(row)
    notes = sorted({r["note"] for res in comparison["results"].values()
                    for r in res["runs"] if r.get("note")})
    lines += [f"n/a: {note}" for note in notes]
    return "\n".join(lines)


def format_comparison_markdown(comparison):
    """The comparison as one Markdown table per scenario (``mean ± std``;
    the FlexCMH paper's number in brackets on FlexCMH's rows for Wiki;
    best mean per column in bold) with the training seconds per model."""
    cells, cfg = comparison_cells(comparison)
    bits, dirs = cfg["bits"], cfg["directions"]
    out = []
    for scenario in cfg["scenarios"]:
        out += [f"**{SCENARIO_TITLES.get(scenario, scenario)}** ({scenario})", "",
                "| method | task | " + " | ".join(f"{b} bits" for b in bits)
                + " | train s per model (" + "/".join(map(str, bits)) + " bits) |",
                "|---|---|" + "---|" * (len(bits) + 1)]
        for d_name in dirs:
            best = {}
            for b in bits:
                vals = [cells[(m, scenario, b, d_name)]["map_mean"]
                        for m in comparison["methods"] if (m, scenario, b, d_name) in cells]
                vals = [v for v in vals if not np.isnan(v)]
                # bold only where there is something to compare
                best[b] = max(vals) if len(vals) > 1 else None
            for method in comparison["methods"]:
                texts = []
                for b in bits:
                    s = cells.get((method, scenario, b, d_name))
                    if s is None or np.isnan(s["map_mean"]):
                        texts.append("n/a")
                        continue
                    text = f"{s['map_mean']:.4f} ± {s['map_std']:.4f}"
                    if s["map_mean"] == best[b]:
                        text = f"**{text}**"
                    pv = paper_value(scenario, d_name, b) if (
                        cfg.get("paper") and method == "flexcmh") else None
                    if pv is not None:
                        text += f" ({pv:.4f})"
                    texts.append(text)
                out.append(f"| {method} | {d_name} | " + " | ".join(texts) + " | "
                           + _train_seconds(cells, method, scenario, bits, d_name) + " |")
        out.append("")
        others = [m for m in comparison["methods"] if m != "flexcmh"]
        if "flexcmh" in comparison["methods"] and others:
            out += _flexcmh_differences(cells, others, scenario, bits, dirs)
    return "\n".join(out)


def _flexcmh_differences(cells, others, scenario, bits, dirs):
    """Markdown rows: FlexCMH's mean MAP minus each other method's (positive:
    FlexCMH above), so the comparison can be read off without arithmetic."""
    out = []
    for d_name in dirs:
        for method in others:
            texts = []
            for b in bits:
                ours = cells.get(("flexcmh", scenario, b, d_name))
                theirs = cells.get((method, scenario, b, d_name))
                diff = (float("nan") if ours is None or theirs is None
                        else ours["map_mean"] - theirs["map_mean"])
                texts.append("n/a" if np.isnan(diff) else f"{diff:+.4f}")
            if any(t != "n/a" for t in texts):
                out.append(f"| {method} | {d_name} | " + " | ".join(texts) + " |")
    if not out:
        return []
    return (["| FlexCMH minus | task | " + " | ".join(f"{b} bits" for b in bits) + " |",
             "|---|---|" + "---|" * len(bits)] + out + [""])
