"""The cost of recovering a distributed FlexCMH fit from a lost worker.

The setup of the fault-tolerance issue: a ``LocalCluster`` of 3 worker
processes with 1 thread each; 54,000 objects of 128 dense image and 64
dense text features (``make_multimodal``, 10 classes) in 9 row blocks,
persisted on the workers; ``distributed.train(..., n_bits=32)``, default
settings otherwise.  Two scenarios: fully paired (``pairs="all"``) and
weakly paired (the text rows shuffled within each row block, half of the
pairs known).  For each, an undisturbed fit, then fits in which the worker
holding partition 0 is killed (SIGKILL; its nanny starts a new worker) when
the round of a given step is sent: at the start (the SemiNMF start),
mid-loop (the H step of the iteration halfway through the undisturbed
fit) and during the encoder fit (the first Gram sums of the kernel
encoder's regression).

Reported per fit: seconds, the extra seconds over the undisturbed fit,
iterations, and of the recovery: partitions reloaded, the seconds from the
failure noticed to every partition back, the rounds replayed, the bytes
sent (pickled restore and replay arguments) and the bytes loaded again
(the partitions' source blocks), and the held-out MAP (2,000 objects
against the training set) against the undisturbed fit's.

Run::

    python bench/distributed_recovery.py [--n 54000] [--blocks 9]
        [--scenarios paired,weak] [--stages start,mid,encoder]
"""
import argparse
import os
import signal
import time
import warnings

import numpy as np


def main():
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from flexcmh_fast import datasets, metrics
    from flexcmh_fast import distributed as fd
    from flexcmh_fast.distributed import _backend
    from flexcmh_fast.flexcmh import _partition as P

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=54_000)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--scenarios", default="paired,weak")
    ap.add_argument("--stages", default="start,mid,encoder",
                    help="where the worker is killed (comma-separated)")
    args = ap.parse_args()
    n, n_query = args.n, 2000
    d = datasets.make_multimodal(n + n_query, n_classes=10, n_features=(128, 64),
                                 kinds=("dense", "dense"), noise=0.8, random_state=0)
    X_img, X_txt = d.modalities
    y_db, y_q = d.labels[:n], d.labels[n:]
    Q_img, Q_txt, X_img, X_txt = X_img[n:], X_txt[n:], X_img[:n], X_txt[:n]
    bounds = np.linspace(0, n, args.blocks + 1).astype(int)
    cluster = LocalCluster(processes=True, n_workers=3, threads_per_worker=1,
                           dashboard_address=None)
    client = Client(cluster)

    def to_dask(X):
        return da.concatenate([
            da.from_delayed(dask.delayed(X[a:b]), shape=(b - a, X.shape[1]), dtype=X.dtype)
            for a, b in zip(bounds[:-1], bounds[1:])]).persist()

    # Weakly paired: the text rows shuffled within each row block, half of
    # the objects with a known pair (row of the image, row of its text).
    rng = np.random.default_rng(0)
    order = np.concatenate([a + rng.permutation(b - a) for a, b in zip(bounds[:-1], bounds[1:])])
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    known = np.sort(rng.choice(n, n // 2, replace=False))
    scenarios = {
        "paired": ([X_img, X_txt], "all", (X_img, X_txt)),
        "weak": ([X_img, X_txt[order]], np.stack([known, where[known]], axis=1),
                 (X_img, X_txt)),
    }

    state = {"step": None, "nth": 0, "sent": 0, "backend": None}
    send = _backend.DaskBackend._send

    def spy(backend, entry, parts):
        futures = send(backend, entry, parts)
        state["backend"] = backend
        if entry.step is state["step"]:
            state["sent"] += 1
            if state["sent"] == state["nth"]:
                address = backend.workers[0]
                os.kill(client.run(os.getpid, workers=[address])[address], signal.SIGKILL)
        return futures

    _backend.DaskBackend._send = spy

    def fit(Xs, pairs, db, step=None, nth=0):
        client.wait_for_workers(3, timeout=120)
        state.update(step=step, nth=nth, sent=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fd.train(Xs, pairs, n_bits=32, random_state=0, client=client)
        seconds = time.perf_counter() - start
        maps = [metrics.mean_average_precision(model.encode(Q, q), model.encode(D, 1 - q),
                                               y_q, y_db, n_bits=32)
                for q, Q, D in ((0, Q_img, db[1]), (1, Q_txt, db[0]))]
        return model, seconds, np.array(maps), state["backend"].recoveries

    # Warm-up: the workers import the trainer and load its compiled kernels.
    fd.train([da.from_array(X[:2000], chunks=1000) for X in (X_img, X_txt)], "all",
             n_bits=32, max_iter=2, random_state=0, client=client)
    print("| scenario | killed during | seconds | extra seconds | iterations | partitions "
          "reloaded | recovery seconds | rounds replayed | bytes sent | bytes reloaded | "
          "I→T MAP | T→I MAP |")
    print("|" + "---|" * 12)
    for name in args.scenarios.split(","):
        Xs, pairs, db = scenarios[name]
        dXs = [to_dask(X) for X in Xs]
        base, t0, map0, _ = fit(dXs, pairs, db)
        print(f"| {name} | (undisturbed) | {t0:.1f} | – | {base.n_iter_} | – | – | – | – | – | "
              f"{map0[0]:.4f} | {map0[1]:.4f} |", flush=True)
        kills = {"start": ("the start", P.init_indicators, 1),
                 "mid": (f"iteration {max(1, base.n_iter_ // 2)}", P.update_h,
                         max(1, base.n_iter_ // 2)),
                 "encoder": ("the encoder fit", P.indicator_gram, 1)}
        for label, step, nth in (kills[s] for s in args.stages.split(",")):
            model, t, maps, recoveries = fit(dXs, pairs, db, step, nth)
            parts = " + ".join(str(r["partitions"]) for r in recoveries)
            print(f"| {name} | {label} | {t:.1f} | {t - t0:+.1f} | {model.n_iter_} | "
                  f"{parts} | {sum(r['seconds'] for r in recoveries):.2f} | "
                  f"{sum(r['rounds_replayed'] for r in recoveries)} | "
                  f"{sum(r['bytes_sent'] for r in recoveries) / 1e6:.2f} MB | "
                  f"{sum(r['bytes_reloaded'] for r in recoveries) / 1e6:.1f} MB | "
                  f"{maps[0]:.4f} ({maps[0] - map0[0]:+.4f}) | "
                  f"{maps[1]:.4f} ({maps[1] - map0[1]:+.4f}) |", flush=True)
        del dXs
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
