"""asv benchmarks of FlexCMH training.

* ``TrainWiki``: the real Wiki data (../shared/data/wiki), weak 2a scenario,
  16 bits, up to 500 iterations or convergence; wall time, peak memory and
  MAP (Image->Text, Text->Image).  Skipped when the data folder is absent.
* ``TrainSynthetic``: MIRFlickr- and NUS-WIDE-shaped synthetic data (dense
  image features + sparse binary tags), a fixed number of iterations, so the
  per-iteration cost is tracked.
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
    """Wiki, random 70/30 split, weak 2a (50% known pairs, rest shuffled).

    Features as chosen on validation data (docs/flexcmh.md): image SIFT
    histograms square-rooted and L2-normalised, text topics L2-normalised."""
    from scipy.io import loadmat

    d = loadmat(_DATA / "wikiData.mat")
    img = np.sqrt(np.vstack([d["I_tr"], d["I_te"]]))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = np.vstack([d["T_tr"], d["T_te"]])
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    lab = np.concatenate([d["L_tr"].ravel(), d["L_te"].ravel()]).astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(lab.size)
    n_tr = int(round(0.7 * lab.size))
    tr, te = np.sort(order[:n_tr]), np.sort(order[n_tr:])
    known = np.sort(rng.permutation(n_tr)[:n_tr // 2])
    rest = np.setdiff1d(np.arange(n_tr), known)
    perm = np.arange(n_tr)
    perm[rest] = rest[rng.permutation(rest.size)]
    train = [img[tr], txt[tr][perm]]
    return dict(train=train, pairs=np.stack([known, known], 1),
                test=[img[te], txt[te]], lab_test=lab[te],
                lab_train=[lab[tr], lab[tr][perm]])


def mean_ap(q, db, ql, dl):
    """MAP of Hamming ranking, stable tie-break by database index."""
    q, db = q.astype(np.int32), db.astype(np.int32)
    dist = (q.shape[1] - q @ db.T) // 2
    aps = []
    for i in range(q.shape[0]):
        rel = dl[np.argsort(dist[i], kind="stable")] == ql[i]
        hits = np.flatnonzero(rel)
        if hits.size:
            aps.append(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))
    return float(np.mean(aps))


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
        m, d = self._train(), self.data
        return mean_ap(m.encode(d["test"][0], 0, packed=False),
                       m.encode(d["train"][1], 1, packed=False),
                       d["lab_test"], d["lab_train"][1])

    def track_map_text_to_image(self):
        m, d = self._train(), self.data
        return mean_ap(m.encode(d["test"][1], 1, packed=False),
                       m.encode(d["train"][0], 0, packed=False),
                       d["lab_test"], d["lab_train"][0])


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


def _scenario_split(kind, seed):
    """Wiki split for one scenario (the other helpers' scenarios.py does the
    same; kept here so the experiment runs on its own)."""
    d = wiki_weak(seed)
    if kind == "weak":
        return d
    from scipy.io import loadmat

    raw = loadmat(_DATA / "wikiData.mat")
    img = np.sqrt(np.vstack([raw["I_tr"], raw["I_te"]]))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = np.vstack([raw["T_tr"], raw["T_te"]])
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    lab = np.concatenate([raw["L_tr"].ravel(), raw["L_te"].ravel()]).astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(lab.size)
    n_tr = int(round(0.7 * lab.size))
    tr, te = np.sort(order[:n_tr]), np.sort(order[n_tr:])
    perm = np.arange(n_tr) if kind == "paired" else rng.permutation(n_tr)
    return dict(train=[img[tr], txt[tr][perm]], pairs="all" if kind == "paired" else None,
                test=[img[te], txt[te]], lab_test=lab[te],
                lab_train=[lab[tr], lab[tr][perm]])


def wiki_table(reps=10, bits=(16, 64), kinds=("paired", "weak", "unpaired"), **params):
    """MAP table on Wiki (random 70/30 splits, ``reps`` repetitions)."""
    rows = []
    for kind in kinds:
        for b in bits:
            i2t, t2i, its, secs = [], [], [], []
            for seed in range(reps):
                d = _scenario_split(kind, seed)
                t = time.perf_counter()
                m = fc.train(d["train"], d["pairs"], n_bits=b, random_state=seed,
                             n_threads=2, **params)
                secs.append(time.perf_counter() - t)
                its.append(m.n_iter_)
                i2t.append(mean_ap(m.encode(d["test"][0], 0, packed=False),
                                   m.encode(d["train"][1], 1, packed=False),
                                   d["lab_test"], d["lab_train"][1]))
                t2i.append(mean_ap(m.encode(d["test"][1], 1, packed=False),
                                   m.encode(d["train"][0], 0, packed=False),
                                   d["lab_test"], d["lab_train"][0]))
            rows.append((kind, b, np.mean(i2t), np.std(i2t), np.mean(t2i), np.std(t2i),
                         np.mean(its), np.mean(secs)))
            print(f"{kind:9s} {b:3d} bits  I->T {rows[-1][2]:.4f} ± {rows[-1][3]:.4f}  "
                  f"T->I {rows[-1][4]:.4f} ± {rows[-1][5]:.4f}  "
                  f"iterations {rows[-1][6]:.0f}  {rows[-1][7]:.2f} s", flush=True)
    return rows


if __name__ == "__main__":
    # python bench/benchmarks/train.py [reps] [code_scheme]
    wiki_table(reps=int(sys.argv[1]) if len(sys.argv) > 1 else 10,
               code_scheme=sys.argv[2] if len(sys.argv) > 2 else "itq")
