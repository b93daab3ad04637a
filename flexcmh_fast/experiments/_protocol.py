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

What a method trains on in a scenario follows its entry in the method
registry (:mod:`flexcmh_fast._registry`): methods for any correspondence
get the scenario as it is, methods trained on known pairs get every row and
the known pairs, methods for completely paired data get the objects with a
known pair as one paired set; labels go to the methods that train on them.

Seeds: every random choice derives from ``seed`` and its position in the
protocol (repetition, scenario, code length), so a run is reproducible and
any single cell can be recomputed on its own.
"""
import time

import numpy as np

from .. import metrics
from .._progress import progress as progress_bar
from .._registry import ANY_PAIRS, COMPLETE_PAIRS, KNOWN_PAIRS, get_method
from .._train import train
from .._validation import check_n_threads, check_option
from ..scenarios import SCENARIOS, make_scenario, train_test_split
from ._paper import paper_value
from ._pool import run_cells


def direction_name(q, db, names):
    """``"I->T"`` style name of querying modality ``q`` against ``db``."""
    short = [str(n)[:1].upper() if str(n) in ("image", "text") else str(n) for n in names]
    return f"{short[q]}->{short[db]}"


def _seed(*parts):
    """A reproducible 63-bit seed from the protocol position."""
    return int(np.random.default_rng([int(p) for p in parts]).integers(2**63 - 1))


def _objective_of(model):
    return [float(v) for v in model.history_.get("objective", [])]


def _training_set(scen, spec):
    """What method ``spec`` (a registry entry) trains on in scenario
    ``scen``: ``(modalities, pairs, labels, rows)`` with ``rows`` the
    scenario rows trained on per modality (``None``: all of them), or
    ``None`` when the scenario gives it fewer than 2 known pairs."""
    pairs = scen.pairs
    if spec.pairs == ANY_PAIRS or isinstance(pairs, str):
        training = (scen.modalities, pairs, scen.labels, None)
    elif spec.pairs == COMPLETE_PAIRS and isinstance(pairs, dict):
        raise ValueError(f"method={spec.name!r} trains on completely paired data; with weak "
                         "scenarios it supports two modalities only.")
    elif pairs is None or len(pairs) < 2:
        return None
    elif spec.pairs == KNOWN_PAIRS:
        training = (scen.modalities, pairs, scen.labels, None)
    else:  # complete pairs: the objects with a known pair, as one paired set
        rows = [pairs[:, 0], pairs[:, 1]]
        training = ([X[r] for X, r in zip(scen.modalities, rows)], "all",
                    [y[r] for y, r in zip(scen.labels, rows)], rows)
    mods, pairs, labels, rows = training
    return mods, pairs, labels if spec.labels else None, rows


def _run_cell(dataset, cell, opts):
    """Train and evaluate one (repetition, scenario, code length) cell.

    Everything random derives from the seed and the cell's position, so a
    cell gives the same result whether it runs alone, in order or in a
    worker process.  Returns ``(rows, curves, objective)``: one result row
    per direction, ``{direction: (precision, recall)}`` and the objective
    history.
    """
    rep, s_i, scenario, n_bits = cell
    seed, method, names = opts["seed"], opts["method"], list(dataset.names)
    spec = get_method(method)
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
    training = _training_set(scen, spec)
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

    A cell that cannot be trained (a method that trains on known pairs, in
    a scenario with fewer than 2) is recorded with ``map = NaN`` and a
    ``note``.

    Raises
    ------
    ValueError
        An unknown ``method``, ``split`` or ``database``, or
        ``split="fixed"`` for a dataset without a fixed split.
    """
    get_method(method)
    check_option(split, "split", ("random", "fixed"))
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
    for (rep, _, scenario, n_bits), (rows, cell_curves, objective) in run_cells(
            cells, _run_cell, dataset, opts, jobs):
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


def run_comparison(dataset, methods, *, params=None, method_params=None, **kwargs):
    """:func:`run_experiment` for every method in ``methods`` with the same
    ``seed``: every method sees the same splits and the same scenario data
    (the seeds of both depend only on the repetition and scenario).

    ``params`` go to every method; ``method_params[method]`` (a dict) to
    that method only, overriding ``params``.  Returns ``{"methods": [...],
    "results": {method: run_experiment result}}``.
    """
    for method in methods:  # every name checked before the first method runs
        get_method(method)
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
