"""pytest-benchmark: FlexCMH at the scale of MIRFlickr-25K and NUS-WIDE.

Synthetic data of the paper's shapes and sparsity (``benchmarks/scale.py``,
:func:`make_like`), weak 2a scenario, 16 bits; the same cases as the asv
suite ``benchmarks/scale.py``:

* training on MIRFlickr-sized (20,015 pairs, k = 25) and NUS-WIDE-sized
  (186,577 pairs, k = 80) data, up to 500 iterations or convergence, next to
  the paper's Table VI times (96.42 s, 74,163.55 s);
* peak memory of the NUS-WIDE-sized training, measured in a fresh
  subprocess (``ru_maxrss``), asserted under 4 GiB;
* encoding 1,000,000 samples (tags as one CSR matrix; images as 10 calls on
  a 100,000-row block);
* the scaling series 25k / 50k / 100k / 200k samples at a fixed iteration
  count, asserting that the time per sample and iteration stays within
  +-30% of the 25k value.

Run (full; about 15-25 minutes on 2 quiet cores)::

    pytest bench/test_bench_scale.py --benchmark-enable -s

Quick smoke run (sizes divided by 10, a few iterations; under 2 minutes;
the +-30% and 4 GiB assertions are skipped since tiny sizes are dominated by
fixed costs)::

    FLEXCMH_BENCH_QUICK=1 pytest bench/test_bench_scale.py --benchmark-enable -s
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import scale

QUICK = os.environ.get("FLEXCMH_BENCH_QUICK", "") not in ("", "0")
DIV = 10 if QUICK else 1
MAX_ITER = 5 if QUICK else 500
SIZES = [n // DIV for n in scale.SCALING_SIZES]
SCALING_ITERS = 3 if QUICK else scale.SCALING_ITERS
ENCODE_TOTAL = 1_000_000 // DIV
ENCODE_BLOCK = 100_000 // DIV
GIB = 2 ** 30
PER_SAMPLE = {}


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="flexcmh_bench_scale_") as d:
        yield d


def _data(shape, n=None):
    return scale.make_weak(shape, n=n)


def _load():
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


@pytest.mark.parametrize("shape", ["mirflickr", "nuswide"])
def test_train(benchmark, shape):
    s = scale.SHAPES[shape]
    X_img, X_txt, pairs = _data(shape, s["n"] // DIV)
    scale.warm_up()
    model = benchmark.pedantic(scale.train, args=(X_img, X_txt, pairs, s["k"]),
                               kwargs={"max_iter": MAX_ITER}, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        n_samples=X_img.shape[0], n_iter=model.n_iter_, paper_seconds=s["paper_seconds"],
        speedup_vs_paper=s["paper_seconds"] / seconds, load=os.getloadavg()[0])
    print(f"\n{shape}: {X_img.shape[0]} pairs, k={s['k']}, {model.n_iter_} iterations, "
          f"{seconds:.1f} s (paper {s['paper_seconds']} s, "
          f"{s['paper_seconds'] / seconds:.0f}x) [{_load()}]")
    assert model.codes_.shape[1] == 2


def test_peak_memory_nuswide(folder):
    """Fresh interpreter: load the data, train, report ru_maxrss."""
    s = scale.SHAPES["nuswide"]
    scale.save_data(folder, "nuswide", *_data("nuswide", s["n"] // DIV))
    r = scale.measure(folder, "nuswide", s["k"], max_iter=MAX_ITER, timeout=3600)
    print(f"\nnuswide peak RSS {r['rss_peak'] / GIB:.2f} GiB (data loaded: "
          f"{r['rss_before_train'] / GIB:.2f} GiB, input {r['input_bytes'] / GIB:.2f} GiB), "
          f"{r['n_iter']} iterations, {r['seconds']:.1f} s [{_load()}]")
    assert r["rss_peak"] < 4 * GIB


@pytest.fixture(scope="module")
def encode_setup():
    s = scale.SHAPES["nuswide"]
    X_img, X_txt, pairs = _data("nuswide", 20_000 // DIV)
    model = scale.train(X_img, X_txt, pairs, s["k"], max_iter=20 // DIV)
    Q_img, Q_txt, _ = scale.make_like(ENCODE_TOTAL, s["d_img"], s["d_txt"], s["density"],
                                      s["n_classes"], random_state=1, n_img=ENCODE_BLOCK)
    model.encode(Q_img[:10], 0)
    return model, Q_img, Q_txt


def test_encode_text(benchmark, encode_setup):
    model, _, Q_txt = encode_setup
    codes = benchmark.pedantic(model.encode, args=(Q_txt, 1), rounds=1, iterations=1)
    assert codes.shape == (ENCODE_TOTAL, 2)
    sec = benchmark.stats.stats.mean
    benchmark.extra_info.update(samples_per_second=ENCODE_TOTAL / sec)
    print(f"\nencode {ENCODE_TOTAL} tag vectors: {sec:.1f} s [{_load()}]")


def test_encode_image(benchmark, encode_setup):
    model, Q_img, _ = encode_setup

    def run():
        for _ in range(ENCODE_TOTAL // ENCODE_BLOCK):
            codes = model.encode(Q_img, 0)
        return codes

    codes = benchmark.pedantic(run, rounds=1, iterations=1)
    assert codes.shape == (ENCODE_BLOCK, 2)
    sec = benchmark.stats.stats.mean
    benchmark.extra_info.update(samples_per_second=ENCODE_TOTAL / sec)
    print(f"\nencode {ENCODE_TOTAL} images: {sec:.1f} s [{_load()}]")


@pytest.mark.parametrize("n", SIZES)
def test_scaling(benchmark, n):
    X_img, X_txt, pairs = _data("nuswide", n)
    scale.warm_up()
    stamps = []

    def run():
        stamps.clear()
        return scale.train(X_img, X_txt, pairs, scale.SHAPES["nuswide"]["k"],
                           max_iter=SCALING_ITERS, tol=0.0,
                           callback=lambda it, st: stamps.append(time.perf_counter()))

    benchmark.pedantic(run, rounds=1, iterations=1)
    # Median seconds per outer iteration (the first iteration includes the
    # initialisation's tail; the median is robust to a stalled iteration on
    # a shared machine).
    per_iter = float(np.median(np.diff(stamps)))
    PER_SAMPLE[n] = 1e6 * per_iter / n
    benchmark.extra_info.update(us_per_sample_iteration=PER_SAMPLE[n], load=os.getloadavg()[0])
    print(f"\nscaling n={n}: {per_iter:.3f} s/iteration, {PER_SAMPLE[n]:.2f} us per sample "
          f"and iteration [{_load()}]")


def test_scaling_is_linear():
    if len(PER_SAMPLE) < len(SIZES):
        pytest.skip("the scaling series did not run (run the whole file)")
    base = PER_SAMPLE[SIZES[0]]
    ratios = {n: PER_SAMPLE[n] / base for n in SIZES}
    print("\ntime per sample relative to n=%d: %s" % (
        SIZES[0], ", ".join(f"{n}: {r:.2f}" for n, r in ratios.items())))
    if QUICK:
        pytest.skip("quick mode: sizes too small for the linearity check")
    assert all(0.7 <= r <= 1.3 for r in ratios.values()), ratios
