"""Distributed FlexCMH training on a local Dask cluster: bytes per iteration
between the client and the workers, and time per iteration, at growing n.

The cluster is ``LocalCluster(processes=True, n_workers=2,
threads_per_worker=1)`` with the data in 4 row partitions; the single-machine
fit (``flexcmh_fast.train``, 2 threads) runs in the same process on the same
data for the time comparison.  Per iteration it reports

* the pickled bytes of the messages the client sends and the results it
  gathers (``bytes_sent`` / ``bytes_received`` of the training callback), and
* every byte sent over the loopback interface during the iteration
  (``/proc/net/dev``): client, scheduler and workers all talk over loopback
  on a LocalCluster, so this counts the real TCP traffic including task
  specifications, control messages and any worker-to-worker transfer (and
  anything else on the machine using loopback at the time).

Target: both independent of the number of samples.

Run::

    pytest bench/test_bench_distributed_train.py -s
    FLEXCMH_BENCH_SIZES=20000,40000 pytest bench/test_bench_distributed_train.py -s
"""
import os
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import flexcmh_fast as fc  # noqa: E402
from flexcmh_fast import datasets  # noqa: E402
from flexcmh_fast import distributed as fd  # noqa: E402

N_PARTS = 4
N_ITER = 5
PARAMS = {"n_bits": 64, "n_clusters": 25, "max_iter": N_ITER, "tol": 0.0}


def _sizes():
    env = os.environ.get("FLEXCMH_BENCH_SIZES")
    return [int(s) for s in env.split(",")] if env else [25_000, 50_000, 100_000, 200_000]


def make_data(n):
    """Two dense modalities of shared latent classes (``make_multimodal``),
    weakly paired: a quarter of the row-aligned pairs known."""
    data = datasets.make_multimodal(n, n_classes=25, n_features=(128, 256),
                                    kinds=("dense", "dense"), random_state=0)
    known = np.sort(np.random.default_rng(0).choice(n, n // 4, replace=False))
    return data.modalities, np.stack([known, known], axis=1)


def loopback_bytes():
    """Bytes sent over the loopback interface so far (``/proc/net/dev``)."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, fields = line.partition(":")
            if name.strip() == "lo":
                return int(fields.split()[8])
    raise RuntimeError("no loopback interface in /proc/net/dev")


def per_iteration(fit):
    """Run ``fit(callback)``; (time, loopback bytes) at every callback and
    the callback states."""
    marks, states = [], []

    def callback(it, state):
        marks.append((time.perf_counter(), loopback_bytes()))
        states.append(state)

    fit(callback)
    return marks, states


def test_traffic_and_time_per_iteration(client):
    rows = []
    for n in _sizes():
        Xs, pairs = make_data(n)
        chunk = -(-n // N_PARTS)
        dXs = [da.from_array(X, chunks=(chunk, -1)).persist() for X in Xs]
        distributed.wait(dXs)
        marks, states = per_iteration(lambda cb, dXs=dXs, pairs=pairs: fd.train(
            dXs, pairs, random_state=0, client=client, callback=cb, **PARAMS))
        # Intervals between callbacks: iterations 2..N, without the set-up.
        t_dist = np.diff([t for t, _ in marks]).mean()
        wire = np.diff([b for _, b in marks])
        sent = np.mean([s["bytes_sent"] for s in states[1:]])
        received = np.mean([s["bytes_received"] for s in states[1:]])
        marks, _ = per_iteration(lambda cb, Xs=Xs, pairs=pairs: fc.train(
            Xs, pairs, random_state=0, n_threads=2, callback=cb, **PARAMS))
        t_single = np.diff([t for t, _ in marks]).mean()
        rows.append((n, sent, received, wire.mean(), wire.max(), t_dist, t_single))
        del dXs
    print("\n| n | pickled to workers / iter | pickled from workers / iter "
          "| loopback TCP / iter (mean, max) | s / iter Dask (2 x 1 thread) "
          "| s / iter single (2 threads) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for n, sent, received, wire_mean, wire_max, t_dist, t_single in rows:
        print(f"| {n:,} | {sent / 1e3:.1f} kB | {received / 1e3:.1f} kB "
              f"| {wire_mean / 1e3:.0f} kB, {wire_max / 1e3:.0f} kB | {t_dist:.3f} "
              f"| {t_single:.3f} | {t_dist / t_single:.2f} |")
    first, last = rows[0], rows[-1]
    # Same messages at every n: within 2% for the payload, 10% on the wire
    # (control messages carry task keys and timings).
    assert abs(last[1] / first[1] - 1) < 0.02 and abs(last[2] / first[2] - 1) < 0.02
    assert abs(last[3] / first[3] - 1) < 0.10
