"""pytest-benchmark: sharded exact search on a local Dask cluster versus the
single-process HammingIndex over the same codes (10M codes of 64 bits,
1,000 queries, k=100), and the overhead ratio sharded / single.

The cluster is ``LocalCluster(processes=True, n_workers=2,
threads_per_worker=1)`` (the ``client`` fixture of bench/conftest.py): two
shards of 5M codes, one per worker, each searched with one thread; the
single-process index uses two threads, so both sides use the same two cores
and the ratio measures the cost of distribution (scatter of the queries,
per-shard results, tree merge, gather).
Target: ratio <= 1.5.

Run (full size)::

    pytest bench/test_bench_distributed.py --benchmark-enable -s

Quick check at a smaller size: ``--size 1000000`` (when bench/conftest.py
defines ``--size``) or ``FLEXCMH_BENCH_SIZE=1000000``.
Skipped cleanly when Dask is not installed.
"""
import os
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import flexcmh_fast as fc  # noqa: E402
from flexcmh_fast.distributed import ShardedHammingIndex  # noqa: E402

N_BITS = 64
N_QUERIES = 1000
K = 100
N_WORKERS = 2
TARGET_RATIO = 1.5


def _size(config):
    size = config.getoption("--size", default=None) or os.environ.get("FLEXCMH_BENCH_SIZE")
    return int(size) if size else 10_000_000


@pytest.fixture(scope="module")
def setup(request, client):
    n = _size(request.config)
    # Codes are generated on the workers, one block per worker, so the
    # shards are built where the data already is.
    rng = da.random.default_rng(0)
    codes = rng.integers(0, 256, size=(n, N_BITS // 8), dtype=np.uint8,
                         chunks=(-(-n // N_WORKERS), N_BITS // 8)).persist()
    sharded = ShardedHammingIndex(codes, N_BITS, client=client, n_threads=1)
    single = fc.HammingIndex(codes.compute(), n_bits=N_BITS, n_threads=N_WORKERS)
    del codes
    queries = fc.pack_codes(np.random.default_rng(1).integers(0, 2, (N_QUERIES, N_BITS)))
    return {"n": n, "sharded": sharded, "single": single, "queries": queries}


@pytest.mark.benchmark(group="sharded-search-64bit")
def test_search_single_process(benchmark, setup):
    benchmark.extra_info.update(n_codes=setup["n"], n_queries=N_QUERIES, k=K)
    benchmark.pedantic(setup["single"].search, args=(setup["queries"], K),
                       rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="sharded-search-64bit")
def test_search_sharded(benchmark, setup):
    benchmark.extra_info.update(n_codes=setup["n"], n_queries=N_QUERIES, k=K,
                                n_shards=setup["sharded"].n_shards)
    benchmark.pedantic(setup["sharded"].search, args=(setup["queries"], K),
                       rounds=3, iterations=1, warmup_rounds=1)


def _best_of(func, repeat):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t)
    return best, result


def test_overhead_ratio(setup):
    """Both searches back to back, best of 3 each; results must be identical."""
    q = setup["queries"]
    t_single, want = _best_of(lambda: setup["single"].search(q, K), 3)
    t_sharded, got = _best_of(lambda: setup["sharded"].search(q, K), 3)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    ratio = t_sharded / t_single
    print(f"\nsharded search, {setup['n']:,} codes x {N_BITS} bits, {N_QUERIES} queries, "
          f"k={K}: single process {t_single:.3f} s, {setup['sharded'].n_shards} shards "
          f"on {N_WORKERS} workers {t_sharded:.3f} s, overhead ratio {ratio:.2f} "
          f"(target <= {TARGET_RATIO})")
