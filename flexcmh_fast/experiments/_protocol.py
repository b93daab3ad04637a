"""The experiment protocol of the FlexCMH paper (Section IV) and its outputs.

For every repetition: a random 70/30 split of the paired data (or the
file's fixed split), then for every scenario the training data of that
scenario (built once per repetition and shared by every code length), then
for every code length one model, evaluated in every direction: queries are
the test objects of one modality (encoded by that modality's hash
function), the database is every training object of the other modality, MAP
over the whole ranking (stable tie-break, plus the tie-aware MAP).

Database codes (``database=``): ``"encoded"`` (default) encodes every
training row with its modality's hash function (``model.encode``), as
the paper's protocol states it.  ``"learned"`` uses the codes the model
learned for its training samples (``model.train_codes_``, the paper's H̃m,
which "can be used for cross-modal retrieval", Section III-C), the usual
protocol of cross-modal hashing papers whose database is the training set;
training rows a model did not see (CSMH in the weak scenarios trains on the
known pairs only) then get the hash function's code.

Seeds: every random choice derives from ``seed`` and its position in the
protocol (repetition, scenario, code length), so a run is reproducible and
any single cell can be recomputed on its own.
"""
import csv
import json
import os
import time

import numpy as np

from .. import metrics
from .._progress import progress as progress_bar
from ..scenarios import SCENARIOS, make_scenario, train_test_split

# The paper's FlexCMH MAP on Wiki (Tables III-V), code lengths 16/32/64/128.
PAPER_BITS = (16, 32, 64, 128)
PAPER_WIKI = {
    "paired": {"I->T": (.2846, .2889, .2912, .2935), "T->I": (.2812, .2836, .2857, .2869)},
    "weak": {"I->T": (.2629, .2647, .2655, .2687), "T->I": (.2538, .2541, .2557, .2563)},
    "weak2b": {"I->T": (.2577, .2593, .2612, .2635), "T->I": (.2503, .2515, .2534, .2542)},
    "unpaired": {"I->T": (.2511, .2534, .2548, .2563), "T->I": (.2437, .2459, .2483, .2501)},
}
SCENARIO_TITLES = {
    "paired": "completely paired",
    "weak": "weakly paired 2a (50% pairs known)",
    "weak2b": "weakly paired 2b (2a, 10% texts removed)",
    "unpaired": "completely unpaired",
}


def paper_value(scenario, direction, n_bits):
    """The paper's Wiki MAP for a cell, or None."""
    row = PAPER_WIKI.get(scenario, {}).get(direction)
    if row is None or n_bits not in PAPER_BITS:
        return None
    return row[PAPER_BITS.index(n_bits)]


def direction_name(q, db, names):
    """``"I->T"`` style name of querying modality ``q`` against ``db``."""
    short = [str(n)[:1].upper() if str(n) in ("image", "text") else str(n) for n in names]
    return f"{short[q]}->{short[db]}"


def _seed(*parts):
    """A reproducible 63-bit seed from the protocol position."""
    return int(np.random.default_rng([int(p) for p in parts]).integers(2**63 - 1))


def _objective_of(model):
    return [float(v) for v in model.history_.get("objective", [])]


def _csmh_training_set(scen):
    """CSMH trains on paired, labelled data: the objects whose correspondence
    is known in this scenario (all of them when paired), as a paired set.
    Returns ``(modalities, pairs, labels, rows)`` with ``rows`` the scenario
    rows trained on per modality (``None``: all of them), or ``None``."""
    if isinstance(scen.pairs, str):
        return scen.modalities, "all", scen.labels, None
    if scen.pairs is None:
        return None
    if isinstance(scen.pairs, dict):
        raise ValueError("method='csmh' with weak scenarios supports two modalities only.")
    p = scen.pairs
    if p.shape[0] < 2:
        return None
    mods = [scen.modalities[0][p[:, 0]], scen.modalities[1][p[:, 1]]]
    labels = [scen.labels[0][p[:, 0]], scen.labels[1][p[:, 1]]]
    return mods, "all", labels, [p[:, 0], p[:, 1]]


# Baselines trained on the known pairs of the scenario's own training rows
# (they take the weak pairs as given and encode every row).
PAIRED_BASELINES = ("cca_itq", "cmfh", "scm")


def _baseline_training_set(scen):
    """The scenario's data for a baseline: all rows, the known pairs and the
    labels (used by SCM only); ``None`` when fewer than 2 pairs are known."""
    if scen.pairs is None or (not isinstance(scen.pairs, str) and len(scen.pairs) < 2):
        return None
    return scen.modalities, scen.pairs, scen.labels, None


def _run_cell(dataset, cell, opts):
    """Train and evaluate one (repetition, scenario, code length) cell.

    Everything random derives from the seed and the cell's position, so a
    cell gives the same result whether it runs alone, in order or in a
    worker process.  Returns ``(rows, curves, objective)``: one result row
    per direction, ``{direction: (precision, recall)}`` and the objective
    history.
    """
    from .._train import train

    rep, s_i, scenario, n_bits = cell
    seed, method, names = opts["seed"], opts["method"], list(dataset.names)
    n_mod = dataset.n_modalities
    directions = [(q, db) for q in range(n_mod) for db in range(n_mod) if q != db]
    if opts["split"] == "fixed":
        tr, te = dataset.train_idx, dataset.test_idx
    else:
        tr, te = train_test_split(dataset.n_samples, opts["test_size"],
                                  random_state=_seed(seed, rep, 0))
    X_tr = [X[tr] for X in dataset.modalities]
    X_te = [X[te] for X in dataset.modalities]
    y_tr, y_te = dataset.labels[tr], dataset.labels[te]
    # The scenario's seed does not depend on n_bits: every code length of a
    # repetition trains on the same scenario data.
    scen = make_scenario(X_tr, y_tr, scenario, random_state=_seed(seed, rep, 1, s_i))
    if method == "csmh":
        training = _csmh_training_set(scen)
    elif method in PAIRED_BASELINES:
        training = _baseline_training_set(scen)
    else:
        training = (scen.modalities, scen.pairs, None, None)
    base = {"method": method, "scenario": scenario, "bits": int(n_bits), "repeat": rep,
            "n_train": int(len(tr)), "n_test": int(len(te))}
    rows, curves = [], {}
    if training is None:
        for q, db in directions:
            rows.append(dict(base, direction=direction_name(q, db, names), map=float("nan"),
                             map_aware=float("nan"), precision_at_radius=float("nan"),
                             n_excluded=0, train_seconds=0.0, n_iter=0,
                             note=f"{method} needs known pairs"))
        return rows, curves, []
    mods, pairs, labels, trained_rows = training
    params = dict(opts["params"])
    t0 = time.perf_counter()
    model = train(mods, pairs, n_bits=int(n_bits), method=method, labels=labels,
                  random_state=_seed(seed, rep, 2, s_i, n_bits),
                  n_threads=opts["n_threads"], verbose=opts["verbose"], **params)
    t_train = time.perf_counter() - t0
    codes_te = [model.encode(X, m) for m, X in enumerate(X_te)]
    # The database: the scenario's training rows of each modality.
    codes_db = [model.encode(X, m) for m, X in enumerate(scen.modalities)]
    if opts["database"] == "learned":
        for m in range(n_mod):
            rows_m = slice(None) if trained_rows is None else trained_rows[m]
            codes_db[m][rows_m] = model.train_codes_[m]
    for q, db in directions:
        d_name = direction_name(q, db, names)
        rep_m = metrics.retrieval_report(codes_te[q], codes_db[db], y_te, scen.labels[db],
                                         n_bits=int(n_bits), radius=min(opts["radius"], n_bits),
                                         n_threads=opts["n_threads"])
        rows.append(dict(base, direction=d_name, map=rep_m["map"], map_aware=rep_m["map_aware"],
                         precision_at_radius=rep_m["precision_at_radius"],
                         n_excluded=rep_m["n_excluded"], train_seconds=round(t_train, 4),
                         n_iter=int(getattr(model, "n_iter_", 0)), note=""))
        curves[d_name] = (np.asarray(rep_m["pr_precision"]), np.asarray(rep_m["pr_recall"]))
    return rows, curves, _objective_of(model)


# Worker-process state (set once per worker by _init_worker).
_WORKER = {}


def _init_worker(dataset, opts):
    _WORKER["dataset"], _WORKER["opts"] = dataset, opts


def _worker_cell(cell):
    return _run_cell(_WORKER["dataset"], cell, _WORKER["opts"])


def _cells_in_order(cells, dataset, opts, jobs):
    """Yield ``(cell, result)`` in the order of ``cells``; with ``jobs > 1``
    the cells run in that many worker processes (spawned: a forked child of
    a process that already ran OpenMP / Numba threads is not safe)."""
    if jobs <= 1:
        for cell in cells:
            yield cell, _run_cell(dataset, cell, opts)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(dataset, opts)) as pool:
        futures = [pool.submit(_worker_cell, cell) for cell in cells]
        for cell, fut in zip(cells, futures):
            yield cell, fut.result()


def run_experiment(dataset, *, scenarios=SCENARIOS, bits=(16, 32, 64, 128), repeats=10,
                   method="flexcmh", seed=0, n_threads=None, split="random", test_size=0.3,
                   params=None, progress=True, verbose=False, radius=2, paper=False, jobs=1,
                   database="encoded"):
    """Run the protocol; returns a dict with ``config``, ``runs`` (one dict
    per repetition x scenario x bits x direction), ``summary``,
    ``pr_curves`` (mean over repetitions) and ``objectives`` (first
    repetition).

    ``paper=True`` marks the dataset as Wiki: the table and plots then show
    the paper's FlexCMH numbers beside ours.  ``jobs > 1`` trains that many
    cells at once in worker processes, each with ``n_threads // jobs``
    threads (at least 1); results are identical to ``jobs=1``.

    ``database`` is ``"encoded"`` (training rows encoded by the hash
    functions) or ``"learned"`` (the models' training codes); see the
    module docstring.

    A cell that cannot be trained (CSMH without known pairs) is recorded
    with ``map = NaN`` and a ``note``.
    """
    from .._validation import check_n_threads, check_option

    check_option(database, "database", ("learned", "encoded"))

    params = dict(params or {})
    names = list(dataset.names)
    n_mod = dataset.n_modalities
    directions = [(q, db) for q in range(n_mod) for db in range(n_mod) if q != db]
    if split == "fixed" and dataset.train_idx is None:
        raise ValueError("split='fixed' needs a dataset with a fixed train/test split "
                         "(e.g. Wiki); this one has none. Use split='random'.")
    n_threads = check_n_threads(n_threads)
    jobs = max(1, min(int(jobs), repeats * len(scenarios) * len(bits)))
    opts = {"seed": seed, "method": method, "split": split, "test_size": test_size,
            "n_threads": max(1, n_threads // jobs), "verbose": verbose, "params": params,
            "radius": radius, "database": database}
    cells = [(rep, s_i, scenario, int(n_bits)) for rep in range(repeats)
             for s_i, scenario in enumerate(scenarios) for n_bits in bits]
    bar = progress_bar(len(cells), f"{method}", progress)
    runs, curves, objectives = [], {}, {}
    started = time.perf_counter()
    for (rep, _, scenario, n_bits), (rows, cell_curves, objective) in _cells_in_order(
            cells, dataset, opts, jobs):
        runs.extend(rows)
        for d_name, (p, r) in cell_curves.items():
            acc = curves.setdefault((scenario, n_bits, d_name), [0.0, 0.0, 0])
            acc[0] = acc[0] + p
            acc[1] = acc[1] + r
            acc[2] += 1
        if rep == 0:
            objectives[(scenario, n_bits)] = objective
        info = " ".join(f"{row['direction']} {row['map']:.4f}" for row in rows)
        bar.update(1, info=f"rep {rep} {scenario} {n_bits}b {info}")
    bar.close()
    pr = {k: {"precision": (v[0] / v[2]).tolist(), "recall": (v[1] / v[2]).tolist()}
          for k, v in curves.items()}
    config = {"method": method, "scenarios": list(scenarios), "bits": [int(b) for b in bits],
              "repeats": int(repeats), "seed": int(seed), "split": split,
              "test_size": float(test_size), "params": params, "radius": int(radius),
              "database": database,
              "directions": [direction_name(q, db, names) for q, db in directions],
              "modalities": names, "n_samples": int(dataset.n_samples),
              "n_threads": n_threads, "jobs": jobs,
              "paper": bool(paper), "seconds": round(time.perf_counter() - started, 2)}
    return {"config": config, "runs": runs, "summary": summarize(runs),
            "pr_curves": pr, "objectives": objectives}


def summarize(runs):
    """Mean and standard deviation over repetitions per scenario / bits /
    direction (NaN cells are left out of the mean)."""
    groups = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["bits"], r["direction"]), []).append(r)
    out = []
    for (scenario, n_bits, d_name), rows in groups.items():
        vals = np.array([r["map"] for r in rows], dtype=float)
        aware = np.array([r["map_aware"] for r in rows], dtype=float)
        ok = ~np.isnan(vals)
        out.append({
            "scenario": scenario, "bits": n_bits, "direction": d_name,
            "map_mean": float(vals[ok].mean()) if ok.any() else float("nan"),
            "map_std": float(vals[ok].std()) if ok.any() else float("nan"),
            "map_aware_mean": float(aware[ok].mean()) if ok.any() else float("nan"),
            "n_repeats": int(ok.sum()),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rows])),
            "paper": paper_value(scenario, d_name, n_bits),
        })
    return out


def format_table(result, paper=False):
    """The paper's layout: one row per scenario and direction, one column
    per code length, ``ours ± std`` and (``paper``) the paper's FlexCMH."""
    cfg = result["config"]
    bits, dirs = cfg["bits"], cfg["directions"]
    cell = {(s["scenario"], s["bits"], s["direction"]): s for s in result["summary"]}
    width = 26 if paper else 16
    tw = max([4] + [len(d) for d in dirs])
    head = f"{'scenario':<10} {'task':<{tw}}" + "".join(f"{str(b) + ' bits':>{width}}" for b in bits)
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
        written += _plots(result, out_dir)
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


def _plots(result, out_dir):
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


# --------------------------------------------------------------------------
# Several methods on the same splits
# --------------------------------------------------------------------------
def run_comparison(dataset, methods, *, params=None, method_params=None, **kwargs):
    """:func:`run_experiment` for every method in ``methods`` with the same
    ``seed``: every method sees the same splits and the same scenario data
    (the seeds of both depend only on the repetition and scenario).

    ``params`` go to every method; ``method_params[method]`` (a dict) to
    that method only, overriding ``params``.  Returns ``{"methods": [...],
    "results": {method: run_experiment result}}``.
    """
    method_params = method_params or {}
    unknown = sorted(set(method_params) - set(methods))
    if unknown:
        raise ValueError(f"Parameters given for method(s) {unknown} that are not run; "
                         f"methods run: {list(methods)}.")
    results = {}
    for method in methods:
        p = dict(params or {})
        p.update(method_params.get(method, {}))
        results[method] = run_experiment(dataset, method=method, params=p, **kwargs)
    return {"methods": list(methods), "results": results}


def _comparison_cells(comparison):
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
    cells, cfg = _comparison_cells(comparison)
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
    cells, cfg = _comparison_cells(comparison)
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
                           comparison, paper=_comparison_cells(comparison)[1].get("paper")))):
        path = os.path.join(out_dir, name)
        with open(path, "w") as fh:
            fh.write(text + "\n")
        written.append(path)
    if plots:
        written.append(_comparison_plot(comparison, out_dir))
    return written


def _comparison_plot(comparison, out_dir):
    """MAP against code length, one line per method, a panel per scenario
    and direction (rows: directions), error bars = std over repetitions."""
    cells, cfg = _comparison_cells(comparison)
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
