"""RBF kernel features against anchor points, shared by CSMH's hash
functions and FlexCMH's kernel encoder.

Dense rows use BLAS for the dot products; CSR rows use a fused Numba kernel
and are never densified.  Features are produced in blocks of rows so the
temporaries stay bounded whatever the number of samples.
"""
import numba
import numpy as np
import scipy.sparse as sp

from ._threads import PRANGE_ONLY, row_spans

# Rows of kernel features computed at once (block x n_anchors temporaries).
BLOCK_ROWS = 8192


@numba.njit(cache=True, nogil=True)
def _rbf_row_from_dots(dots, x_sq, a_sq, inv_two_sigma_sq, out, i):
    """Row i: out[i, j] = exp(-max(|x_i|^2 + |a_j|^2 - 2 x_i.a_j, 0) / (2 sigma^2)).

    Distances are clipped at 0 because the expansion can round slightly
    negative for near-identical vectors.
    """
    xi = x_sq[i]
    for j in range(dots.shape[1]):
        d = xi + a_sq[j] - 2.0 * dots[i, j]
        if d < 0.0:
            d = 0.0
        out[i, j] = np.exp(-d * inv_two_sigma_sq)


@numba.njit(parallel=PRANGE_ONLY, cache=True)
def _rbf_from_dots(dots, x_sq, a_sq, inv_two_sigma_sq, out):
    """RBF features from the dot products, rows over the threads."""
    for i in numba.prange(dots.shape[0]):
        _rbf_row_from_dots(dots, x_sq, a_sq, inv_two_sigma_sq, out, i)


@numba.njit(cache=True, nogil=True)
def _rbf_from_dots_serial(dots, x_sq, a_sq, inv_two_sigma_sq, out):
    """:func:`_rbf_from_dots` on the calling thread, without the GIL (for
    callers that run several of them on their own Python threads: Numba's
    parallel kernels must not be launched from several threads at once)."""
    for i in range(dots.shape[0]):
        _rbf_row_from_dots(dots, x_sq, a_sq, inv_two_sigma_sq, out, i)


@numba.njit(cache=True, nogil=True)
def _rbf_csr_row(indptr, indices, data, anchors_t, a_sq, inv_two_sigma_sq, out, i):
    """Row i of CSR rows against dense anchors, fused: the dot products
    sum(v * anchors_t[j, :]) over the row's non-zeros (j, v) (contiguous
    anchor rows: vectorised), then the exp in place."""
    a = anchors_t.shape[1]
    x_sq = 0.0
    for j in range(a):
        out[i, j] = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        v = data[p]
        x_sq += v * v
        col = indices[p]
        for j in range(a):
            out[i, j] += v * anchors_t[col, j]
    for j in range(a):
        d = x_sq + a_sq[j] - 2.0 * out[i, j]
        if d < 0.0:
            d = 0.0
        out[i, j] = np.exp(-d * inv_two_sigma_sq)


@numba.njit(parallel=PRANGE_ONLY, cache=True)
def _rbf_csr(indptr, indices, data, anchors_t, a_sq, inv_two_sigma_sq, out):
    """RBF features of CSR rows, rows over the threads (independent rows:
    no shared writes)."""
    for i in numba.prange(indptr.shape[0] - 1):
        _rbf_csr_row(indptr, indices, data, anchors_t, a_sq, inv_two_sigma_sq, out, i)


@numba.njit(cache=True, nogil=True)
def _rbf_csr_serial(indptr, indices, data, anchors_t, a_sq, inv_two_sigma_sq, out):
    """:func:`_rbf_csr` on the calling thread, without the GIL."""
    for i in range(indptr.shape[0] - 1):
        _rbf_csr_row(indptr, indices, data, anchors_t, a_sq, inv_two_sigma_sq, out, i)


@numba.njit(cache=True, nogil=True)
def _sq_norms_f64(X, out):
    """Squared norms of the rows of a float32 matrix, added in float64."""
    for i in range(X.shape[0]):
        s = 0.0
        for j in range(X.shape[1]):
            v = np.float64(X[i, j])
            s += v * v
        out[i] = s
    return out


def row_sq_norms(X):
    """Squared L2 norm of every row of a dense or CSR matrix (float64, with
    no float64 copy of float32 rows)."""
    if sp.issparse(X):
        return np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    if X.dtype == np.float64:
        return np.einsum("ij,ij->i", X, X)
    return _sq_norms_f64(X, np.empty(X.shape[0]))


def kernel_block(Xb, anchors, a_sq, sigma, out, anchors_t=None, parallel=True):
    """RBF features of the rows ``Xb`` (dense or CSR, in ``out``'s dtype)
    into ``out``.

    Dense rows: dot products by BLAS.  CSR rows: a fused Numba kernel (scipy's
    sparse x dense product is single-threaded); ``anchors_t`` is the
    C-contiguous transpose of the anchors, computed once by the caller.
    ``parallel=False``: the Numba kernels run on the calling thread only (the
    same arithmetic, so the same features), for callers that compute several
    blocks at once on their own threads.  Distances and the exponent are
    float64 whatever the features' dtype.
    """
    inv = 1.0 / (2.0 * sigma * sigma)
    if sp.issparse(Xb):
        if anchors_t is None:
            anchors_t = np.ascontiguousarray(anchors.T)
        kernel = _rbf_csr if parallel else _rbf_csr_serial
        kernel(Xb.indptr, Xb.indices, Xb.data, anchors_t, a_sq, inv, out)
        return out
    np.matmul(Xb, anchors.T, out=out)
    kernel = _rbf_from_dots if parallel else _rbf_from_dots_serial
    kernel(out, row_sq_norms(Xb), a_sq, inv, out)
    return out


def rbf_of_blocks(blocks, anchors, sigma, parallel=True):
    """Yield ``(start, stop, Phi)``: RBF features against ``anchors`` of
    every block ``(start, stop, rows)`` of ``blocks`` (rows dense or CSR, in
    the anchors' dtype), in a buffer that is reused: consume each block
    before asking for the next.  ``parallel``: see :func:`kernel_block`."""
    a_sq = row_sq_norms(anchors)
    anchors_t = None
    buf = np.empty((0, anchors.shape[0]), dtype=anchors.dtype)
    for s, e, Xb in blocks:
        if buf.shape[0] < e - s:
            buf = np.empty((e - s, anchors.shape[0]), dtype=anchors.dtype)
        if anchors_t is None and sp.issparse(Xb):
            anchors_t = np.ascontiguousarray(anchors.T)
        Phi = kernel_block(Xb, anchors, a_sq, sigma, buf[: e - s], anchors_t, parallel)
        # Let the rows go before the next block is made: one block at a time.
        del Xb
        yield s, e, Phi


def row_blocks(X, block_rows):
    """``(start, stop, X[start:stop])`` for the rows of ``X``, ``block_rows``
    at a time."""
    for s, e in row_spans(X.shape[0], block_rows):
        yield s, e, X[s:e]


def rbf_blocks(X, anchors, sigma, block_rows=BLOCK_ROWS, parallel=True):
    """Yield ``(start, stop, Phi)``: RBF features of ``X[start:stop]`` against
    ``anchors``, ``block_rows`` rows at a time (:func:`rbf_of_blocks`)."""
    return rbf_of_blocks(row_blocks(X, block_rows), anchors, sigma, parallel)


def mean_anchor_distance(X, anchors):
    """Mean Euclidean distance between the rows of ``X`` and the anchors
    (the scale of the RBF width heuristics)."""
    a_sq = row_sq_norms(anchors)
    d2 = row_sq_norms(X)[:, None] + a_sq[None, :] - 2.0 * np.asarray(X @ anchors.T,
                                                                       dtype=np.float64)
    return float(np.sqrt(np.maximum(d2, 0.0)).mean())
