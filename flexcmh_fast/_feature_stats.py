"""One pass over a feature matrix: the row and column statistics that the
preprocessing is fitted from and applied with.

Dense matrices (float32 or float64, any memory layout) and CSR matrices are
read as they are, never copied.  Every sum is float64, added in row order
within a chunk of rows and chunk by chunk afterwards; the number of chunks
depends on the shape only, so the statistics do not depend on the thread
count.  Row sums are added in one fixed order (no fastmath), so the row
statistics of a row do not depend on the rows around it: a query encoded
alone gets the factors its row got in training (:func:`row_sums`).
"""
import numba
import numpy as np
import scipy.sparse as sp

from ._threads import PRANGE_ONLY, fixed_blocks

# Chunks of rows whose column sums are kept apart (at most), and the float64
# memory those partial sums may take together: wide sums (X^T H with many
# clusters) take fewer chunks, since zeroing and merging the partial sums
# costs more than the pass once they outgrow the cache.
MAX_CHUNKS = 64
PARTIAL_SUM_BYTES = 1 << 24


def row_chunks(n, width=1):
    """Chunks of rows of a pass over ``n`` rows whose partial sums have
    ``width`` float64 entries: a function of the shape only, so results do
    not depend on the thread count."""
    by_memory = max(1, PARTIAL_SUM_BYTES // (8 * max(int(width), 1)))
    return int(max(1, min(MAX_CHUNKS, n // 256, by_memory)))


@numba.njit(cache=True, nogil=True)
def _merge_rows(parts):
    """Sum of the rows of ``parts`` (chunk partial sums), in chunk order."""
    out = np.zeros(parts.shape[1])
    for t in range(parts.shape[0]):
        for j in range(parts.shape[1]):
            out[j] += parts[t, j]
    return out


@numba.njit(cache=True, nogil=True)
def _dense_row_sums(X, i):
    """Sum and sum of squares of row i of dense X (float64), in a fixed
    order: eight running sums over the columns j = r (mod 8), added pairwise,
    then the columns past the last multiple of 8.  The same value wherever
    the row is read (a training pass or a query alone); independent lanes,
    so the compiler vectorises it without re-association."""
    d = X.shape[1]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    q0 = q1 = q2 = q3 = q4 = q5 = q6 = q7 = 0.0
    body = d - d % 8
    for j in range(0, body, 8):
        v0 = np.float64(X[i, j])
        v1 = np.float64(X[i, j + 1])
        v2 = np.float64(X[i, j + 2])
        v3 = np.float64(X[i, j + 3])
        v4 = np.float64(X[i, j + 4])
        v5 = np.float64(X[i, j + 5])
        v6 = np.float64(X[i, j + 6])
        v7 = np.float64(X[i, j + 7])
        s0 += v0
        s1 += v1
        s2 += v2
        s3 += v3
        s4 += v4
        s5 += v5
        s6 += v6
        s7 += v7
        q0 += v0 * v0
        q1 += v1 * v1
        q2 += v2 * v2
        q3 += v3 * v3
        q4 += v4 * v4
        q5 += v5 * v5
        q6 += v6 * v6
        q7 += v7 * v7
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    q = ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
    for j in range(body, d):
        v = np.float64(X[i, j])
        s += v
        q += v * v
    return s, q


@numba.njit(cache=True, parallel=PRANGE_ONLY)
def dense_row_sums(X):
    """Per row of dense X the sum and the sum of squares (float64), as
    :func:`dense_stats` gives them."""
    n = X.shape[0]
    row_sum = np.empty(n)
    row_sumsq = np.empty(n)
    for i in numba.prange(n):
        row_sum[i], row_sumsq[i] = _dense_row_sums(X, i)
    return row_sum, row_sumsq


@numba.njit(cache=True, parallel=PRANGE_ONLY)
def dense_stats(X, n_chunks):
    """Per row the sum and the sum of squares, per column the sum and the
    sum of squares, the zero entries and the smallest entry of dense ``X``
    (finite values; validated before)."""
    n, d = X.shape
    n_chunks, step = fixed_blocks(n, n_chunks)
    row_sum = np.empty(n)
    row_sumsq = np.empty(n)
    col_sum = np.zeros((n_chunks, d))
    col_sumsq = np.zeros((n_chunks, d))
    col_min = np.full((n_chunks, d), np.inf)
    zeros = np.zeros(n_chunks, dtype=np.int64)
    for t in numba.prange(n_chunks):
        z = 0
        for i in range(t * step, min(n, (t + 1) * step)):
            row_sum[i], row_sumsq[i] = _dense_row_sums(X, i)
            for j in range(d):
                v = np.float64(X[i, j])
                col_sum[t, j] += v
                col_sumsq[t, j] += v * v
                col_min[t, j] = min(col_min[t, j], v)
                z += v == 0.0
        zeros[t] = z
    low = np.inf
    for t in range(n_chunks):
        for j in range(d):
            low = min(low, col_min[t, j])
    return (row_sum, row_sumsq, _merge_rows(col_sum), _merge_rows(col_sumsq), zeros.sum(),
            low)


@numba.njit(cache=True, parallel=PRANGE_ONLY)
def csr_stats(indptr, indices, data, d, n_chunks):
    """:func:`dense_stats` of CSR rows (implicit zeros counted)."""
    n = indptr.shape[0] - 1
    n_chunks, step = fixed_blocks(n, n_chunks)
    row_sum = np.zeros(n)
    row_sumsq = np.zeros(n)
    col_sum = np.zeros((n_chunks, d))
    col_sumsq = np.zeros((n_chunks, d))
    zeros = np.zeros(n_chunks, dtype=np.int64)
    low = np.full(n_chunks, np.inf)
    for t in numba.prange(n_chunks):
        for i in range(t * step, min(n, (t + 1) * step)):
            s = 0.0
            q = 0.0
            implicit = d - (indptr[i + 1] - indptr[i])
            zeros[t] += implicit
            if implicit > 0 and low[t] > 0.0:
                low[t] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                v = np.float64(data[p])
                j = indices[p]
                s += v
                q += v * v
                col_sum[t, j] += v
                col_sumsq[t, j] += v * v
                if v == 0.0:
                    zeros[t] += 1
                if v < low[t]:
                    low[t] = v
            row_sum[i] = s
            row_sumsq[i] = q
    return (row_sum, row_sumsq, _merge_rows(col_sum), _merge_rows(col_sumsq), zeros.sum(),
            low.min())


def row_sums(X):
    """Per row of ``X`` (dense or CSR) the sum and the sum of squares
    (float64), as :func:`feature_stats` gives them for the same row."""
    if sp.issparse(X):
        return feature_stats(X)[0]
    return dense_row_sums(X)


def feature_stats(X):
    """Row and column statistics of ``X`` (dense or CSR) in one pass.

    Returns
    -------
    rows : tuple of ndarray
        ``(row_sum, row_sumsq)``, float64 (n,).
    columns : dict
        ``n``, ``sum`` and ``sumsq`` (float64 (d,)), ``zeros``, ``min``,
        ``sparse``: what the preprocessing is fitted from (sums over rows, so
        row blocks add up, :func:`merge_column_stats`).
    """
    n, d = X.shape
    chunks = row_chunks(n, 2 * d)
    if sp.issparse(X):
        out = csr_stats(X.indptr, X.indices, X.data, d, chunks)
    else:
        out = dense_stats(X, chunks)
    row_sum, row_sumsq, col_sum, col_sumsq, zeros, low = out
    columns = {"n": n, "sum": col_sum, "sumsq": col_sumsq, "zeros": int(zeros),
               "min": float(low) if n else 0.0, "sparse": sp.issparse(X)}
    return (row_sum, row_sumsq), columns


def merge_column_stats(parts):
    """The column statistics of several row blocks of one modality."""
    return {"n": sum(p["n"] for p in parts), "sum": np.add.reduce([p["sum"] for p in parts]),
            "sumsq": np.add.reduce([p["sumsq"] for p in parts]),
            "zeros": sum(p["zeros"] for p in parts), "min": min(p["min"] for p in parts),
            "sparse": any(p["sparse"] for p in parts)}
