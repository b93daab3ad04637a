"""pytest-benchmark: FlexCMH training time against the code length, 16 ...
4096 bits, on synthetic data (``datasets.make_multimodal``, 2 modalities of
24 and 80 features, 10 clusters, ``max_iter=2``: two loop iterations plus
the final 50-step ITQ fit).

Codes longer than ``max(k, 64)`` bits solve the ITQ rotation in the k-dim
subspace the projected data span; the same-run comparison also times the
full b x b rotation (the only path before) up to ``FULL_MAX`` bits, where it
still finishes in reasonable time, and prints the ratios.

Run: ``pytest bench/test_bench_long_codes.py --benchmark-enable -s``
(``FLEXCMH_BENCH_FULL_MAX=2048`` to time the full rotation further).
"""
import os
import time

import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast.flexcmh import _codes as _flexcmh_codes

BITS = (16, 64, 128, 256, 512, 1024, 2048, 4096)
SAMPLES = (200, 2000)
FULL_MAX = int(os.environ.get("FLEXCMH_BENCH_FULL_MAX", "1024"))


def _data(n):
    d = fc.datasets.make_multimodal(n, n_classes=6, n_features=(24, 80), noise=0.6,
                                    random_state=3)
    return list(d.modalities)


def _train(Xs, n_bits):
    return fc.train(Xs, "all", n_bits=n_bits, n_clusters=10, random_state=0, max_iter=2,
                    tol=0.0, encoder="nnls", n_threads=2)


@pytest.mark.benchmark(group="train-by-code-length")
@pytest.mark.parametrize("n", SAMPLES)
@pytest.mark.parametrize("n_bits", BITS)
def test_train_by_code_length(benchmark, n, n_bits):
    Xs = _data(n)
    _train(Xs, 16)  # compile the Numba kernels outside the timing
    model = benchmark.pedantic(_train, args=(Xs, n_bits), rounds=1, iterations=1)
    assert model.n_bits == n_bits


def test_subspace_vs_full_rotation_same_run(monkeypatch):
    """Both ITQ paths back to back; prints seconds and ratios."""
    rows = []
    for n in SAMPLES:
        Xs = _data(n)
        _train(Xs, 16)
        for n_bits in BITS:
            t = time.perf_counter()
            _train(Xs, n_bits)
            t_sub = time.perf_counter() - t
            t_full = None
            if n_bits <= FULL_MAX:
                with monkeypatch.context() as patch:
                    patch.setattr(_flexcmh_codes, "FULL_ROTATION_MAX_BITS", 1 << 30)
                    t = time.perf_counter()
                    _train(Xs, n_bits)
                    t_full = time.perf_counter() - t
            rows.append((n, n_bits, t_sub, t_full))
    print("\nFlexCMH train time (s) by code length, max_iter=2, 10 clusters")
    print(f"{'samples':>8} {'bits':>5} {'subspace':>9} {'full b x b':>11} {'ratio':>7}")
    for n, n_bits, t_sub, t_full in rows:
        full = "-" if t_full is None else f"{t_full:.2f}"
        ratio = "-" if t_full is None else f"{t_full / t_sub:.1f}x"
        print(f"{n:>8} {n_bits:>5} {t_sub:>9.2f} {full:>11} {ratio:>7}")
    assert all(np.isfinite(t) for _, _, t, _ in rows)
