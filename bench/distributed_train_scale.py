"""Distributed FlexCMH training at NUS-WIDE size against the single-machine fit.

Synthetic data of NUS-WIDE's shape and sparsity (``bench/benchmarks/scale.py``:
186,577 objects, 500 dense image features, 1,000 binary CSR tags), stored
row-aligned, half of the pairs known (weak 2a), k = 80, 16 bits, the
package's default stopping rule.  The Dask fit runs on a
``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)`` with
``--parts`` row partitions; the single-machine fit on two threads in this
process, after it.  Reported: iterations, seconds, seconds per iteration,
bytes per iteration between client and workers, peak memory of every worker
process and of this process, and cross-modal MAP of 2,000 held-out objects
against the training set (multi-label: relevant when sharing a label).

Run::

    python bench/distributed_train_scale.py [--parts 4] [--n 186577]
"""
import argparse
import importlib.util
import resource
import time
from pathlib import Path

import numpy as np

# bench/benchmarks/scale.py by path: putting bench/benchmarks on sys.path would
# let its distributed.py shadow the dask.distributed package.
_spec = importlib.util.spec_from_file_location(
    "scale", Path(__file__).resolve().parent / "benchmarks" / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    import dask
    import dask.array as da
    import scipy.sparse as sp
    from distributed import Client, LocalCluster

    from flexcmh_fast import distributed as fd
    from flexcmh_fast import metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--n", type=int, default=scale.SHAPES["nuswide"]["n"])
    args = ap.parse_args()
    s = scale.SHAPES["nuswide"]
    n, n_query = args.n, 2000
    X_img, X_txt, labels = scale.make_like(n + n_query, s["d_img"], s["d_txt"],
                                           s["density"], s["n_classes"], random_state=0)
    Q_img, Q_txt, y_q = X_img[n:], X_txt[n:], labels[n:]
    X_img, X_txt, y_db = X_img[:n], X_txt[:n], labels[:n]
    known = np.sort(np.random.default_rng(0).choice(n, n // 2, replace=False))
    pairs = np.stack([known, known], axis=1)
    client = Client(LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                 dashboard_address=None))
    bounds = np.linspace(0, n, args.parts + 1).astype(int)

    def to_dask(X):
        meta = sp.csr_matrix((0, X.shape[1])) if sp.issparse(X) else np.empty((0, X.shape[1]))
        return da.concatenate([
            da.from_delayed(dask.delayed(X[a:b]), shape=(b - a, X.shape[1]),
                            dtype=np.float64, meta=meta)
            for a, b in zip(bounds[:-1], bounds[1:])]).persist()

    dXs = [to_dask(X_img), to_dask(X_txt)]
    log = []
    t = time.perf_counter()
    dist = fd.train(dXs, pairs, n_bits=scale.N_BITS, n_clusters=s["k"], random_state=0,
                    client=client, callback=lambda it, st: log.append(
                        (time.perf_counter(), st["bytes_sent"] + st["bytes_received"])))
    t_dist = time.perf_counter() - t
    worker_rss = client.run(_peak_rss_mib)
    client.close()
    scale.warm_up()
    marks = []
    t = time.perf_counter()
    single = scale.train(X_img, X_txt, pairs, s["k"],
                         callback=lambda it, st: marks.append(time.perf_counter()))
    t_single = time.perf_counter() - t

    def maps(model):
        return [metrics.mean_average_precision(model.encode(Q, q), model.encode(D, 1 - q),
                                               y_q, y_db, n_bits=scale.N_BITS)
                for q, Q, D in ((0, Q_img, X_txt), (1, Q_txt, X_img))]

    print(f"n = {n:,}, {args.parts} partitions, k = {s['k']}, {scale.N_BITS} bits")
    print("| fit | iterations | seconds | s / iteration | bytes / iteration | peak RSS "
          "| I->T MAP | T->I MAP |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| Dask, 2 workers x 1 thread | {dist.n_iter_} | {t_dist:.1f} "
          f"| {np.diff([x for x, _ in log]).mean():.2f} "
          f"| {np.mean([b for _, b in log]) / 1e3:.0f} kB "
          f"| workers {', '.join(f'{v:.0f}' for v in worker_rss.values())} MiB "
          f"| {' | '.join(f'{v:.4f}' for v in maps(dist))} |")
    print(f"| single machine, 2 threads | {single.n_iter_} | {t_single:.1f} "
          f"| {np.diff(marks).mean():.2f} | - | this process {_peak_rss_mib():.0f} MiB "
          f"| {' | '.join(f'{v:.4f}' for v in maps(single))} |")


if __name__ == "__main__":
    main()
