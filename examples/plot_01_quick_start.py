"""
Quick start: fit, encode, search, and a precision-recall curve
==============================================================

Learn 32-bit hash codes for two modalities (image-like dense features and
text-like sparse features) from weakly paired data, search the codes of one
modality with queries from the other, and draw the precision-recall curves of
both directions.
"""

# %%
# Data: two modalities and a weakly paired training set
# ------------------------------------------------------
# :func:`flexcmh_fast.datasets.make_multimodal` draws paired synthetic data:
# row ``i`` of every modality is the same object, and every object has a
# class label.  :func:`~flexcmh_fast.scenarios.make_scenario` with ``"weak"``
# keeps the correspondence of half of the training objects and hides the rest
# (the second modality's rows are shuffled); the labels are used for
# evaluation only.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import flexcmh_fast as fc
from flexcmh_fast.scenarios import make_scenario, train_test_split

data = fc.datasets.make_multimodal(n_samples=2000, random_state=0)
X_img, X_txt = data.modalities
labels = np.asarray(data.labels)
print(data)

train, test = train_test_split(len(labels), test_size=0.3, random_state=0)
weak = make_scenario(
    [X_img[train], X_txt[train]], labels[train], "weak", random_state=0
)
print(f"{len(weak.pairs)} known pairs among {len(train)} training objects")

# %%
# Fit and encode
# --------------
# :class:`flexcmh_fast.FlexCMH` follows scikit-learn's conventions: settings
# in the constructor, ``fit`` returns the estimator, fitted state in
# attributes ending with ``_``.  ``encode`` returns packed codes: one row of
# ``ceil(n_bits / 8)`` bytes per sample.
model = fc.FlexCMH(n_bits=32, random_state=0).fit(weak.modalities, weak.pairs)
print(f"converged: {model.converged_} after {model.n_iter_} iterations")

img_queries = model.encode(X_img[test], modality=0)
txt_queries = model.encode(X_txt[test], modality=1)
img_database = model.encode(weak.modalities[0], modality=0)
txt_database = model.encode(weak.modalities[1], modality=1)
print("packed codes:", img_queries.shape, img_queries.dtype)

# %%
# Search
# ------
# :class:`flexcmh_fast.HammingIndex` answers exact top-k queries by Hamming
# distance, the number of bits in which two codes differ,
#
# .. math:: d_H(a, b) = \operatorname{popcount}(a \oplus b).
#
# Ties are broken by the smaller database id.  Here the five nearest texts of
# the first three test images:
index = fc.HammingIndex(txt_database, n_bits=32)
distances, ids = index.search(img_queries[:3], k=5)
print("distances\n", distances)
print("labels of the texts found\n", weak.labels[1][ids])
print("labels of the images\n", labels[test][:3])

# %%
# Evaluate: MAP and precision-recall curves
# -----------------------------------------
# A database item is relevant to a query when both have the same class.
# Ranking the whole database by distance and cutting it at every radius
# :math:`r` gives one point of the curve: with :math:`R_q` the relevant items
# of query :math:`q` and :math:`N_q(r)` the items within distance :math:`r`,
#
# .. math::
#
#    \mathrm{precision}(r) = \frac{|R_q \cap N_q(r)|}{|N_q(r)|}, \qquad
#    \mathrm{recall}(r) = \frac{|R_q \cap N_q(r)|}{|R_q|},
#
# averaged over the queries
# (:func:`flexcmh_fast.metrics.precision_recall_curve`).
directions = {
    "Image → Text": (img_queries, txt_database, weak.labels[1]),
    "Text → Image": (txt_queries, img_database, weak.labels[0]),
}
fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
for name, (queries, database, db_labels) in directions.items():
    score = fc.metrics.mean_average_precision(
        queries, database, labels[test], db_labels, n_bits=32
    )
    precision, recall, _ = fc.metrics.precision_recall_curve(
        queries, database, labels[test], db_labels, n_bits=32
    )
    ax.plot(
        recall,
        precision,
        marker="o",
        markersize=3,
        label=f"{name} (MAP {score:.3f})",
    )
    print(f"{name}: MAP {score:.3f}")
ax.set_xlabel("recall")
ax.set_ylabel("precision")
ax.set_xlim(0, 1)
ax.set_ylim(0, 1.02)
ax.set_title("FlexCMH, 32 bits, weakly paired synthetic data")
ax.legend(loc="lower left")
ax.grid(alpha=0.3)
plt.show()

# %%
# Save and load
# -------------
# Models and indexes are saved in a portable ``.npz`` format that never
# unpickles (:func:`flexcmh_fast.load`); a loaded model encodes identically.
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "model.npz")
    model.save(path)
    loaded = fc.load(path)
    print(
        "same codes after load:",
        np.array_equal(loaded.encode(X_img[test], modality=0), img_queries),
    )
