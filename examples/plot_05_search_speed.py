"""
Exact search speed: code length and multi-index hashing
=======================================================

:class:`flexcmh_fast.HammingIndex` answers exact top-k queries either by a
linear scan over every code (``method="linear"``) or by multi-index hashing
(``method="mih"``, Norouzi et al.), which looks up only the codes that share
an exact substring with the query.  Both return identical results;
``method="auto"`` chooses by a cost model.  This example times

1. the linear scan against the code length, on random codes;
2. the scan against multi-index hashing on clustered codes (codes near a few
   thousand centres, as learned hash codes of real data are), against the
   number of codes.

The times are measured when this page is built, on that machine: the
benchmarks page (``docs/benchmarks.md``) has controlled measurements against
faiss.
"""

# %%
# Timing helper and code generators
# ---------------------------------
import time
from functools import partial

import matplotlib.pyplot as plt
import numpy as np

import flexcmh_fast as fc


def best_time(run, repeats=3):
    """Smallest wall-clock time of ``repeats`` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1e3 * min(times)


def random_codes(n, n_bits, rng):
    return rng.integers(0, 256, (n, n_bits // 8), dtype=np.uint8)


def clustered_codes(n, n_bits, centres, flips, rng):
    """Each code: one of ``centres`` with ``flips`` random bits flipped."""
    codes = centres[rng.integers(0, len(centres), n)]
    rows = np.arange(n)
    for _ in range(flips):
        bit = rng.integers(0, n_bits, n)
        codes[rows, bit // 8] ^= np.uint8(128) >> (bit % 8).astype(np.uint8)
    return codes


rng = np.random.default_rng(0)
n_queries, k = 500, 10

# %%
# The linear scan against the code length
# ---------------------------------------
# The scan computes :math:`\operatorname{popcount}(q \oplus x)` for every
# database code :math:`x`, so its cost grows with the number of 64-bit words
# of a code.
n_codes = 200_000
lengths = (32, 64, 128, 256)
scan_ms = []
for n_bits in lengths:
    index = fc.HammingIndex(
        random_codes(n_codes, n_bits, rng), n_bits=n_bits, method="linear"
    )
    queries = random_codes(n_queries, n_bits, rng)
    scan_ms.append(best_time(partial(index.search, queries, k)))
    print(f"{n_bits:>3} bits: {scan_ms[-1]:7.1f} ms for {n_queries} queries")

# %%
# Multi-index hashing on clustered codes
# --------------------------------------
# MIH cuts each 64-bit code into :math:`m` substrings.  By the pigeonhole
# principle, a code within distance :math:`r` of the query agrees exactly
# with it on at least one substring when :math:`r < m`, so looking up the
# query's substrings (and their neighbours within small radii) in :math:`m`
# hash tables finds every candidate without scanning the rest.  On random
# codes that saves little; on clustered codes it skips most of the database.
n_bits, n_centres, flips = 64, 4000, 3
centres = random_codes(n_centres, n_bits, np.random.default_rng(n_bits))
sizes = (100_000, 300_000, 1_000_000)
times = {"linear": [], "mih": [], "auto": []}
for n in sizes:
    database = clustered_codes(n, n_bits, centres, flips, rng)
    queries = clustered_codes(n_queries, n_bits, centres, flips, rng)
    answers = {}
    for method in times:
        index = fc.HammingIndex(database, n_bits=n_bits, method=method)
        # The first search builds the hash tables: outside the timing.
        index.search(queries[:1], k)
        times[method].append(best_time(partial(index.search, queries, k)))
        answers[method] = index.search(queries, k)
    for method in ("mih", "auto"):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(answers[method], answers["linear"], strict=True)
        )
    print(
        f"{n:>9,} codes: "
        + ", ".join(f"{m} {t[-1]:6.1f} ms" for m, t in times.items())
        + " (identical results)"
    )

# %%
# The figure
# ----------
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
left.plot(lengths, scan_ms, marker="o")
left.set_xscale("log", base=2)
left.set_xticks(lengths, [str(b) for b in lengths])
left.set_ylim(bottom=0)
left.set_xlabel("code length (bits)")
left.set_ylabel(f"ms for {n_queries} queries (k = {k})")
left.set_title(f"linear scan, {n_codes:,} random codes")
left.grid(alpha=0.3)

for (method, ms), marker in zip(times.items(), "osd", strict=True):
    right.plot(sizes, ms, marker=marker, label=f'method="{method}"')
right.set_xscale("log")
right.set_xticks(sizes, [f"{n:,}" for n in sizes])
right.set_ylim(bottom=0)
right.set_xlabel("database codes")
right.set_ylabel(f"ms for {n_queries} queries (k = {k})")
right.set_title(f"clustered {n_bits}-bit codes ({n_centres:,} centres)")
right.legend()
right.grid(alpha=0.3)
plt.show()
