"""pytest-benchmark: the H-step NNLS kernel (``nnls_rows``, one
coordinate-descent sweep as in the training loop) at the Wiki, MIRFlickr and
NUS-WIDE shapes (rows x k), on one and two threads, next to the plain-numpy
reference of ``tests/reference_flexcmh.py`` (vectorised over rows) in the
same run.  Ours and the reference must agree (checked before timing).

Run: ``pytest bench/test_bench_kernels.py --benchmark-enable -s``; the
ratios are printed at the end.
"""
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from flexcmh_fast.flexcmh import _kernels as K

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import reference_flexcmh
from train import H_STEP_SHAPES as SHAPES
from train import h_step_problem

RESULTS = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if RESULTS:
        print("\nH-step NNLS kernel, one sweep (min of the rounds):")
        for shape in SHAPES:
            row = RESULTS.get(shape, {})
            if "numpy" in row and 1 in row:
                line = f"  {shape:9s} numpy {row['numpy']:.4f} s, ours 1 thread {row[1]:.4f} s"
                line += f" ({row['numpy'] / row[1]:.1f}x)"
                if 2 in row:
                    line += f", 2 threads {row[2]:.4f} s ({row['numpy'] / row[2]:.1f}x)"
                print(line)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_nnls_numpy_reference(benchmark, shape):
    Q, C, diag, H0 = h_step_problem(shape)
    last = {}

    def reference(H):
        reference_flexcmh.nnls_rows(Q, C, diag, H, 1, 0.0)
        last["H"] = H

    benchmark.pedantic(reference, setup=lambda: ((H0.copy(),), {}), rounds=3, iterations=1)
    ours = H0.copy()
    K.nnls_rows(Q, C, diag, ours, 1, 0.0)
    np.testing.assert_allclose(ours, last["H"], rtol=1e-9, atol=1e-12)
    if benchmark.stats:
        RESULTS.setdefault(shape, {})["numpy"] = benchmark.stats.stats.min


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_nnls_ours(benchmark, shape, threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"{threads} threads requested, {numba.config.NUMBA_NUM_THREADS} available")
    Q, C, diag, H0 = h_step_problem(shape)
    K.nnls_rows(Q, C, diag, H0[:8].copy(), 1, 0.0)  # compile / load outside the timing
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        rounds = 5 if shape == "nuswide" else 50
        benchmark.pedantic(lambda H: K.nnls_rows(Q, C, diag, H, 1, 0.0),
                           setup=lambda: ((H0.copy(),), {}), rounds=rounds, iterations=1)
    finally:
        numba.set_num_threads(old)
    if benchmark.stats:
        RESULTS.setdefault(shape, {})[threads] = benchmark.stats.stats.min
