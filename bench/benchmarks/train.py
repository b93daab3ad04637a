"""asv benchmarks of FlexCMH training.

* ``TrainWiki``: the real Wiki data (../shared/data/wiki), weak 2a scenario,
  16 bits, up to 500 iterations or convergence; wall time, peak memory and
  MAP (Image->Text, Text->Image).  Skipped when the data folder is absent.
* ``TrainSynthetic``: MIRFlickr- and NUS-WIDE-shaped synthetic data (dense
  image features + sparse binary tags), a fixed number of iterations, so the
  per-iteration cost is tracked.
* ``HStepNNLS``: the H step's NNLS kernel (one sweep) at the Wiki,
  MIRFlickr and NUS-WIDE shapes.
* ``SparseCentroidProduct``: ``X Z`` of the CSR tags with the centroids,
  ours (parallel, into a buffer kept between calls, as in a fit) next to
  scipy's ``X @ Z`` (a new array each call), MIRFlickr and NUS-WIDE shapes.
* ``KernelEncoders``: the two modalities' kernel encoders (RBF features,
  Gram, Cholesky) one after the other and on two threads at once, at the
  Wiki shape and at the NUS-WIDE shape's cap of regression rows.
* ``Compile``: first-call Numba compile time (fresh cache, in a subprocess)
  and the import time with a warm cache.

JIT warm-up happens in ``setup`` so that ``time_*`` measure steady-state
training only.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import flexcmh_fast as fc

_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wiki"


def _warm_up():
    rng = np.random.default_rng(0)
    X0, X1 = rng.random((40, 6)), sp.random(40, 9, density=0.3, format="csr", random_state=0)
    fc.train([X0, X1], np.array([[0, 0], [1, 1]]), n_bits=8, n_clusters=3, random_state=0,
             max_iter=2)


def wiki_weak(seed=0):
    """Wiki, random 70/30 split, weak 2a (50% known pairs, rest shuffled),
    built with the package's own loader and scenario builder.

    Features as chosen on validation data (docs/flexcmh.md): image SIFT
    histograms square-rooted and L2-normalised, text topics L2-normalised."""
    from flexcmh_fast import datasets, scenarios

    data = datasets.load_wiki(_DATA)
    img = datasets.normalize_rows(data.modalities[0], "hellinger")
    txt = datasets.normalize_rows(data.modalities[1], "l2")
    tr, te = scenarios.train_test_split(data.n_samples, 0.3, random_state=seed)
    scen = scenarios.make_scenario([img[tr], txt[tr]], data.labels[tr], "weak",
                                   random_state=seed)
    return dict(train=scen.modalities, pairs=scen.pairs, test=[img[te], txt[te]],
                lab_test=data.labels[te], lab_train=scen.labels)


def wiki_map(model, d, query, db):
    """MAP of modality ``query``'s test items against modality ``db``'s
    training items (stable tie-break), with the package's metrics."""
    return fc.metrics.mean_average_precision(
        model.encode(d["test"][query], query), model.encode(d["train"][db], db),
        d["lab_test"], d["lab_train"][db], n_bits=model.n_bits)


class TrainWiki:
    timeout = 600
    number = 1
    repeat = 3

    def setup(self):
        if not (_DATA / "wikiData.mat").is_file():
            raise NotImplementedError("Wiki data not found")
        self.data = wiki_weak()
        _warm_up()

    def _train(self):
        return fc.train(self.data["train"], self.data["pairs"], n_bits=16, n_clusters=10,
                        max_iter=500, random_state=0, n_threads=2)

    def time_train_weak_16bits(self):
        self._train()

    def peakmem_train_weak_16bits(self):
        self._train()

    def track_iterations(self):
        return self._train().n_iter_

    def track_map_image_to_text(self):
        return wiki_map(self._train(), self.data, 0, 1)

    def track_map_text_to_image(self):
        return wiki_map(self._train(), self.data, 1, 0)


def synthetic(n, d_img, d_txt, density, seed=0):
    """Dense non-negative image features and sparse binary tags (CSR)."""
    rng = np.random.default_rng(seed)
    X0 = rng.gamma(0.5, 1.0, (n, d_img))
    X1 = sp.random(n, d_txt, density=density, format="csr", random_state=seed + 1)
    X1.data[:] = 1.0
    known = np.sort(rng.permutation(n)[:n // 2])
    return [X0, X1], np.stack([known, known], 1)


class TrainSynthetic:
    """Fixed iteration counts; per-iteration cost = (time(N+5) - time(5)) / N."""

    timeout = 1800
    number = 1
    repeat = 1
    params = ["mirflickr", "nuswide"]
    param_names = ["shape"]
    _shapes = {"mirflickr": (20015, 512, 1386, 0.003, 25),
               "nuswide": (186577, 500, 1000, 0.005, 80)}

    def setup(self, shape):
        n, d0, d1, dens, k = self._shapes[shape]
        self.Xs, self.pairs = synthetic(n, d0, d1, dens)
        self.k = k
        _warm_up()

    def _train(self, iters):
        return fc.train(self.Xs, self.pairs, n_bits=16, n_clusters=self.k, max_iter=iters,
                        tol=0.0, random_state=0, n_threads=2)

    def time_train_5_iterations(self, shape):
        self._train(5)

    def peakmem_train_5_iterations(self, shape):
        self._train(5)

    def track_seconds_per_iteration(self, shape):
        times = []
        fc.train(self.Xs, self.pairs, n_bits=16, n_clusters=self.k, max_iter=6, tol=0.0,
                 random_state=0, n_threads=2,
                 callback=lambda it, state: times.append(time.perf_counter()))
        return float(np.diff(times).mean())

    track_seconds_per_iteration.unit = "s"


_COMPILE_SNIPPET = (
    "import time; t=time.perf_counter();"
    "import numpy as np, flexcmh_fast as fc;"
    "r=np.random.default_rng(0);"
    "fc.train([r.random((40,6)), r.random((40,5))], np.array([[0,0],[1,1]]), n_bits=8,"
    " n_clusters=3, random_state=0, max_iter=2);"
    "print(time.perf_counter()-t)"
)


# (rows, k, feature dimension) of the three data sets' H steps.
H_STEP_SHAPES = {"wiki": (2006, 10, 128), "mirflickr": (20015, 25, 512),
                 "nuswide": (186577, 80, 500)}


def h_step_problem(shape, seed=0):
    """An H step's NNLS problem: ``Q = Z^T Z``, the rows' linear terms C,
    partner counts and a warm start with about half the entries at the
    bound, as in a fit."""
    n, k, d = H_STEP_SHAPES[shape]
    rng = np.random.default_rng(seed)
    Z = np.abs(rng.standard_normal((d, k)))
    Q = Z.T @ Z
    H0 = np.maximum(rng.standard_normal((n, k)), 0.0) * 0.1
    C = H0 @ Q * 1.05 + 0.3 * rng.standard_normal((n, k)) * np.sqrt(np.diag(Q))
    diag = rng.integers(0, 3, n).astype(np.float64)
    return Q, C, diag, H0


class HStepNNLS:
    """One coordinate-descent sweep of ``nnls_rows`` (the H step's kernel)
    on the fit's threads."""

    params = list(H_STEP_SHAPES)
    param_names = ["shape"]
    timeout = 300

    def setup(self, shape):
        from flexcmh_fast.flexcmh import _kernels as K

        self.K = K
        self.Q, self.C, self.diag, self.H0 = h_step_problem(shape)
        K.nnls_rows(self.Q, self.C, self.diag, self.H0[:8].copy(), 1, 0.0)  # JIT / cache load
        self.H = self.H0.copy()

    def time_nnls_rows_one_sweep(self, shape):
        self.H[:] = self.H0
        self.K.nnls_rows(self.Q, self.C, self.diag, self.H, 1, 0.0)


# (rows, tag dimension, density, k) of the text modality's X Z.
SPARSE_PRODUCT_SHAPES = {"mirflickr": (20015, 1386, 0.003, 25),
                         "nuswide": (186577, 1000, 0.0095, 80)}


class SparseCentroidProduct:
    """``X Z`` for the CSR tags (set Z, every iteration): ``ours`` writes
    into a buffer the fit keeps, on the fit's threads; ``scipy`` is
    ``X @ Z`` (one thread, a new (n, k) array each call).  The same values
    (the tests check them to the bit)."""

    params = [list(SPARSE_PRODUCT_SHAPES), ["ours", "scipy"]]
    param_names = ["shape", "method"]
    timeout = 300

    def setup(self, shape, method):
        from flexcmh_fast.flexcmh._start import xz

        n, d, density, k = SPARSE_PRODUCT_SHAPES[shape]
        rng = np.random.default_rng(0)
        self.X = sp.random(n, d, density=density, format="csr", random_state=1)
        self.Z = rng.random((d, k))
        self.out = np.empty((n, k))
        self.xz = xz
        xz(self.X[:8], self.Z)  # JIT / cache load

    def time_x_times_centroids(self, shape, method):
        if method == "ours":
            self.xz(self.X, self.Z, out=self.out)
        else:
            self.X @ self.Z


# (regression rows, image dimension, text dimension, text density or None
# for dense topics, k) of the kernel encoders' fits: Wiki weak 2a (its
# 1,003 known-pair rows) and NUS-WIDE (ENC_FIT_SAMPLE rows of 186,577).
ENCODER_SHAPES = {"wiki": (1003, 128, 10, None, 10), "nuswide": (20000, 500, 1000, 0.01, 80)}


class KernelEncoders:
    """Both modalities' kernel encoders (draws made first, as in a fit),
    solved one after the other (``workers=1``) or each on its own thread
    (``workers=2``, the default on a 2-core machine); the same encoders."""

    params = [list(ENCODER_SHAPES), [1, 2]]
    param_names = ["shape", "workers"]
    timeout = 300

    def setup(self, shape, workers):
        from threadpoolctl import threadpool_limits

        from flexcmh_fast.flexcmh import _encoder as E

        self.E = E
        n, d_img, d_txt, density, k = ENCODER_SHAPES[shape]
        rng = np.random.default_rng(0)
        X_img = rng.gamma(0.5, 1.0, (n, d_img))
        X_txt = (rng.dirichlet(np.ones(d_txt), n) if density is None else
                 sp.random(n, d_txt, density=density, format="csr", random_state=1))
        self.Xs = [X_img, X_txt]
        self.H = np.abs(rng.standard_normal((n, k)))
        self.drawn = [E.draw_encoder_rows(n, 1000, rng) for _ in self.Xs]
        # As in a fit: BLAS on one thread (the fit holds it there).
        self.blas = threadpool_limits(limits=1, user_api="blas")
        self._solve(workers)                                 # JIT / cache load

    def teardown(self, shape, workers):
        self.blas.restore_original_limits()

    def _solve(self, workers):
        def solve(m):
            X = self.Xs[m]

            def gram(rows, A, s):
                Xr, Hr = X[rows], self.H[rows]
                return self.E.encoder_gram(lambda a, b: Xr[a:b], lambda a, b: Hr[a:b],
                                           len(rows), A, s, workers)

            return self.E.solve_kernel_encoder(self.drawn[m], lambda rows: X[rows], gram)

        return [solve(m) for m in range(len(self.Xs))]

    def time_fit_both_encoders(self, shape, workers):
        self._solve(workers)


def _run_snippet(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


class Compile:
    """First-call cost with an empty Numba cache, and with a warm cache."""

    timeout = 900
    number = 1
    repeat = 1

    def setup(self):
        self.cache = tempfile.mkdtemp(prefix="flexcmh_numba_cache_")

    def track_first_call_cold_cache(self):
        return _run_snippet(self.cache)

    track_first_call_cold_cache.unit = "s"

    def track_first_call_warm_cache(self):
        _run_snippet(self.cache)
        return _run_snippet(self.cache)

    track_first_call_warm_cache.unit = "s"
