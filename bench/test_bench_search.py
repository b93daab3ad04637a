"""pytest-benchmark: HammingIndex.search against faiss IndexBinaryFlat and a
numpy reference, in one run, on the project's performance anchors:
1,000,000 uniformly random codes, 1,000 queries, k = 100, 64 and 128 bits
(the linear scan, ``method="linear"``).

``test_popcount_bound`` builds ``bench/popcount_bound.c`` (needs a C
compiler with OpenMP) and times the bare popcount-of-XOR sum over the same
number of (query, code) pairs on the selected popcount path: the ratio scan
/ bound says how close the scan is to the popcount throughput.

``test_mih`` times multi-index hashing (``method="mih"`` and ``"auto"``)
against the scan on clustered codes (1M x 64 bits, k = 100; 10M x 64 bits,
k = 10) and on uniformly random codes (64 and 128 bits, k = 100).  Clustered
codes: 4,000 random centres, each code a random centre with 3 random bits
flipped (``clustered_codes`` of ``bench/benchmarks/search.py``; queries are
drawn the same way), the structure a hash function trained on clustered data gives.

Run (from the repository root, extension built or package installed)::

    pytest bench/test_bench_search.py --benchmark-enable

The ratios (faiss time / ours, numpy time / ours) and the throughput in
G comparisons/s are printed in the terminal summary and stored in the
benchmark's ``extra_info`` (``--benchmark-json out.json`` keeps them).
``FLEXCMH_BENCH_N`` / ``FLEXCMH_BENCH_Q`` shrink the data for a smoke run.
Both engines use every available core (ours ``n_threads=None``, faiss its
OpenMP default).  The numpy reference is single-threaded and timed once.
"""
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flexcmh_fast import HammingIndex, _hamming
from flexcmh_fast._validation import available_cores

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
from search import clustered_codes

N_DB = int(os.environ.get("FLEXCMH_BENCH_N", 1_000_000))
N_QUERIES = int(os.environ.get("FLEXCMH_BENCH_Q", 1_000))
K = 100
BITS = [64, 128]
IMPLS = ["flexcmh_fast", "faiss", "numpy"]

# (n_bits, impl) -> best time in seconds; read by the terminal summary in conftest.py.
RESULTS = {}


def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {available_cores()} core(s) available, popcount path "
            f"{_hamming.cpu_popcount_path()}")


@pytest.fixture(scope="module", params=BITS, ids=lambda b: f"{b}bits")
def data(request):
    n_bits = request.param
    rng = np.random.default_rng(n_bits)
    db = rng.integers(0, 256, (N_DB, n_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (N_QUERIES, n_bits // 8), dtype=np.uint8)
    return n_bits, db, queries


def numpy_search(db, queries, k):
    """Reference: popcount of XOR over uint64 words, exact (distance, id) order."""
    words = np.ascontiguousarray(db.view(np.uint64).T)   # (W, N): one pass per word
    qwords = queries.view(np.uint64)
    k = min(k, db.shape[0])
    D = np.empty((queries.shape[0], k), dtype=np.int32)
    I = np.empty((queries.shape[0], k), dtype=np.int64)
    dist = np.empty(db.shape[0], dtype=np.int32)
    for j in range(queries.shape[0]):
        dist[:] = np.bitwise_count(words[0] ^ qwords[j, 0])
        for w in range(1, words.shape[0]):
            dist += np.bitwise_count(words[w] ^ qwords[j, w])
        kth = np.partition(dist, k - 1)[k - 1]
        cand = np.flatnonzero(dist <= kth)           # ascending ids
        order = cand[np.argsort(dist[cand], kind="stable")[:k]]
        D[j], I[j] = dist[order], order
    return D, I


def _record(benchmark, n_bits, impl, result):
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None when run with --benchmark-disable
        RESULTS[(n_bits, impl)] = stats.stats.min
        benchmark.extra_info["G_comparisons_per_s"] = N_DB * N_QUERIES / stats.stats.min / 1e9
    benchmark.extra_info["machine"] = machine_description()
    RESULTS[(n_bits, impl, "result")] = result


@pytest.mark.parametrize("impl", IMPLS)
def test_search(benchmark, data, impl):
    n_bits, db, queries = data
    benchmark.group = f"search {N_DB} codes x {N_QUERIES} queries, k={K}, {n_bits} bits"
    if impl == "flexcmh_fast":
        index = HammingIndex(db, n_bits=n_bits, method="linear")
        result = benchmark.pedantic(index.search, args=(queries, K), rounds=7, warmup_rounds=1)
    elif impl == "faiss":
        faiss = pytest.importorskip("faiss")
        index = faiss.IndexBinaryFlat(n_bits)
        index.add(db)
        result = benchmark.pedantic(index.search, args=(queries, K), rounds=5, warmup_rounds=1)
    else:
        result = benchmark.pedantic(numpy_search, args=(db, queries, K), rounds=1)
    _record(benchmark, n_bits, impl, result)


@pytest.mark.parametrize("n_bits", BITS)
def test_results_agree(n_bits):
    """Ours equals the numpy reference exactly; faiss's distances agree."""
    ours = RESULTS.get((n_bits, "flexcmh_fast", "result"))
    ref = RESULTS.get((n_bits, "numpy", "result"))
    if ours is None or ref is None:
        pytest.skip("run the whole file")
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[1], ref[1])
    fa = RESULTS.get((n_bits, "faiss", "result"))
    if fa is not None:
        np.testing.assert_array_equal(ours[0], fa[0])


@pytest.fixture(scope="module")
def popcount_bound_program(tmp_path_factory):
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        pytest.skip("no C compiler")
    root = Path(__file__).resolve().parent
    exe = tmp_path_factory.mktemp("bound") / "popcount_bound"
    build = subprocess.run([compiler, "-O3", "-fopenmp", f"-I{root.parent / 'src_ext'}",
                            str(root / "popcount_bound.c"), "-o", str(exe)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"popcount_bound.c does not build: {build.stderr[-300:]}")
    return exe


@pytest.mark.parametrize("n_bits", BITS)
def test_popcount_bound(popcount_bound_program, n_bits):
    """Bare popcount-of-XOR sum over N_DB x N_QUERIES pairs, all cores."""
    path = _hamming.cpu_popcount_path()
    if path == "portable":
        pytest.skip("no popcount instruction to bound with")
    out = subprocess.run([str(popcount_bound_program), path, str(n_bits), str(N_DB),
                          str(N_QUERIES)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(available_cores())))
    RESULTS[(n_bits, "bound")] = float(out.stdout.split()[1])


# (name, n_codes, n_bits, k, kind); kind "clustered" or "random".
MIH_CASES = [
    ("clustered-1M-64", N_DB, 64, 100, "clustered"),
    ("clustered-10M-64", 10 * N_DB, 64, 10, "clustered"),
    ("random-1M-64", N_DB, 64, 100, "random"),
    ("random-1M-128", N_DB, 128, 100, "random"),
]
MIH_METHODS = ["linear", "mih", "auto"]


@pytest.fixture(scope="module", params=MIH_CASES, ids=lambda c: c[0])
def mih_data(request):
    name, n, n_bits, k, kind = request.param
    if kind == "clustered":
        db = clustered_codes(n, n_bits, 4000, 3, seed=1)
        queries = clustered_codes(N_QUERIES, n_bits, 4000, 3, seed=2)
    else:
        rng = np.random.default_rng(n_bits)
        db = rng.integers(0, 256, (n, n_bits // 8), dtype=np.uint8)
        queries = rng.integers(0, 256, (N_QUERIES, n_bits // 8), dtype=np.uint8)
    indexes = {}
    for method in MIH_METHODS:
        indexes[method] = HammingIndex(db, n_bits=n_bits, method=method)
        t0 = time.perf_counter()
        indexes[method].search(queries[:1], k)  # builds the hashing tables
        RESULTS[(name, method, "build")] = time.perf_counter() - t0
        RESULTS[(name, method, "memory")] = indexes[method].mih_nbytes / db.nbytes
    return name, k, queries, indexes


@pytest.mark.parametrize("method", MIH_METHODS)
def test_mih(benchmark, mih_data, method):
    name, k, queries, indexes = mih_data
    if method == "mih" and name.startswith("random"):
        pytest.skip("hashing alone on random codes is the worst case: ~30x the scan")
    benchmark.group = f"multi-index hashing {name}, {N_QUERIES} queries, k={k}"
    result = benchmark.pedantic(indexes[method].search, args=(queries, k), rounds=5,
                                warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        RESULTS[(name, method)] = stats.stats.min
        benchmark.extra_info["machine"] = machine_description()
    want = RESULTS.setdefault((name, "result"), result)
    np.testing.assert_array_equal(result[0], want[0])
    np.testing.assert_array_equal(result[1], want[1])


def summary_lines():
    """Ratio table for the terminal summary (empty when nothing was timed)."""
    lines = []
    for n_bits in BITS:
        ours = RESULTS.get((n_bits, "flexcmh_fast"))
        if ours is None:
            continue
        row = (f"{n_bits:>4} bits: flexcmh_fast {ours:.3f} s "
               f"({N_DB * N_QUERIES / ours / 1e9:.1f} G comparisons/s)")
        for other in ("faiss", "numpy"):
            t = RESULTS.get((n_bits, other))
            if t is not None:
                rate = N_DB * N_QUERIES / t / 1e9
                row += f" | {other} {t:.3f} s ({rate:.2f} G/s), x{t / ours:.1f}"
        bound = RESULTS.get((n_bits, "bound"))
        if bound is not None:
            row += f" | popcount bound {bound:.3f} s, scan / bound {ours / bound:.2f}"
        lines.append(row)
    if lines:
        lines.insert(0, f"Hamming search, {N_DB} codes x {N_QUERIES} queries, k={K}; "
                        f"{machine_description()}; {time.strftime('%Y-%m-%d %H:%M')}")
    mih = []
    for name, *_ in MIH_CASES:
        scan = RESULTS.get((name, "linear"))
        if scan is None:
            continue
        row = f"{name:>17}: linear {scan:.4f} s"
        for method in ("mih", "auto"):
            t = RESULTS.get((name, method))
            if t is not None:
                row += f" | {method} {t:.4f} s, x{scan / t:.1f}"
        row += (f" | tables built in {RESULTS[(name, 'mih', 'build')]:.2f} s, "
                f"{RESULTS[(name, 'mih', 'memory')]:.2f}x the packed codes")
        mih.append(row)
    if mih:
        mih.insert(0, f"Multi-index hashing vs linear scan, {N_QUERIES} queries; "
                      f"{machine_description()}; {time.strftime('%Y-%m-%d %H:%M')}")
    return lines + mih
