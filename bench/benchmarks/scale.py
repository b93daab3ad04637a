"""asv benchmarks of FlexCMH at the scale of the paper's large data sets.

The real MIRFlickr-25K and NUS-WIDE files are not available here, so every
benchmark runs on synthetic data of the same shapes and sparsity
(:func:`make_like`), in the weak 2a scenario
(``flexcmh_fast.scenarios.make_scenario(..., "weak")``: 50% of the pairs
known, the rest hidden), 16 bits:

* ``TrainMIRFlickr``: 20,015 pairs, 512-d dense + 1,386-d binary tags
  (0.3% dense, CSR), 24 labels, k = 25, up to 500 iterations or
  convergence.  Paper (Table VI): 96.42 s.
* ``TrainNUSWIDE``: 186,577 pairs, 500-d dense BoVW + 1,000-d binary tags
  (1% dense, CSR), 21 concepts, k = 80, up to 500 iterations or
  convergence.  Paper: 74,163.55 s.
* ``EncodeOneMillion``: out-of-sample encoding of 1,000,000 samples with a
  NUS-WIDE-shaped model (sparse tags as one CSR matrix; dense images as 10
  calls on a 100,000-row block, so the input does not need 4 GB).
* ``ScalingSeries``: NUS-WIDE-shaped data at 25k / 50k / 100k / 200k
  samples, a fixed number of iterations (``tol=0``), tracking the seconds
  per sample and iteration -- flat when the cost is linear in n.

The data are generated once per benchmark class in ``setup_cache`` (a
separate process) and stored as ``.npy`` files in asv's cache folder, so
that ``peakmem_*`` measures loading the training data plus training, not the
generator.  Numba is warmed up in ``setup`` so ``time_*`` measure
steady-state training.

Run ``python bench/benchmarks/scale.py`` for the one-shot table of
``docs/performance.md`` (each measurement in a fresh subprocess).
"""
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# Shapes of the paper's data sets (Section IV-A) and their k (Table VI
# setting).  density is the fraction of non-zero tag entries.
SHAPES = {
    "mirflickr": dict(n=20015, d_img=512, d_txt=1386, density=0.003, n_classes=24,
                      k=25, paper_seconds=96.42),
    "nuswide": dict(n=186577, d_img=500, d_txt=1000, density=0.01, n_classes=21,
                    k=80, paper_seconds=74163.55),
}
SCALING_SIZES = (25_000, 50_000, 100_000, 200_000)
# Outer iterations of the scaling series (tol=0: every size does the same
# number of iterations, so time / (n * iterations) is comparable).
SCALING_ITERS = 10
N_BITS = 16
N_THREADS = 2


def make_like(n, d_img, d_txt, density, n_classes, random_state=0, chunk=65536,
              n_img=None):
    """Synthetic paired data shaped like a bag-of-visual-words + tags set.

    Every object draws a primary class and, with probability 0.1 each, extra
    classes (multi-label, 0/1 matrix).  The image part is a non-negative
    histogram-like vector: the class's non-negative mean profile (Gamma
    distributed, a few strong bins) times Gamma(2, 1/2) noise per bin, with
    about 30% of the bins zeroed (BoVW histograms are sparse-ish), stored
    dense.  The tag part is binary CSR: Poisson(``density * d_txt``)
    (at least 1) tags per object, 70% drawn from the topic of the object's
    primary class (a Dirichlet distribution concentrated on a few tags),
    30% uniformly; repeated tags count once.

    Unlike :func:`flexcmh_fast.datasets.make_multimodal`, which materialises
    a dense ``n x d_txt`` word-probability matrix and samples each document
    in a Python loop (1.5 GB and minutes at NUS-WIDE size), this generator is
    vectorised and its memory is the size of its output (the dense image
    block is filled in ``chunk``-row pieces).

    ``n_img`` (default ``n``) limits the image rows to the first ``n_img``
    objects (the encoding benchmark needs 1M tags but only a block of images).

    Returns
    -------
    X_img : float64 ndarray (n_img, d_img)
    X_txt : float64 CSR (n, d_txt), values 1.0
    labels : uint8 ndarray (n, n_classes)
    """
    rng = np.random.default_rng(random_state)
    primary = rng.integers(0, n_classes, n)
    labels = (rng.random((n, n_classes)) < 0.1).astype(np.uint8)
    labels[np.arange(n), primary] = 1

    means = rng.gamma(0.3, 1.0, (n_classes, d_img))
    n_img = n if n_img is None else min(n_img, n)
    X_img = np.empty((n_img, d_img))
    for s in range(0, n_img, chunk):
        e = min(n_img, s + chunk)
        block = means[primary[s:e]] * rng.gamma(2.0, 0.5, (e - s, d_img))
        block[rng.random((e - s, d_img)) < 0.3] = 0.0
        X_img[s:e] = block

    topics = rng.dirichlet(np.full(d_txt, 0.05), size=n_classes)
    # Row c of the flattened cumulative topics runs from c to c + 1, so one
    # searchsorted of (class + uniform) draws every tag from its own topic.
    cum = (np.cumsum(topics, axis=1) + np.arange(n_classes)[:, None]).ravel()
    lengths = np.maximum(1, rng.poisson(density * d_txt, n))
    rows = np.repeat(np.arange(n), lengths)
    cls = primary[rows]
    u = np.minimum(rng.random(rows.size), 1.0 - 1e-12)
    topic_word = np.searchsorted(cum, cls + u, side="right") - cls * d_txt
    topic_word = np.clip(topic_word, 0, d_txt - 1)
    words = np.where(rng.random(rows.size) < 0.7, topic_word,
                     rng.integers(0, d_txt, rows.size))
    X_txt = sp.csr_matrix((np.ones(rows.size), (rows, words)), shape=(n, d_txt))
    X_txt.sum_duplicates()
    X_txt.data[:] = 1.0
    return X_img, X_txt, labels


def make_weak(shape, n=None, random_state=0):
    """Weak 2a training scenario of a synthetic data set of ``shape``
    (``"mirflickr"`` / ``"nuswide"``), optionally with ``n`` samples.

    Returns ``(X_img, X_txt, pairs)`` ready for ``flexcmh_fast.train``."""
    from flexcmh_fast.scenarios import make_scenario

    s = SHAPES[shape]
    X_img, X_txt, labels = make_like(n or s["n"], s["d_img"], s["d_txt"], s["density"],
                                     s["n_classes"], random_state=random_state)
    scen = make_scenario([X_img, X_txt], labels, "weak", random_state=random_state)
    del X_img, X_txt
    return scen.modalities[0], scen.modalities[1], scen.pairs


def save_data(folder, name, X_img, X_txt, pairs):
    """Store one training set as plain ``.npy`` files (no pickle)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}_img.npy", X_img)
    np.save(folder / f"{name}_txt_data.npy", X_txt.data)
    np.save(folder / f"{name}_txt_indices.npy", X_txt.indices)
    np.save(folder / f"{name}_txt_indptr.npy", X_txt.indptr)
    np.save(folder / f"{name}_txt_shape.npy", np.array(X_txt.shape, dtype=np.int64))
    if pairs is not None:
        np.save(folder / f"{name}_pairs.npy", pairs)


def load_data(folder, name):
    """Inverse of :func:`save_data`."""
    folder = Path(folder)
    X_img = np.load(folder / f"{name}_img.npy")
    X_txt = sp.csr_matrix((np.load(folder / f"{name}_txt_data.npy"),
                           np.load(folder / f"{name}_txt_indices.npy"),
                           np.load(folder / f"{name}_txt_indptr.npy")),
                          shape=tuple(np.load(folder / f"{name}_txt_shape.npy")))
    p = folder / f"{name}_pairs.npy"
    return X_img, X_txt, (np.load(p) if p.is_file() else None)


def warm_up(dtype="float64"):
    """Compile (or load from cache) every Numba kernel on a tiny problem of
    the data's dtype."""
    import flexcmh_fast as fc

    rng = np.random.default_rng(0)
    X0 = rng.random((60, 6)).astype(dtype)
    X1 = sp.random(60, 9, density=0.3, format="csr", random_state=0, dtype=dtype)
    fc.train([X0, X1], np.array([[0, 0], [1, 1]]), n_bits=8, n_clusters=3,
             random_state=0, max_iter=2, n_threads=N_THREADS)


def train(X_img, X_txt, pairs, k, max_iter=500, tol=None, callback=None):
    """The benchmarked call: ``flexcmh_fast.train`` with the defaults of
    the package except the shape-specific k (``tol=None``: the default)."""
    import flexcmh_fast as fc

    extra = {} if tol is None else {"tol": tol}
    return fc.train([X_img, X_txt], pairs, n_bits=N_BITS, n_clusters=k,
                    random_state=0, n_threads=N_THREADS, max_iter=max_iter,
                    callback=callback, **extra)


def proc_status(key):
    """A ``/proc/self/status`` memory field in bytes (Linux; None elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def max_rss_bytes():
    """Peak resident set size of this process so far (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------
# asv benchmarks
# --------------------------------------------------------------------------
class _TrainShape:
    timeout = 1800
    number = 1
    repeat = 1
    shape = None

    def setup_cache(self):
        X_img, X_txt, pairs = make_weak(self.shape)
        save_data(".", self.shape, X_img, X_txt, pairs)
        return os.path.abspath(".")

    def setup(self, folder):
        self.X_img, self.X_txt, self.pairs = load_data(folder, self.shape)
        self.k = SHAPES[self.shape]["k"]
        warm_up()

    def _train(self):
        return train(self.X_img, self.X_txt, self.pairs, self.k)

    def time_train_weak_16bits(self, folder):
        self._train()

    def peakmem_train_weak_16bits(self, folder):
        self._train()

    def track_iterations(self, folder):
        return self._train().n_iter_

    track_iterations.unit = "iterations"

    def track_speedup_vs_paper(self, folder):
        """Paper's Table VI seconds / our seconds (higher is better)."""
        t = time.perf_counter()
        self._train()
        return SHAPES[self.shape]["paper_seconds"] / (time.perf_counter() - t)

    track_speedup_vs_paper.unit = "x"


class TrainMIRFlickr(_TrainShape):
    shape = "mirflickr"


class TrainNUSWIDE(_TrainShape):
    shape = "nuswide"
    # A full NUS-WIDE-sized training takes minutes: one sample per metric.
    timeout = 3600


class TrainNUSWIDEFloat32(TrainNUSWIDE):
    """The same fit with float32 input (dense image features, CSR tags)."""

    def setup(self, folder):
        super().setup(folder)
        self.X_img = self.X_img.astype(np.float32)
        self.X_txt = self.X_txt.astype(np.float32)
        warm_up("float32")


class EncodeOneMillion:
    """Encode 1,000,000 out-of-sample items with a NUS-WIDE-shaped model."""

    timeout = 1800
    number = 1
    repeat = 1
    n_total = 1_000_000
    block = 100_000

    def setup_cache(self):
        # The model: NUS-WIDE-shaped (k = 80) but trained on 20k samples for
        # 20 iterations -- encoding cost depends on k and d, not on the
        # training set.
        X_img, X_txt, pairs = make_weak("nuswide", n=20_000)
        model = train(X_img, X_txt, pairs, SHAPES["nuswide"]["k"], max_iter=20)
        model.save("encode_model.npz")
        s = SHAPES["nuswide"]
        Q_img, Q_txt, _ = make_like(self.n_total, s["d_img"], s["d_txt"], s["density"],
                                    s["n_classes"], random_state=1, n_img=self.block)
        save_data(".", "encode", Q_img, Q_txt, None)
        return os.path.abspath(".")

    def setup(self, folder):
        import flexcmh_fast as fc

        self.model = fc.load(os.path.join(folder, "encode_model.npz"))
        self.Q_img, self.Q_txt, _ = load_data(folder, "encode")
        warm_up()
        self.model.encode(self.Q_img[:100], 0)

    def time_encode_text_1m(self, folder):
        self.model.encode(self.Q_txt, 1)

    def peakmem_encode_text_1m(self, folder):
        self.model.encode(self.Q_txt, 1)

    def time_encode_image_1m(self, folder):
        for _ in range(self.n_total // self.block):
            self.model.encode(self.Q_img, 0)

    def track_encode_text_samples_per_second(self, folder):
        t = time.perf_counter()
        self.model.encode(self.Q_txt, 1)
        return self.n_total / (time.perf_counter() - t)

    track_encode_text_samples_per_second.unit = "samples/s"


class ScalingSeries:
    """NUS-WIDE-shaped weak-2a training at growing n, fixed iterations."""

    timeout = 3600
    number = 1
    repeat = 1
    params = list(SCALING_SIZES)
    param_names = ["n_samples"]

    def setup_cache(self):
        for n in SCALING_SIZES:
            X_img, X_txt, pairs = make_weak("nuswide", n=n)
            save_data(".", f"scale{n}", X_img, X_txt, pairs)
        return os.path.abspath(".")

    def setup(self, folder, n):
        self.X_img, self.X_txt, self.pairs = load_data(folder, f"scale{n}")
        warm_up()

    def _train(self):
        return train(self.X_img, self.X_txt, self.pairs, SHAPES["nuswide"]["k"],
                     max_iter=SCALING_ITERS, tol=0.0)

    def time_train(self, folder, n):
        self._train()

    def peakmem_train(self, folder, n):
        self._train()

    def track_microseconds_per_sample_iteration(self, folder, n):
        t = time.perf_counter()
        self._train()
        return 1e6 * (time.perf_counter() - t) / (n * SCALING_ITERS)

    track_microseconds_per_sample_iteration.unit = "us"


# --------------------------------------------------------------------------
# one-shot measurements (fresh subprocess each), used by docs/performance.md
# --------------------------------------------------------------------------
_CHILD = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
if {blas_threads!r} is not None:
    # Diagnostic: pin BLAS to this many threads whatever limit the trainer
    # sets (Numba keeps the trainer's count).
    import threadpoolctl
    _limits = threadpoolctl.threadpool_limits
    threadpoolctl.threadpool_limits = lambda limits=None, user_api=None: _limits(
        limits={{"blas": {blas_threads!r}, "openmp": limits}})
import scale
X_img, X_txt, pairs = scale.load_data({folder!r}, {name!r})
X_img, X_txt = X_img.astype({dtype!r}, copy=False), X_txt.astype({dtype!r}, copy=False)
scale.warm_up({dtype!r})
rss_data = scale.max_rss_bytes()
rss_before = scale.proc_status("VmRSS")
peak_reset = scale.reset_peak_rss()
stamps = []
t = time.perf_counter()
model = scale.train(X_img, X_txt, pairs, {k}, max_iter={max_iter}, tol={tol},
                    callback=lambda it, st: stamps.append(time.perf_counter()))
seconds = time.perf_counter() - t
print(json.dumps(dict(seconds=seconds, n_iter=model.n_iter_, converged=model.converged_,
                      phases=model.phase_seconds_,
                      first_iter_at=(stamps[0] - t) if stamps else None,
                      per_iter=(float(np.diff(stamps).mean()) if len(stamps) > 1 else None),
                      per_iter_median=(float(np.median(np.diff(stamps)))
                                       if len(stamps) > 1 else None),
                      rss_before_train=rss_data, rss_peak=scale.max_rss_bytes(),
                      fit_rss_before=rss_before,
                      fit_peak_rss=scale.proc_status("VmHWM") if peak_reset else None,
                      input_bytes=X_img.nbytes + X_txt.data.nbytes + X_txt.indices.nbytes
                      + X_txt.indptr.nbytes)))
""".replace("import json, sys, time", "import json, sys, time\nimport numpy as np")


def measure(folder, name, k, max_iter=500, tol=None, timeout=1800, blas_threads=None,
            dtype="float64"):
    """Train on stored data in a fresh interpreter; returns a dict with
    ``seconds`` (training call only, Numba cache warm), ``n_iter``,
    ``per_iter`` / ``per_iter_median`` (mean / median seconds per outer
    iteration after the first), ``first_iter_at``
    (seconds to the end of iteration 1: initialisation + 1 iteration),
    ``rss_before_train`` / ``rss_peak`` (bytes; peak RSS with the data
    loaded, and over the whole run) and ``input_bytes``.

    ``blas_threads`` (diagnostic): force BLAS to that many threads inside
    the trainer, overriding the trainer's own ``threadpool_limits``.
    ``dtype``: of the training data (the stored float64 data cast before the
    fit: dense image features and the CSR tags' values)."""
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent), folder=str(folder),
                         name=name, k=k, max_iter=max_iter, tol=repr(tol),
                         blas_threads=blas_threads, dtype=dtype)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, cwd=str(Path(__file__).resolve().parents[2]))
    if out.returncode:
        raise RuntimeError(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = os.getloadavg()
    return result


if __name__ == "__main__":
    # python bench/benchmarks/scale.py FOLDER [mirflickr|nuswide|scaling|all]
    import argparse
    import importlib.util

    # From a source checkout (package not installed): import the tree.
    if importlib.util.find_spec("flexcmh_fast") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="scratch folder for the generated data")
    ap.add_argument("what", nargs="?", default="all",
                    choices=["mirflickr", "nuswide", "scaling", "all"])
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--json", help="append the results to this JSON-lines file")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="diagnostic: force BLAS to N threads inside the trainer")
    ap.add_argument("--dtype", nargs="+", default=["float64"],
                    choices=["float64", "float32"], help="dtype of the training data")
    args = ap.parse_args()
    todo = ["mirflickr", "nuswide", "scaling"] if args.what == "all" else [args.what]
    results = []
    for what in todo:
        if what == "scaling":
            for n in SCALING_SIZES:
                if not Path(args.folder, f"scale{n}_img.npy").is_file():
                    save_data(args.folder, f"scale{n}", *make_weak("nuswide", n=n))
                r = measure(args.folder, f"scale{n}", SHAPES["nuswide"]["k"],
                            max_iter=SCALING_ITERS, tol=0.0, blas_threads=args.blas_threads)
                r.update(what="scaling", n=n,
                         us_per_sample_iter=1e6 * r["per_iter"] / n,
                         us_per_sample_iter_median=1e6 * r["per_iter_median"] / n)
                results.append(r)
                print(json.dumps(r), flush=True)
        else:
            if not Path(args.folder, f"{what}_img.npy").is_file():
                save_data(args.folder, what, *make_weak(what))
            for dtype in args.dtype:
                r = measure(args.folder, what, SHAPES[what]["k"], max_iter=args.max_iter,
                            timeout=3600, blas_threads=args.blas_threads, dtype=dtype)
                r.update(what=what, n=SHAPES[what]["n"], dtype=dtype,
                         paper_seconds=SHAPES[what]["paper_seconds"],
                         speedup=SHAPES[what]["paper_seconds"] / r["seconds"])
                results.append(r)
                print(json.dumps(r), flush=True)
    for r in results:
        r["blas_threads"] = args.blas_threads
    if args.json:
        with open(args.json, "a") as fh:
            for r in results:
                fh.write(json.dumps(r) + "\n")
