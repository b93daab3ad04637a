"""Accuracy of distributed FlexCMH training against the single-machine fit.

Distributed training pairs the samples without a known partner (Eq. 2)
inside each partition instead of across the whole data set; everything else
is exact.  This script measures what that changes: on synthetic data
(``make_multimodal``, 500 held-out queries) it trains both ways with several
``random_state`` values and reports cross-modal MAP (image->text,
text->image) as mean and standard deviation, per scenario and number of
partitions.  The seed-to-seed spread of the single-machine fit is the yard
stick for the differences.

Run::

    python bench/distributed_train_accuracy.py [--n 3000 12000] [--parts 3] [--seeds 5]
"""
import argparse
import time

import numpy as np


def main():
    import dask.array as da
    from distributed import Client, LocalCluster

    import flexcmh_fast as fc
    from flexcmh_fast import datasets, metrics
    from flexcmh_fast import distributed as fd

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[3000, 12000])
    ap.add_argument("--parts", type=int, nargs="+", default=[3])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--known", type=float, default=0.25,
                    help="fraction of objects whose pair is known in the weak scenario")
    ap.add_argument("--n-bits", type=int, default=16)
    args = ap.parse_args()
    client = Client(LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                 dashboard_address=None))
    print("| n | scenario | partitions | fit | I->T MAP | T->I MAP | seconds per fit |")
    print("|---|---|---|---|---|---|---|")
    for n in args.n:
        data = datasets.make_multimodal(n + 500, random_state=0)
        X0, X1 = data.modalities
        A, B, Q0, Q1 = X0[:n], X1[:n], X0[n:], X1[n:]
        y_db, y_q = data.labels[:n], data.labels[n:]
        known = np.sort(np.random.default_rng(0).choice(n, int(n * args.known), replace=False))
        for scen, pairs in (("weak", np.stack([known, known], axis=1)), ("unpaired", None)):
            def evaluate(model, A=A, B=B, Q0=Q0, Q1=Q1, y_q=y_q, y_db=y_db):
                return (metrics.mean_average_precision(model.encode(Q0, 0), model.encode(B, 1),
                                                       y_q, y_db, n_bits=args.n_bits),
                        metrics.mean_average_precision(model.encode(Q1, 1), model.encode(A, 0),
                                                       y_q, y_db, n_bits=args.n_bits))
            runs = {"single machine": []}
            times = {"single machine": []}
            for seed in range(args.seeds):
                t = time.perf_counter()
                model = fc.train([A, B], pairs, n_bits=args.n_bits, random_state=seed)
                times["single machine"].append(time.perf_counter() - t)
                runs["single machine"].append(evaluate(model))
                for parts in args.parts:
                    name = f"Dask, {parts} partitions"
                    dA = da.from_array(A, chunks=(-(-n // parts), -1))
                    dB = da.from_array(B, chunks=(-(-n // parts), -1))
                    t = time.perf_counter()
                    model = fd.train([dA, dB], pairs, n_bits=args.n_bits, random_state=seed)
                    times.setdefault(name, []).append(time.perf_counter() - t)
                    runs.setdefault(name, []).append(evaluate(model))
            for name, maps in runs.items():
                maps = np.array(maps)
                mean, sd = maps.mean(axis=0), maps.std(axis=0, ddof=1)
                print(f"| {n:,} | {scen} | {name.split(', ')[-1] if 'Dask' in name else 1} "
                      f"| {name.split(',')[0]} | {mean[0]:.4f} ± {sd[0]:.4f} "
                      f"| {mean[1]:.4f} ± {sd[1]:.4f} | {np.median(times[name]):.1f} |",
                      flush=True)
    client.close()


if __name__ == "__main__":
    main()
