"""pytest-benchmark: MAP evaluation (flexcmh_fast.metrics) against a numpy
reference, in one run.

Data: uniformly random packed codes, a database of 1,000,000 codes, 64 and
128 bits, 10 classes (1-D labels).  Ours evaluates 1,000 queries with all
available cores (stable tie-break and tie-aware); the numpy reference - the
usual vectorised implementation (popcount table on XOR bytes, a stable
argsort per query, cumulative precision at the relevant ranks) - evaluates
the first 20 queries single-threaded and is timed once; both are compared
per query and must agree on those queries.

The previous engine (the row-major pass with a scalar histogram, still
used for codes longer than 128 bits or more than 64 labels, selectable as
``fast_pass=False``) is timed on the same queries when the CPU
runs the fast pass, and the ratio previous / fast is printed as well.

Run (from the repository root, extension built or package installed)::

    pytest bench/test_bench_metrics.py --benchmark-enable

The ratio numpy-time-per-query / ours-time-per-query, our throughput in
G (query, database code) pairs/s and the projected time of MAP over
100,000 queries x 1,000,000 codes are printed at the end and stored in the
benchmark's ``extra_info``.  ``FLEXCMH_BENCH_N`` / ``FLEXCMH_BENCH_Q``
shrink the data for a smoke run.
"""
import os
import time

import numpy as np
import pytest

from flexcmh_fast import metrics
from flexcmh_fast.search import as_words

N_DB = int(os.environ.get("FLEXCMH_BENCH_N", 1_000_000))
N_QUERIES = int(os.environ.get("FLEXCMH_BENCH_Q", 1_000))
N_NUMPY = min(20, N_QUERIES)
N_CLASSES = 10
BITS = [64, 128]

# (n_bits, name) -> seconds per query
RESULTS = {}

POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def numpy_average_precision(q_codes, db_codes, q_labels, db_labels):
    """Per-query AP over the whole ranking, stable tie-break (numpy only)."""
    out = np.empty(q_codes.shape[0])
    for i in range(q_codes.shape[0]):
        dist = POPCOUNT8[np.bitwise_xor(db_codes, q_codes[i])].sum(axis=1, dtype=np.int32)
        rel = db_labels == q_labels[i]
        order = np.argsort(dist, kind="stable")
        rel_sorted = rel[order]
        hits = np.flatnonzero(rel_sorted)
        if hits.size == 0:
            out[i] = np.nan
            continue
        out[i] = np.mean(np.arange(1, hits.size + 1) / (hits + 1.0))
    return out


@pytest.fixture(scope="module", params=BITS, ids=lambda b: f"{b}bits")
def data(request):
    n_bits = request.param
    rng = np.random.default_rng(n_bits)
    db = rng.integers(0, 256, (N_DB, n_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (N_QUERIES, n_bits // 8), dtype=np.uint8)
    return (n_bits, db, queries, rng.integers(0, N_CLASSES, N_QUERIES),
            rng.integers(0, N_CLASSES, N_DB))


@pytest.mark.parametrize("ties", ["stable", "aware"])
def test_map_ours(benchmark, data, ties):
    n_bits, db, queries, ql, dl = data
    result = benchmark.pedantic(
        metrics.mean_average_precision, args=(queries, db, ql, dl),
        kwargs={"n_bits": n_bits, "ties": ties}, rounds=3, iterations=1)
    assert 0.0 < result < 1.0
    per_query = benchmark.stats.stats.min / N_QUERIES
    RESULTS[(n_bits, ties)] = per_query
    benchmark.extra_info["seconds_per_query"] = per_query
    benchmark.extra_info["g_pairs_per_second"] = N_DB / per_query / 1e9
    benchmark.extra_info["projected_100k_x_1M_seconds"] = per_query * 1e5 * 1e6 / N_DB


@pytest.mark.parametrize("ties", ["stable", "aware"])
def test_map_previous_engine(benchmark, data, ties):
    """Same queries through the previous (row-major, scalar histogram) pass."""
    from flexcmh_fast import _ranking
    if not _ranking.fast_pass_available():
        pytest.skip("the fast pass does not run on this CPU")
    n_bits, db, queries, ql, dl = data
    q_lab, db_lab, db_ids = metrics._label_inputs(ql, dl, len(ql), len(dl))
    args = (as_words(queries), as_words(db), q_lab, db_lab, db_ids, n_bits,
            ties == "stable", True, 0, np.zeros(0, dtype=np.int64), False, os.cpu_count())
    ap = benchmark.pedantic(_ranking.rank_stats, args=args,
                            kwargs={"fast_pass": False}, rounds=1, iterations=1)[0]
    per_query = benchmark.stats.stats.min / N_QUERIES
    RESULTS[(n_bits, ties + "_previous")] = per_query
    np.testing.assert_array_equal(ap, metrics.average_precision(queries, db, ql, dl,
                                                                n_bits=n_bits, ties=ties))


def test_map_numpy_reference(benchmark, data):
    n_bits, db, queries, ql, dl = data
    q, lab = queries[:N_NUMPY], ql[:N_NUMPY]
    start = time.perf_counter()
    ref = benchmark.pedantic(numpy_average_precision, args=(q, db, lab, dl),
                             rounds=1, iterations=1)
    per_query = (time.perf_counter() - start) / N_NUMPY
    RESULTS[(n_bits, "numpy")] = per_query
    ours = metrics.average_precision(q, db, lab, dl, n_bits=n_bits)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    if (n_bits, "stable") in RESULTS:
        benchmark.extra_info["ratio_numpy_over_ours"] = per_query / RESULTS[(n_bits, "stable")]


def report_lines():
    lines = [f"MAP evaluation, database {N_DB:,} random codes, {N_CLASSES} classes "
             f"(ours: {N_QUERIES} queries, all cores; numpy: {N_NUMPY} queries, 1 core)"]
    for n_bits in BITS:
        ours = RESULTS.get((n_bits, "stable"))
        aware = RESULTS.get((n_bits, "aware"))
        ref = RESULTS.get((n_bits, "numpy"))
        if ours is None or ref is None or aware is None:
            continue
        lines.append(
            f"{n_bits:4d} bits: ours stable {ours * 1e3:8.4f} ms/query "
            f"({N_DB / ours / 1e9:5.2f} G pairs/s), aware {aware * 1e3:8.4f} ms/query; "
            f"numpy {ref * 1e3:9.2f} ms/query; numpy/ours = {ref / ours:7.1f}x; "
            f"100k x 1M projected {ours * 1e11 / N_DB:7.1f} s")
        prev, prev_aware = (RESULTS.get((n_bits, "stable_previous")),
                            RESULTS.get((n_bits, "aware_previous")))
        if prev is not None and prev_aware is not None:
            lines.append(
                f"{n_bits:4d} bits: previous engine stable {prev * 1e3:8.4f} ms/query "
                f"({prev / ours:4.2f}x ours), aware {prev_aware * 1e3:8.4f} ms/query "
                f"({prev_aware / aware:4.2f}x ours)")
    return lines if len(lines) > 1 else []


@pytest.fixture(scope="module", autouse=True)
def print_report(request):
    """After the module: print the ratio table on the terminal."""
    yield
    lines = report_lines()
    if not lines:
        return
    # Module teardown output is captured by default; print around capture.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))
