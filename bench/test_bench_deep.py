"""pytest-benchmark: FlexCMH on deep-network features and on NUS-WIDE-sized
data in float32 and float64, each phase next to its floor.

* ``test_deep_feature_fit``: n objects of 2,048-d non-negative plus 768-d
  float32 embeddings, half of the pairs known, 64 bits, every default
  (``benchmarks/deep.py``); prints the phases against one streaming pass over
  the data and one sgemm of its shape, the peak-memory rise and ``encode``
  rows per second, and records them in ``extra_info``.
* ``test_nuswide_fit``: the NUS-WIDE-sized fit (186,577 pairs, k = 80,
  weak 2a, 16 bits; ``benchmarks/scale.py``) with float32 and with float64
  input, next to the paper's 74,163.55 s.

Every fit runs in a fresh interpreter with a warm Numba cache.  Run (full:
n = 200,000, about 15-20 minutes on 2 cores)::

    pytest bench/test_bench_deep.py --benchmark-enable -s

Quick run (n = 20,000 and a 20,000-row NUS-WIDE shape)::

    FLEXCMH_BENCH_QUICK=1 pytest bench/test_bench_deep.py --benchmark-enable -s
"""
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import deep
import scale

QUICK = os.environ.get("FLEXCMH_BENCH_QUICK", "") not in ("", "0")
N_DEEP = 20_000 if QUICK else deep.DEFAULT_N
N_NUS = 20_000 if QUICK else None


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="flexcmh_bench_deep_") as d:
        yield d


def test_deep_feature_fit(benchmark, folder):
    results = []
    benchmark.pedantic(lambda: results.append(deep.measure(folder, N_DEEP)), rounds=1,
                       iterations=1)
    r = results[0]
    print("\n" + deep.report(r))
    p = r["floors"]["pass"]
    benchmark.extra_info.update(
        n=r["n"], seconds=r["seconds"], iterations=r["n_iter"], one_pass=p,
        budget_ratio=r["seconds"] / ((80 + 3 * r["n_iter"]) * p),
        phases_in_passes={k: v / p for k, v in r["phases"].items()},
        peak_rss_rise=(None if r["peak_rss"] is None else r["peak_rss"] - r["rss_before"]),
        encode_rows_per_second=r["encode_rows_per_second"])
    assert r["converged"]
    assert r["fitted_dtypes"] == ["float32"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nuswide_fit(benchmark, folder, dtype):
    name = "nuswide" if N_NUS is None else f"nuswide{N_NUS}"
    if not Path(folder, f"{name}_img.npy").is_file():
        scale.save_data(folder, name, *scale.make_weak("nuswide", n=N_NUS))
    results = []
    benchmark.pedantic(lambda: results.append(scale.measure(
        folder, name, scale.SHAPES["nuswide"]["k"], timeout=3600, dtype=dtype)),
        rounds=1, iterations=1)
    r = results[0]
    paper = scale.SHAPES["nuswide"]["paper_seconds"]
    print(f"\nNUS-WIDE-sized ({dtype}): {r['seconds']:.1f} s, {r['n_iter']} iterations, "
          f"converged {r['converged']}, {paper / r['seconds']:.0f}x the paper's {paper} s; "
          f"phases {({k: round(v, 1) for k, v in r['phases'].items()})}; peak RSS "
          f"during the fit {(r['fit_peak_rss'] or r['rss_peak']) / 2**30:.2f} GiB")
    benchmark.extra_info.update(dtype=dtype, seconds=r["seconds"], iterations=r["n_iter"],
                                speedup_vs_paper=paper / r["seconds"],
                                phases=r["phases"],
                                peak_rss=r["fit_peak_rss"] or r["rss_peak"])
    assert r["converged"]
