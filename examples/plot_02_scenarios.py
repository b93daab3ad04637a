"""
Paired, weakly paired and unpaired training data
=================================================

FlexCMH learns from data where all, some, or none of the cross-modal
correspondences are known.  This example trains it in the three scenarios on
the same split and plots the mean average precision (MAP) of both retrieval
directions against the code length.

It runs on the Wiki image-text benchmark (2,866 Wikipedia articles: 128-d SIFT
histograms of the images, 10-d LDA topics of the texts, 10 classes) when the
data are found in ``../shared/data/wiki`` (from the repository root), and
on the built-in synthetic data otherwise.
"""

# %%
# Data
# ----
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
X_img, X_txt = data.modalities
labels = np.asarray(data.labels)
train, test = train_test_split(len(labels), test_size=0.3, random_state=0)
print(data_name, data)

# %%
# The three scenarios
# -------------------
# :func:`~flexcmh_fast.scenarios.make_scenario` turns the paired training
# rows into each scenario: ``"paired"`` knows every correspondence,
# ``"weak"`` half of them (scenario 2a of the FlexCMH paper), ``"unpaired"``
# none.  The rows of the text modality are shuffled so that the hidden
# correspondences cannot be read from the row order; ``pairs`` lists the
# known ones.
scenarios = {
    name: make_scenario(
        [X_img[train], X_txt[train]], labels[train], name, random_state=0
    )
    for name in ("paired", "weak", "unpaired")
}
for name, scenario in scenarios.items():
    if scenario.pairs is None:
        known = "none"
    elif isinstance(scenario.pairs, str):
        known = scenario.pairs
    else:
        known = len(scenario.pairs)
    print(f"{name:>9}: known pairs {known}")

# %%
# MAP against the code length
# ---------------------------
# Every model encodes the test rows as queries and the training rows of the
# other modality as the database (the database labels come permuted with the
# rows).  The unpaired fits also align the two modalities by a
# Gromov-Wasserstein coupling of sampled rows, which makes them the slowest.
bits = (16, 32, 64)
directions = ("Image → Text", "Text → Image")
scores = {name: np.zeros((len(directions), len(bits))) for name in scenarios}
for name, scenario in scenarios.items():
    for j, n_bits in enumerate(bits):
        model = fc.FlexCMH(n_bits=n_bits, random_state=0).fit(
            scenario.modalities, scenario.pairs
        )
        for i, (query, database) in enumerate(((0, 1), (1, 0))):
            queries = model.encode(
                data.modalities[query][test], modality=query
            )
            db_codes = model.encode(
                scenario.modalities[database], modality=database
            )
            scores[name][i, j] = fc.metrics.mean_average_precision(
                queries,
                db_codes,
                labels[test],
                scenario.labels[database],
                n_bits=n_bits,
            )
        print(
            f"{name:>9} {n_bits:>3} bits: MAP I->T {scores[name][0, j]:.3f}, "
            f"T->I {scores[name][1, j]:.3f} ({model.n_iter_} iterations)"
        )

fig, axes = plt.subplots(
    1, 2, figsize=(9, 4), sharey=True, layout="constrained"
)
for i, (ax, direction) in enumerate(zip(axes, directions, strict=True)):
    for name, marker in zip(scenarios, "osd", strict=True):
        ax.plot(bits, scores[name][i], marker=marker, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(bits, [str(b) for b in bits])
    ax.set_xlabel("code length (bits)")
    ax.set_title(direction)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("MAP")
axes[0].legend(title="training pairs")
fig.suptitle(f"FlexCMH on {data_name} data: one split, 30% test")
plt.show()

# %%
# The weakly paired fits come close to the fully paired ones.  With no pair
# known, the modalities must first be aligned from their own structure, and
# the MAP falls far below both.  ``docs/results.md`` has the full Wiki tables
# (10 splits, 16-128 bits) next to the published numbers.
