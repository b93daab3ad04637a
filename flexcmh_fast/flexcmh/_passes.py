"""Numba kernels that stream a modality's feature matrix.

These are the only kernels of the trainer that read the data themselves
(the rest work on ``n x k`` summaries, :mod:`._kernels`).  Each reads the
matrix once, as it is given: dense float32 or float64 in any memory layout,
or the ``indptr`` / ``indices`` / ``data`` arrays of a CSR matrix.  The
row-wise preprocessing is applied as the values are read (the square root
of ``"hellinger"`` and a factor per row), never by materialising a
transformed copy (:class:`flexcmh_fast.flexcmh._features.Features`).

Sums over rows are taken per chunk of rows and the chunks' partial sums are
added serially afterwards.  The caller passes the number of chunks, a
function of the shape only (:func:`flexcmh_fast._feature_stats.row_chunks`),
never the thread count, so results do not depend on ``n_threads``.  Partial
sums are float64; dense products accumulate in the data's dtype within a
row (or a few rows) and in float64 across rows (:func:`dense_xth`).

``fastmath`` is limited to re-association / contraction (no ``nnan`` /
``ninf``: the statistics must see NaN and inf as they are).

Plain numpy references of every kernel live in ``tests/reference_flexcmh.py``.
"""
import numpy as np
from numba import njit, prange

from .._threads import PRANGE_ONLY, fixed_blocks

_FM = {"contract", "reassoc", "arcp"}
# Rows advanced together by the dense product kernels: each loaded centroid
# (or indicator) value is used for this many rows.
ROW_TILE = 4
# Rows whose float32 partial products are added up before they are added
# into the float64 sums (dense_root_xth).
FLUSH_ROWS = 64


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def dense_xz(X, root, scale, Zt, out):
    """``out[i, c] = scale[i] * sum_j f(X[i, j]) * Zt[c, j]`` with ``f = sqrt``
    when ``root`` (non-negative ``X``: Hellinger rows) else the identity (an
    empty ``scale``: no factor): dense rows times the centroids, ``Zt``
    (k, d) C-contiguous in the data's dtype, written into ``out``.

    Rows go in tiles of :data:`ROW_TILE`, copied (square roots taken once)
    into a small buffer; every centroid value loaded is used for all of
    them."""
    n, d = X.shape
    k = Zt.shape[0]
    scaled = scale.shape[0] > 0
    n_tiles = (n + ROW_TILE - 1) // ROW_TILE
    n_blocks, per = fixed_blocks(n_tiles, 256)
    for b in prange(n_blocks):
        buf = np.zeros((ROW_TILE, d), dtype=Zt.dtype)
        zero = buf[0, 0]
        for tile in range(b * per, min(n_tiles, (b + 1) * per)):
            i0 = tile * ROW_TILE
            rows = min(ROW_TILE, n - i0)
            _load_rows(X, i0, rows, root, buf)
            for c in range(k):
                s0 = zero
                s1 = zero
                s2 = zero
                s3 = zero
                for j in range(d):
                    z = Zt[c, j]
                    s0 += buf[0, j] * z
                    s1 += buf[1, j] * z
                    s2 += buf[2, j] * z
                    s3 += buf[3, j] * z
                sums = (s0, s1, s2, s3)
                for r in range(rows):
                    out[i0 + r, c] = sums[r] * scale[i0 + r] if scaled else sums[r]


@njit(cache=True, nogil=True, fastmath=_FM)
def _load_rows(X, i0, rows, root, buf):
    """Rows ``i0 .. i0 + rows`` of X (square roots when ``root``) into
    ``buf``, the rest of the tile zero."""
    d = X.shape[1]
    for r in range(rows):
        if root:
            for j in range(d):
                buf[r, j] = np.sqrt(X[i0 + r, j])
        else:
            for j in range(d):
                buf[r, j] = X[i0 + r, j]
    for r in range(rows, buf.shape[0]):
        for j in range(d):
            buf[r, j] = 0.0


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def dense_xth(X, root, W, n_chunks):
    """``sum_i f(X[i])^T W[i]`` (d, k) float64 (``f``: see :func:`dense_xz`;
    ``W``: the indicators times the row factors, in the data's dtype).

    Within a chunk, products of :data:`FLUSH_ROWS` rows are summed in the
    data's dtype and then added to the chunk's float64 sums."""
    n, d = X.shape
    n_chunks, step = fixed_blocks(n, n_chunks)
    k = W.shape[1]
    parts = np.zeros((n_chunks, k, d))
    for t in prange(n_chunks):
        acc = np.zeros((k, d), dtype=W.dtype)
        buf = np.zeros((ROW_TILE, d), dtype=W.dtype)
        w = np.zeros((ROW_TILE, k), dtype=W.dtype)
        stop = min(n, (t + 1) * step)
        since_flush = 0
        for i0 in range(t * step, stop, ROW_TILE):
            rows = min(ROW_TILE, stop - i0)
            _load_rows(X, i0, rows, root, buf)
            for r in range(ROW_TILE):
                for c in range(k):
                    w[r, c] = W[i0 + r, c] if r < rows else 0.0
            for c in range(k):
                w0 = w[0, c]
                w1 = w[1, c]
                w2 = w[2, c]
                w3 = w[3, c]
                for j in range(d):
                    acc[c, j] += (w0 * buf[0, j] + w1 * buf[1, j]) + (w2 * buf[2, j]
                                                                      + w3 * buf[3, j])
            since_flush += rows
            if since_flush >= FLUSH_ROWS or i0 + ROW_TILE >= stop:
                since_flush = 0
                for c in range(k):
                    for j in range(d):
                        parts[t, c, j] += acc[c, j]
                        acc[c, j] = 0.0
    out = np.zeros((d, k))
    for t in range(n_chunks):
        for c in range(k):
            for j in range(d):
                out[j, c] += parts[t, c, j]
    return out


@njit(cache=True, nogil=True)
def dense_root_block(X, start, stop, out):
    """``out[: stop - start] = sqrt(X[start:stop])`` on the calling thread,
    without the GIL: a block of Hellinger rows for a BLAS product, several
    blocks at once on Python threads."""
    for i in range(start, stop):
        for j in range(X.shape[1]):
            out[i - start, j] = np.sqrt(X[i, j])


@njit(cache=True, parallel=PRANGE_ONLY)
def csr_xz(indptr, indices, data, root, scale, Z, out):
    """``out[i] = sum_p scale[i] * f(data[p]) * Z[indices[p]]`` over row i's
    stored entries, in their order, with ``f = sqrt`` when ``root`` else the
    identity (an empty ``scale``: no factor): CSR rows, preprocessed as they
    are read, times the centroids, rows in parallel, written into ``out``.

    Each value is formed as a preprocessed CSR copy would hold it
    (``scale[i] * f(v)``) and the products are added in the order of the
    stored entries, as scipy does (no fastmath): the result is scipy's
    product of that copy, without the copy, into a buffer the caller keeps
    (fresh ``(n, k)`` arrays every iteration cost more in page faults than
    the product, ``docs/flexcmh.md``, "Training speed")."""
    n, k = out.shape
    scaled = scale.shape[0] > 0
    for i in prange(n):
        for c in range(k):
            out[i, c] = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            if root:
                v = np.sqrt(v)
            if scaled:
                v = scale[i] * v
            for c in range(k):
                out[i, c] += v * Z[j, c]


@njit(cache=True, parallel=PRANGE_ONLY)
def csr_xth(indptr, indices, data, root, W, d, n_chunks):
    """``sum_i f(x_i)^T W[i]`` (d, k) float64 for CSR rows ``x_i`` (``f``:
    see :func:`csr_xz`; ``W``: the indicators times the row factors)."""
    n = indptr.shape[0] - 1
    n_chunks, step = fixed_blocks(n, n_chunks)
    k = W.shape[1]
    parts = np.zeros((n_chunks, d, k))
    for t in prange(n_chunks):
        for i in range(t * step, min(n, (t + 1) * step)):
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                v = np.float64(data[p])
                if root:
                    v = np.sqrt(v)
                for c in range(k):
                    parts[t, j, c] += v * W[i, c]
    out = np.zeros((d, k))
    for t in range(n_chunks):
        for j in range(d):
            for c in range(k):
                out[j, c] += parts[t, j, c]
    return out


@njit(cache=True, parallel=PRANGE_ONLY)
def dense_centred_sq_norms(X, mean, inv_scale):
    """``sum_j ((X[i, j] - mean[j]) * inv_scale[j])^2`` per row (float64):
    the squared norms of ``"standard"`` rows."""
    n, d = X.shape
    out = np.empty(n)
    for i in prange(n):
        s = 0.0
        for j in range(d):
            v = (np.float64(X[i, j]) - mean[j]) * inv_scale[j]
            s += v * v
        out[i] = s
    return out
