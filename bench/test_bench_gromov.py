"""pytest-benchmark: the GW finder of ``match_score="gw"`` (numpy entropic
Gromov–Wasserstein, ``flexcmh/_gromov.py``) next to POT's
``entropic_gromov_wasserstein`` on the same Wiki samples (preprocessed as
the fit does, 500 / 800 rows per modality, eps 0.02, at most 100 outer
iterations, the same stopping tolerance), in the same run.  Both return the
same coupling up to the tolerances.

Run: ``pytest bench/test_bench_gromov.py --benchmark-enable -s``.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import flexcmh_fast as fc
from flexcmh_fast._preprocess import Preprocessor, data_stats
from flexcmh_fast.flexcmh import _tuning as T
from flexcmh_fast.flexcmh._gromov import entropic_gw

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
from train import _DATA

pytestmark = pytest.mark.skipif(not (_DATA / "wikiData.mat").is_file(),
                                reason=f"Wiki data not found at {_DATA}")
_SAMPLES = {}


def wiki_distances(s):
    if s not in _SAMPLES:
        data = fc.datasets.load_wiki(str(_DATA))
        rng = np.random.default_rng(0)
        out = []
        for X in data.modalities:
            X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
            X = Preprocessor.from_stats("auto", data_stats(X)).transform(X)
            Xs = X[rng.choice(X.shape[0], s, replace=False)]
            D = cdist(Xs, Xs)
            out.append(D / D.mean())
        _SAMPLES[s] = out
    return _SAMPLES[s]


@pytest.mark.parametrize("s", [500, 800])
@pytest.mark.parametrize("impl", ["flexcmh_fast", "pot"])
def test_entropic_gw(benchmark, impl, s):
    C1, C2 = wiki_distances(s)
    if impl == "flexcmh_fast":
        run = lambda: entropic_gw(C1, C2, eps=T.GW_EPS, max_iter=T.GW_ITERS)  # noqa: E731
    else:
        ot = pytest.importorskip("ot")
        p = np.full(s, 1.0 / s)
        run = lambda: ot.gromov.entropic_gromov_wasserstein(  # noqa: E731
            C1, C2, p, p, "square_loss", epsilon=T.GW_EPS, max_iter=T.GW_ITERS, tol=1e-7)
    benchmark.pedantic(run, rounds=1, iterations=1)
