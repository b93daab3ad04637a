"""
FlexCMH against the baselines on the same split
================================================

Every method of the package trained on the same weakly paired training set
(half of the correspondences known) and evaluated on the same test rows:

* :class:`flexcmh_fast.FlexCMH` uses the known pairs and the rows without a
  known partner;
* :class:`flexcmh_fast.CCAITQ`, :class:`flexcmh_fast.CMFH` and
  :class:`flexcmh_fast.SCM` learn from the known pairs and encode every row;
* :class:`flexcmh_fast.CSMH` trains on the known pairs as a paired set.

SCM and CSMH are supervised: they also see the class labels of their training
rows, which the other three never do.

The data are Wiki when found in ``../shared/data/wiki`` (from the
repository root), the built-in synthetic data otherwise.
"""

# %%
# Data and the weakly paired training set
# ---------------------------------------
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import flexcmh_fast as fc
from flexcmh_fast.scenarios import make_scenario, train_test_split


def find_wiki():
    """The Wiki folder ``shared/data/wiki`` beside the repository holding this
    script (the first folder above it with a ``pyproject.toml``), or None."""
    try:
        start = Path(__file__).resolve().parent
    except NameError:  # sphinx-gallery: no __file__, run in its folder
        start = Path.cwd()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            wiki = folder.parent / "shared" / "data" / "wiki"
            return wiki if (wiki / "wikiData.mat").is_file() else None
    return None


wiki = find_wiki()
if wiki is not None:
    data, data_name = fc.datasets.load_wiki(wiki), "Wiki"
else:
    data = fc.datasets.make_multimodal(n_samples=2000, random_state=0)
    data_name = "synthetic"
labels = np.asarray(data.labels)
train, test = train_test_split(len(labels), test_size=0.3, random_state=0)
weak = make_scenario(
    [X[train] for X in data.modalities], labels[train], "weak", random_state=0
)
known = weak.pairs  # (row in modality 0, row in modality 1)
print(data_name, data, f"\n{len(known)} known pairs")


# %%
# One training call per method
# ----------------------------
# :func:`flexcmh_fast.train` builds any method by name; the estimators can be
# built directly as well (``fc.CMFH(n_bits=32).fit(...)``).
def fit(method, n_bits):
    if method == "csmh":
        paired = [
            weak.modalities[0][known[:, 0]],
            weak.modalities[1][known[:, 1]],
        ]
        paired_labels = [
            weak.labels[0][known[:, 0]],
            weak.labels[1][known[:, 1]],
        ]
        return fc.train(
            paired,
            "all",
            method="csmh",
            labels=paired_labels,
            n_bits=n_bits,
            random_state=0,
        )
    supervised = {"labels": weak.labels} if method == "scm" else {}
    return fc.train(
        weak.modalities,
        known,
        method=method,
        n_bits=n_bits,
        random_state=0,
        **supervised,
    )


methods = {
    "flexcmh": "FlexCMH",
    "cca_itq": "CCA-ITQ",
    "cmfh": "CMFH",
    "scm": "SCM",
    "csmh": "CSMH",
}
bits = (16, 32, 64)
scores = {method: np.zeros((2, len(bits))) for method in methods}
seconds = {method: 0.0 for method in methods}
for method in methods:
    for j, n_bits in enumerate(bits):
        started = time.perf_counter()
        model = fit(method, n_bits)
        seconds[method] += time.perf_counter() - started
        for i, (query, database) in enumerate(((0, 1), (1, 0))):
            queries = model.encode(
                data.modalities[query][test], modality=query
            )
            db_codes = model.encode(
                weak.modalities[database], modality=database
            )
            scores[method][i, j] = fc.metrics.mean_average_precision(
                queries,
                db_codes,
                labels[test],
                weak.labels[database],
                n_bits=n_bits,
            )
    print(
        f"{methods[method]:>8}: MAP I->T {np.round(scores[method][0], 3)}, "
        f"T->I {np.round(scores[method][1], 3)}; "
        f"training {seconds[method]:.1f} s"
    )

# %%
# MAP against the code length
# ---------------------------
fig, axes = plt.subplots(
    1, 2, figsize=(9, 4), sharey=True, layout="constrained"
)
for i, (ax, direction) in enumerate(
    zip(axes, ("Image → Text", "Text → Image"), strict=True)
):
    for (method, name), marker in zip(methods.items(), "os^vD", strict=True):
        style = "-" if method in ("flexcmh", "cca_itq", "cmfh") else "--"
        ax.plot(
            bits, scores[method][i], marker=marker, linestyle=style, label=name
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(bits, [str(b) for b in bits])
    ax.set_xlabel("code length (bits)")
    ax.set_title(direction)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("MAP")
axes[0].legend(title="dashed: supervised", loc="upper left", fontsize="small")
fig.suptitle(
    f"Weakly paired {data_name} data (50% of the pairs known), one split"
)
plt.show()

# %%
# ``docs/results.md`` compares the five methods over 10 Wiki splits, in every
# scenario and at 16-128 bits, with the training times.
