"""
Hamming distance histograms and radius search
=============================================

How far are the codes of the relevant items from a query, and what does a
search within a fixed Hamming radius return?  This example encodes synthetic
image queries and a text database with a 32-bit FlexCMH model, counts the
database codes at every distance with
:meth:`~flexcmh_fast.HammingIndex.distance_histogram`, and retrieves every
code within a radius with :meth:`~flexcmh_fast.HammingIndex.range_search`
(both methods of :class:`flexcmh_fast.HammingIndex`).
"""

# %%
# Codes of queries and database
# -----------------------------
import matplotlib.pyplot as plt
import numpy as np

import flexcmh_fast as fc
from flexcmh_fast.scenarios import train_test_split

data = fc.datasets.make_multimodal(n_samples=3000, random_state=1)
X_img, X_txt = data.modalities
labels = np.asarray(data.labels)
train, test = train_test_split(len(labels), test_size=0.3, random_state=0)

n_bits = 32
model = fc.FlexCMH(n_bits=n_bits, random_state=0).fit(
    [X_img[train], X_txt[train]], "all"
)
queries = model.encode(X_img[test], modality=0)  # images ...
database = model.encode(X_txt[train], modality=1)  # ... search texts
query_labels, db_labels = labels[test], labels[train]
index = fc.HammingIndex(database, n_bits=n_bits)
print(index)

# %%
# Distance histograms
# -------------------
# ``distance_histogram(queries)`` gives, for every query, the number of
# database codes at each distance :math:`0, 1, \dots, n_\text{bits}` without
# sorting or returning them.  One index per class gives the same counts for
# the relevant items only (same class as the query).
all_counts = index.distance_histogram(queries)  # (n_queries, n_bits + 1)
relevant_counts = np.zeros_like(all_counts)
for label in np.unique(db_labels):
    in_class = query_labels == label
    class_index = fc.HammingIndex(database[db_labels == label], n_bits=n_bits)
    relevant_counts[in_class] = class_index.distance_histogram(
        queries[in_class]
    )
assert (all_counts.sum(axis=1) == len(database)).all()

# %%
# Radius search
# -------------
# ``range_search(queries, radius)`` returns every code within the radius, in
# the layout of faiss' ``range_search``: the results of query ``j`` are
# ``ids[lims[j]:lims[j + 1]]``, sorted by distance.  The precision of a ball
# (relevant results over results; an empty ball counts as 0) averaged over
# the queries is :func:`flexcmh_fast.metrics.precision_at_radius`.
radii = np.arange(0, 13)
mean_results, precision = [], []
for radius in radii:
    lims, distances, ids = index.range_search(queries, int(radius))
    counts = np.diff(lims)
    owner = np.repeat(np.arange(len(queries)), counts)  # query of each result
    hits = np.bincount(
        owner,
        weights=db_labels[ids] == query_labels[owner],
        minlength=len(queries),
    )
    per_query = np.where(counts > 0, hits / np.maximum(counts, 1), 0.0)
    mean_results.append(counts.mean())
    precision.append(per_query.mean())
    reference = fc.metrics.precision_at_radius(
        queries,
        database,
        query_labels,
        db_labels,
        n_bits=n_bits,
        radius=int(radius),
    )
    assert np.isclose(per_query.mean(), reference)
print("mean results per query:", np.round(mean_results, 1))
print("precision within the radius:", np.round(precision, 3))

# %%
# The figure
# ----------
# Left: the average query's histogram; relevant codes sit at small
# distances.  Right: what a radius search returns as the radius grows.
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
distance = np.arange(n_bits + 1)
left.bar(
    distance, all_counts.mean(axis=0), color="0.75", label="all database codes"
)
left.bar(
    distance,
    relevant_counts.mean(axis=0),
    color="C0",
    label="relevant (same class)",
)
left.set_xlabel("Hamming distance to the query")
left.set_ylabel("codes per query (mean)")
left.set_title("distance_histogram")
left.legend()

right.plot(radii, mean_results, marker="o", color="C1")
right.set_yscale("log")
right.set_xlabel("radius")
right.set_ylabel("results per query (mean)", color="C1")
twin = right.twinx()
twin.plot(radii, precision, marker="s", color="C0")
twin.set_ylim(0, 1)
twin.set_ylabel("precision within the radius", color="C0")
right.set_title("range_search")
fig.suptitle(
    f"{n_bits}-bit codes: {len(queries)} image queries, {len(database)} texts"
)
plt.show()
