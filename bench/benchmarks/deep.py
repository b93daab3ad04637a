"""asv benchmarks and one-shot measurements of FlexCMH on deep-network
features: dense float32 embeddings, the shape users bring.

The data (:func:`make_deep`): ``n`` objects of 20 latent classes, a
2,048-d non-negative float32 "image" embedding (ReLU features, many exact
zeros: preprocessed as Hellinger by ``preprocess="auto"``) and a 768-d
float32 "text" embedding (mixed sign: kept as given); half of the pairs
known, the other half shuffled among themselves; 64 bits; every default.

Each phase of the fit (``FlexCMH.phase_seconds_``) is printed next to its
floor, measured in the same process and run:

* one streaming pass over the data: ``X.sum(axis=0)`` of every modality
  (numpy, one thread), the unit of the budget
  ``fit <= (80 + 3 x iterations) x one pass``;
* one sgemm of the data's shape: ``X @ Z`` with ``Z`` of ``k`` columns,
  every modality (BLAS, the fit's threads);
* the products the kernel encoders and the final code function must do:
  RBF dot products of the regression rows with the anchors (sgemm) and the
  float64 Gram matrix of the RBF features.

Also printed: the rise of the peak resident memory during the fit (VmHWM,
Linux), the dtype of every fitted array, and ``encode`` rows per second.

Run (about 10 minutes on 2 cores at the default n = 200,000)::

    python bench/benchmarks/deep.py FOLDER [--n 200000] [--dtype float32]

or the pytest-benchmark comparison ``bench/test_bench_deep.py``.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_CLASSES = 20
D_IMAGE, D_TEXT = 2048, 768
N_BITS = 64
N_THREADS = 2
DEFAULT_N = 200_000


def make_deep(n, dtype=np.float32, random_state=0):
    """Weakly paired deep-feature data: ``(X_image, X_text, pairs)``."""
    rng = np.random.default_rng(random_state)
    labels = rng.integers(0, N_CLASSES, n)
    X_img = np.empty((n, D_IMAGE), dtype=dtype)
    X_txt = np.empty((n, D_TEXT), dtype=dtype)
    centres_img = rng.standard_normal((N_CLASSES, D_IMAGE), dtype=np.float32)
    centres_txt = rng.standard_normal((N_CLASSES, D_TEXT), dtype=np.float32)
    for s in range(0, n, 16384):                       # bounded temporaries
        e = min(n, s + 16384)
        X_img[s:e] = np.maximum(centres_img[labels[s:e]] + 2.0 * rng.standard_normal(
            (e - s, D_IMAGE), dtype=np.float32), 0.0)
        X_txt[s:e] = centres_txt[labels[s:e]] + 2.0 * rng.standard_normal(
            (e - s, D_TEXT), dtype=np.float32)
    known = np.sort(rng.permutation(n)[: n // 2])
    hidden = np.setdiff1d(np.arange(n), known)
    order = np.arange(n)
    order[hidden] = rng.permutation(hidden)
    X_txt = X_txt[order]
    return X_img, X_txt, np.stack([known, known], axis=1)


def save_data(folder, n, dtype):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"deep{n}_{np.dtype(dtype).name}"
    if not (folder / f"{name}_img.npy").is_file():
        X_img, X_txt, pairs = make_deep(n, dtype)
        np.save(folder / f"{name}_img.npy", X_img)
        np.save(folder / f"{name}_txt.npy", X_txt)
        np.save(folder / f"{name}_pairs.npy", pairs)
    return name


def load_data(folder, name):
    folder = Path(folder)
    return (np.load(folder / f"{name}_img.npy"), np.load(folder / f"{name}_txt.npy"),
            np.load(folder / f"{name}_pairs.npy"))


def warm_up(dtype=np.float32):
    """Compile (or load from cache) the kernels of this shape's fit."""
    import flexcmh_fast as fc

    X_img, X_txt, pairs = make_deep(2000, dtype, random_state=1)
    fc.FlexCMH(n_bits=N_BITS, random_state=0, max_iter=3, n_threads=N_THREADS).fit(
        [X_img, X_txt], pairs)


def fit(X_img, X_txt, pairs):
    """The benchmarked call: FlexCMH with every default (64 bits)."""
    import flexcmh_fast as fc

    return fc.FlexCMH(n_bits=N_BITS, random_state=0, n_threads=N_THREADS).fit(
        [X_img, X_txt], pairs)


def best_seconds(func, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return min(times)


def floors(Xs, k=10, n_anchors=1000, fit_rows=20_000):
    """The floors of the phases, measured here: one streaming pass over all
    modalities, one sgemm of the data's shape (k columns), the RBF products
    of ``fit_rows`` rows with ``n_anchors`` anchors and their float64 Gram
    matrix, summed over the modalities."""
    from flexcmh_fast._threads import thread_limits

    rng = np.random.default_rng(0)
    out = {"pass": best_seconds(lambda: [X.sum(axis=0) for X in Xs])}
    Zs = [rng.standard_normal((X.shape[1], k)).astype(X.dtype) for X in Xs]
    rows = min(fit_rows, Xs[0].shape[0])
    anchors = [np.ascontiguousarray(X[:n_anchors]) for X in Xs]
    with thread_limits(N_THREADS):
        out["sgemm"] = best_seconds(lambda: [X @ Z for X, Z in zip(Xs, Zs)])
        out["rbf_products"] = best_seconds(
            lambda: [X[:rows] @ A.T for X, A in zip(Xs, anchors)], repeat=2)
        Phi = rng.random((rows, n_anchors))
        out["gram"] = len(Xs) * best_seconds(lambda: Phi.T @ Phi, repeat=2)
    return out


_CHILD = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
import numpy as np
import deep
import scale
X_img, X_txt, pairs = deep.load_data({folder!r}, {name!r})
deep.warm_up(X_img.dtype)
floors = deep.floors([X_img, X_txt])
rss_before = scale.proc_status("VmRSS")
peak_reset = scale.reset_peak_rss()
t = time.perf_counter()
model = deep.fit(X_img, X_txt, pairs)
seconds = time.perf_counter() - t
peak = scale.proc_status("VmHWM")
q = min(20_000, X_img.shape[0])
t = time.perf_counter()
model.encode(X_img[:q], 0)
model.encode(X_txt[:q], 1)
encode_rows_per_second = 2 * q / (time.perf_counter() - t)
arrays = [model.centroids_, model.anchors_, model.encoder_weights_,
          [model.code_.mu, model.code_.W, model.code_.R]]
dtypes = sorted({{str(a.dtype) for group in arrays for a in group if a is not None}})
print(json.dumps(dict(seconds=seconds, n_iter=model.n_iter_, converged=model.converged_,
                      phases=model.phase_seconds_, floors=floors,
                      data_bytes=X_img.nbytes + X_txt.nbytes,
                      rss_before=rss_before, peak_rss=peak if peak_reset else None,
                      encode_rows_per_second=encode_rows_per_second,
                      fitted_dtypes=dtypes)))
"""


def measure(folder, n=DEFAULT_N, dtype=np.float32, timeout=3600):
    """One fit in a fresh interpreter (Numba cache warm); returns a dict."""
    name = save_data(folder, n, dtype)
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), folder=str(folder),
                         name=name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, cwd=str(Path(__file__).resolve().parents[2]))
    if out.returncode:
        raise RuntimeError(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(n=n, dtype=np.dtype(dtype).name, load=os.getloadavg())
    return result


def report(r):
    """The per-phase table of one measurement (Markdown)."""
    f = r["floors"]
    p = f["pass"]
    budget = (80 + 3 * r["n_iter"]) * p
    lines = [
        f"n = {r['n']:,}, {r['dtype']}, data {r['data_bytes'] / 2**30:.2f} GiB; one pass "
        f"{p * 1e3:.0f} ms, one sgemm (k = 10) {f['sgemm'] * 1e3:.0f} ms",
        "",
        "| phase | seconds | one passes | note |",
        "|---|---|---|---|",
    ]
    phases = r["phases"]
    notes = {
        "start": "k-means sample, nearest centres, SemiNMF sweeps",
        "loop": f"{r['n_iter']} iterations: {phases['loop'] / r['n_iter'] / p:.2f} passes "
                "each (2 reads of the data)",
        "encoders": f"floor: RBF products {f['rbf_products']:.2f} s + float64 Gram "
                    f"{f['gram']:.2f} s = {f['rbf_products'] + f['gram']:.2f} s",
        "final_codes": f"floor: RBF products {f['rbf_products']:.2f} s",
    }
    for name, seconds in phases.items():
        lines.append(f"| {name} | {seconds:.2f} | {seconds / p:.1f} | {notes.get(name, '')} |")
    other = r["seconds"] - sum(phases.values())
    lines.append(f"| other (validation, statistics pass, results) | {other:.2f} | "
                 f"{other / p:.1f} | |")
    lines.append(f"| **fit** | **{r['seconds']:.2f}** | {r['seconds'] / p:.0f} | budget "
                 f"(80 + 3 x {r['n_iter']}) passes = {budget:.2f} s: ratio "
                 f"{r['seconds'] / budget:.2f} (goal <= 1) |")
    lines.append("")
    if r["peak_rss"] is not None:
        rise = r["peak_rss"] - r["rss_before"]
        lines.append(f"peak RSS rise during the fit {rise / 2**30:.2f} GiB = "
                     f"{rise / r['data_bytes']:.2f} x the data (goal <= 0.6 x data + 0.5 GiB "
                     f"= {(0.6 * r['data_bytes'] + 2**29) / 2**30:.2f} GiB)")
    lines.append(f"converged {r['converged']} in {r['n_iter']} iterations; fitted float "
                 f"arrays {r['fitted_dtypes']}; encode {r['encode_rows_per_second']:,.0f} "
                 "rows/s (both modalities)")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# asv benchmarks
# --------------------------------------------------------------------------
class DeepFeatureFit:
    """FlexCMH defaults on 100,000 float32 deep-feature objects (the
    issue's acceptance shape; ``DEFAULT_N`` for the one-shot table)."""

    timeout = 3600
    number = 1
    repeat = 1
    n = 100_000

    def setup_cache(self):
        return os.path.abspath("."), save_data(".", self.n, np.float32)

    def setup(self, cache):
        folder, name = cache
        self.X_img, self.X_txt, self.pairs = load_data(folder, name)
        warm_up()

    def time_fit(self, cache):
        fit(self.X_img, self.X_txt, self.pairs)

    def peakmem_fit(self, cache):
        fit(self.X_img, self.X_txt, self.pairs)

    def track_iterations(self, cache):
        return fit(self.X_img, self.X_txt, self.pairs).n_iter_

    track_iterations.unit = "iterations"

    def track_budget_ratio(self, cache):
        """Fit seconds / ((80 + 3 x iterations) x one pass); goal <= 1."""
        p = floors([self.X_img, self.X_txt])["pass"]
        t = time.perf_counter()
        model = fit(self.X_img, self.X_txt, self.pairs)
        return (time.perf_counter() - t) / ((80 + 3 * model.n_iter_) * p)

    track_budget_ratio.unit = "ratio"


class DeepFeatureEncode:
    """``encode`` of 20,000 deep-feature rows per modality."""

    timeout = 1800

    def setup_cache(self):
        X_img, X_txt, pairs = make_deep(20_000)
        model = fit(X_img, X_txt, pairs)
        model.save("deep_model.npz")
        np.save("deep_queries_img.npy", X_img)
        np.save("deep_queries_txt.npy", X_txt)
        return os.path.abspath(".")

    def setup(self, folder):
        import flexcmh_fast as fc

        self.model = fc.load(os.path.join(folder, "deep_model.npz"))
        self.X_img = np.load(os.path.join(folder, "deep_queries_img.npy"))
        self.X_txt = np.load(os.path.join(folder, "deep_queries_txt.npy"))
        self.model.encode(self.X_img[:10], 0)

    def time_encode_image(self, folder):
        self.model.encode(self.X_img, 0)

    def time_encode_text(self, folder):
        self.model.encode(self.X_txt, 1)


if __name__ == "__main__":
    import argparse
    import importlib.util

    if importlib.util.find_spec("flexcmh_fast") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="scratch folder for the generated data")
    ap.add_argument("--n", type=int, nargs="+", default=[DEFAULT_N])
    ap.add_argument("--dtype", nargs="+", default=["float32"],
                    choices=["float32", "float64"])
    ap.add_argument("--json", help="append the results to this JSON-lines file")
    args = ap.parse_args()
    for n in args.n:
        for dtype in args.dtype:
            r = measure(args.folder, n, np.dtype(dtype))
            print(report(r), "\n", flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
