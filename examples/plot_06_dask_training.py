"""
Training on a Dask cluster
==========================

:func:`flexcmh_fast.distributed.train` fits FlexCMH on row-partitioned dask
arrays.  The samples stay on the workers; every iteration exchanges only
per-cluster summaries with the client, so the traffic does not grow with the
number of samples.  This example starts a local cluster, trains on four
partitions of weakly paired synthetic data, compares the result with the fit
on one machine, and plots the objective and the bytes exchanged per
iteration.

It needs the ``dask`` extra (``pip install "flexcmh_fast[dask]"``).  On a
real cluster, replace the ``LocalCluster`` by the address of its scheduler.
"""

# %%
# Data as row-partitioned dask arrays
# -----------------------------------
# Partition ``p`` is row block ``p`` of every modality.  Known pairs join rows
# of the same partition: here the data are paired row by row and half of the
# rows keep their known partner.
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from dask.distributed import Client, LocalCluster

import flexcmh_fast as fc
import flexcmh_fast.distributed as fcd
from flexcmh_fast.scenarios import train_test_split

data = fc.datasets.make_multimodal(
    n_samples=4000, kinds=("dense", "dense"), random_state=0
)
labels = np.asarray(data.labels)
train, test = train_test_split(len(labels), test_size=0.25, random_state=0)
X_train = [X[train] for X in data.modalities]


def weakly_paired(n_rows, n_partitions=4):
    """The first ``n_rows`` training rows as dask arrays of ``n_partitions``
    row blocks, and known pairs (row in modality 0, row in modality 1) for
    half of the rows."""
    known = np.random.default_rng(0).permutation(n_rows)[: n_rows // 2]
    pairs = np.column_stack([np.sort(known), np.sort(known)])
    rows_per_block = -(-n_rows // n_partitions)
    blocks = [
        da.from_array(X[:n_rows], chunks=(rows_per_block, -1)) for X in X_train
    ]
    return blocks, pairs


X_dask, pairs = weakly_paired(len(train))
print(X_dask[0])


# %%
# Train on the cluster and on one machine
# ---------------------------------------
# A ``LocalCluster`` of two single-threaded workers in this process
# (``processes=False``) keeps the example light; with ``processes=True`` the
# workers are separate processes, as on a real cluster.  The callback sees
# every iteration's objective and the pickled bytes sent to and received from
# the workers.  A second fit on half of the rows, stopped by its callback
# after 10 iterations, shows that the traffic does not depend on the number
# of samples.
def recorder(log, stop_after=None):
    """A callback that appends (objective, bytes) to ``log``; returning True
    stops the fit after ``stop_after`` iterations."""

    def callback(iteration, state):
        sent, received = state["bytes_sent"], state["bytes_received"]
        log.append((state["objective"], sent + received))
        return stop_after is not None and iteration >= stop_after

    return callback


settings = {"n_bits": 32, "random_state": 0}
logs = {len(train): [], len(train) // 2: []}
# ``dashboard_address=":0"``: any free port, so that a dashboard already
# running elsewhere does not collide with this one.
with (
    LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=":0",
    ) as cluster,
    Client(cluster) as client,
):
    dask_model = fcd.train(
        X_dask,
        pairs,
        client=client,
        callback=recorder(logs[len(train)]),
        **settings,
    )
    # The training codes stay on the workers as dask arrays until computed.
    n_train_codes = dask_model.train_codes_[1].shape[0]
    half_blocks, half_pairs = weakly_paired(len(train) // 2)
    fcd.train(
        half_blocks,
        half_pairs,
        client=client,
        callback=recorder(logs[len(train) // 2], stop_after=10),
        **settings,
    )
local_log = []
local_model = fc.FlexCMH(callback=recorder(local_log), **settings).fit(
    X_train, pairs
)
print(
    f"Dask: {dask_model.n_iter_} iterations, {n_train_codes} training "
    f"codes per modality; one machine: {local_model.n_iter_} iterations"
)

# %%
# The models encode like any other: compare the retrieval quality of the
# two fits on the test rows (texts of the training rows as the database).
for name, model in (("Dask", dask_model), ("one machine", local_model)):
    queries = model.encode(data.modalities[0][test], modality=0)
    database = model.encode(X_train[1], modality=1)
    score = fc.metrics.mean_average_precision(
        queries, database, labels[test], labels[train], n_bits=32
    )
    print(f"{name:>12}: Image->Text MAP {score:.3f}")

# %%
# Objective and traffic per iteration
# -----------------------------------
# The rows without a known partner are paired within their partition on
# Dask and over the whole training set on one machine, so the two fits
# follow close but different paths.
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for log, style, name in (
    (local_log, "-", "one machine"),
    (logs[len(train)], "--", "Dask, 4 partitions"),
):
    objective = [entry[0] for entry in log]
    left.plot(range(1, len(log) + 1), objective, style, label=name)
left.set_xlabel("iteration")
left.set_ylabel("objective")
left.legend()
left.set_title(f"training objective, {len(train):,} samples")
for (n_rows, log), marker in zip(logs.items(), "os", strict=True):
    kilobytes = [entry[1] / 1e3 for entry in log]
    right.plot(
        range(1, len(log) + 1),
        kilobytes,
        marker=marker,
        label=f"{n_rows:,} samples",
    )
right.set_ylim(bottom=0)
right.set_xlabel("iteration")
right.set_ylabel("kB between client and workers")
right.set_title("Dask traffic per iteration")
right.legend(loc="lower right")
plt.show()
