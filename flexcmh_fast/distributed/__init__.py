"""Scale-out on a Dask cluster: distributed training, encoding and sharded
exact search.

This module needs the optional ``dask`` extra
(``pip install "flexcmh_fast[dask]"``: ``dask[array]`` and ``distributed``);
importing it without Dask raises an ``ImportError`` that says so.  It is not
part of ``from flexcmh_fast import *``; import it by name.

* :func:`train` fits FlexCMH on row-partitioned dask arrays: the samples
  stay on the workers and every iteration exchanges only per-cluster and
  ``d x k`` summaries with the client (``docs/scaling_out.md``).
* :func:`encode` hashes a row-partitioned :class:`dask.array.Array` (dense
  NumPy or scipy.sparse chunks) block by block on the workers and returns a
  lazy dask array of codes: nothing is gathered on the client.
* :class:`ShardedHammingIndex` (from :mod:`flexcmh_fast.search`) builds one
  :class:`~flexcmh_fast.HammingIndex` per partition of a dask array of
  packed codes and answers exact queries over all of them; results are
  identical to a single ``HammingIndex`` over the concatenated codes.

Modules: ``_train`` (:func:`train`: the FlexCMH settings and the driver),
``_backend`` (the Dask backend of Algorithm 1), ``_encode`` (:func:`encode`).
"""
from .._dask import require_dask

require_dask("flexcmh_fast.distributed")

from ..search import ShardedHammingIndex  # noqa: E402
from ._encode import encode  # noqa: E402

__all__ = ["train", "encode", "ShardedHammingIndex"]


def __getattr__(name):
    # The trainer pulls in Numba and the FlexCMH kernels; encoding and search
    # (and every worker that only runs them) do without.
    if name == "train":
        from ._train import train
        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
