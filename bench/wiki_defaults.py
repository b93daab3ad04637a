"""FlexCMH with the defaults on the raw Wiki features: the paper's protocol
(10 random 70/30 splits; paired, weak 2a, weak 2b, unpaired; 16-128 bits),
both database protocols, iteration counts and fit times.

Run: ``python bench/wiki_defaults.py [path/to/wiki] [--splits 10]
[--dtype float32] [--json FILE]``; prints markdown tables (MAP mean ± std
next to the paper's FlexCMH) and the distribution of iteration counts;
``--json`` keeps every split's MAP and iteration count (compare two runs
with ``bench/compare_wiki_runs.py``).  Labels are used for evaluation only.
"""
import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import flexcmh_fast as fc
from flexcmh_fast import metrics
from flexcmh_fast.experiments import PAPER_BITS, PAPER_WIKI
from flexcmh_fast.scenarios import SCENARIOS, make_scenario, train_test_split

BITS = (16, 32, 64, 128)


def main():
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default=str(here.parent / "shared/data/wiki"))
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="dtype of the features handed to the fit")
    parser.add_argument("--json", help="write every split's MAP and iterations here")
    args = parser.parse_args()
    data = fc.datasets.load_wiki(args.path)
    mods = [m.astype(args.dtype) for m in data.modalities]
    lab = np.asarray(data.labels)
    fc.train([mods[0][:200], mods[1][:200]], "all", n_bits=16, random_state=0)  # JIT warm-up
    maps = {}      # (scenario, bits, database, direction) -> list
    iters, times, converged = {}, {}, {}
    for split in range(args.splits):
        tr, te = train_test_split(len(lab), 0.3, random_state=split)
        for scen in args.scenarios:
            sc = make_scenario([m[tr] for m in mods], lab[tr], scen, random_state=split)
            for b in BITS:
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", fc.ConvergenceWarning)
                    model = fc.train(sc.modalities, sc.pairs, n_bits=b, random_state=split)
                times.setdefault(scen, []).append(time.perf_counter() - t)
                iters.setdefault(scen, []).append(model.n_iter_)
                converged.setdefault(scen, []).append(model.converged_)
                for q, d, name in ((0, 1, "I->T"), (1, 0, "T->I")):
                    qc = model.encode(mods[q][te], q)
                    for database, dc in (("encoded", model.encode(sc.modalities[d], d)),
                                         ("learned", model.train_codes_[d])):
                        maps.setdefault((scen, b, database, name), []).append(
                            metrics.mean_average_precision(qc, dc, lab[te], sc.labels[d],
                                                           n_bits=b))
        print(f"split {split} done", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"dtype": args.dtype,
                       "maps": {"|".join(map(str, key)): v for key, v in maps.items()},
                       "iters": iters, "converged": {k: [bool(c) for c in v]
                                                     for k, v in converged.items()}}, fh)
    for database in ("encoded", "learned"):
        print(f"\n### database: {database}\n")
        print("| scenario | direction | " + " | ".join(f"{b} bits" for b in BITS) + " |")
        print("|---|---|" + "---|" * len(BITS))
        for scen in args.scenarios:
            for name in ("I->T", "T->I"):
                cells = []
                for b in BITS:
                    v = np.array(maps[(scen, b, database, name)])
                    paper = PAPER_WIKI[scen][name][PAPER_BITS.index(b)]
                    mark = "" if v.mean() >= paper else " ▼"
                    cells.append(f"{v.mean():.4f} ± {v.std():.4f} ({paper:.4f}){mark}")
                print(f"| {scen} | {name} | " + " | ".join(cells) + " |")
    print("\n### iterations and fit time (all code lengths)\n")
    print("| scenario | iterations min / median / max | converged | fit time median (s) |")
    print("|---|---|---|---|")
    for scen in args.scenarios:
        it = np.array(iters[scen])
        print(f"| {scen} | {it.min()} / {int(np.median(it))} / {it.max()} | "
              f"{int(np.sum(converged[scen]))}/{it.size} | {np.median(times[scen]):.2f} |")


if __name__ == "__main__":
    main()
