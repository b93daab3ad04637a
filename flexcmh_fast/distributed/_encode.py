"""Distributed encoding: :func:`flexcmh_fast.distributed.encode`."""
import math

import dask
import dask.array as da
import numpy as np

from .._base import HashingEstimator
from .._validation import _describe, check_bool, check_int
from ..search import code_bytes


def _encode_block(block, model, modality, packed):
    return model.encode(block, modality, packed=packed)


def encode(model, X, modality, packed=True):
    """Hash a row-partitioned dask array block by block on the workers.

    Parameters
    ----------
    model : HashingEstimator
        A trained model (e.g. from :func:`flexcmh_fast.train`).  It is put in
        the task graph once and shipped to each worker that needs it.
    X : dask.array.Array of shape (n_samples, n_features)
        Samples of modality ``modality``.  Chunks may be dense NumPy arrays
        or scipy.sparse matrices (sparse chunks are never densified); chunk
        sizes along the rows may be unknown.  Several column chunks are
        joined first (each task needs whole rows).
    modality : int
        Index of the modality ``X`` belongs to (order of ``train``).
    packed : bool, default=True
        ``True``: packed uint8 codes (n_samples, ceil(n_bits / 8)).
        ``False``: ±1 int8 codes (n_samples, n_bits).

    Returns
    -------
    dask.array.Array
        Lazy codes with the row chunks of ``X``; block ``i`` equals
        ``model.encode(X.blocks[i], modality, packed)``.  Nothing is computed
        until you call ``.compute()``, ``.persist()`` or build a
        :class:`~flexcmh_fast.search.ShardedHammingIndex` from it.

    Raises
    ------
    TypeError
        ``model`` is not a trained model, ``X`` is not a dask array or not
        numeric.
    ValueError
        ``X`` is not 2-D, has the wrong number of features or ``modality``
        is out of range.  Bad values inside a block (NaN, inf) raise the same
        ``ValueError`` as ``model.encode`` when the block is computed.
    """
    if not isinstance(model, HashingEstimator):
        raise TypeError(
            "'model' must be a trained flexcmh_fast model (e.g. from "
            f"flexcmh_fast.train). Got an object of type {type(model).__name__} instead."
        )
    model._check_fitted()
    modality = check_int(modality, "modality", 0, model.n_modalities_ - 1)
    packed = check_bool(packed, "packed")
    if not isinstance(X, da.Array):
        raise TypeError(
            "'X' must be a dask.array.Array (row-partitioned); for data in memory "
            f"call model.encode(X, modality). Got {_describe(X)} of type "
            f"{type(X).__name__} instead."
        )
    if X.ndim != 2:
        raise ValueError(
            f"'X' must be 2-D (n_samples, n_features). Got a dask array of shape "
            f"{X.shape} instead."
        )
    if X.dtype.kind not in "biuf":
        raise TypeError(f"'X' must hold real numbers. Got dtype {X.dtype} instead.")
    n_features = model.n_features_[modality]
    if not math.isnan(X.shape[1]) and X.shape[1] != n_features:
        raise ValueError(
            f"'X' must have {n_features} features (columns), as in training. "
            f"Got shape {X.shape} instead."
        )
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    width = code_bytes(model.n_bits_) if packed else model.n_bits_
    dtype = np.dtype(np.uint8 if packed else np.int8)
    # One graph node holds the model, so it is serialised once, not per block.
    model_node = dask.delayed(model, pure=True)
    return X.map_blocks(
        _encode_block, model_node, modality, packed,
        dtype=dtype, chunks=(X.chunks[0], (width,)),
        meta=np.empty((0, width), dtype=dtype),
        token="flexcmh-encode",
    )
