"""The start of FlexCMH (Eq. 3): k-means clusters seed SemiNMF, and the
ridge least-squares centroid update shared by the start and the loop.

k-means runs on a sample of preprocessed rows (dense or CSR), materialised
by :meth:`flexcmh_fast.flexcmh._features.Features.rows`; every row is then
assigned to its nearest centre through the streaming product of
:class:`~flexcmh_fast.flexcmh._features.Features`.
"""
from contextlib import nullcontext

import numpy as np
import scipy.sparse as sp

from .._threads import LARGE_PRODUCT, dense_product_threads
from . import _tuning as T
from ._kernels import cluster_sums_csr, cluster_sums_dense, nearest_from_products
from ._passes import csr_xz

_NO_FACTORS = np.empty(0)


def xz(X, Z, out=None, large=LARGE_PRODUCT):
    """``X @ Z`` for a materialised matrix (a sample or a block of rows,
    dense or CSR, never densified), in ``X``'s dtype, written into ``out``
    when given.  ``large``: multiply-adds from which a dense product runs
    on every thread (:func:`flexcmh_fast._threads.dense_product_threads`)."""
    Z = np.ascontiguousarray(Z, dtype=X.dtype)
    if out is None:
        out = np.empty((X.shape[0], Z.shape[1]), dtype=X.dtype)
    if sp.issparse(X):
        X = X.tocsr()
        csr_xz(X.indptr, X.indices, X.data, False, _NO_FACTORS, Z, out)
        return out
    context = dense_product_threads(X.shape[0] * X.shape[1] * Z.shape[1], large=large) \
        if X.shape[0] else nullcontext()
    with context:
        np.matmul(X, Z, out=out)
    return out


def z_ridge(G):
    """The ridge weight of the Z step: ``Z_RIDGE`` times the mean diagonal of
    ``G = H^T H``."""
    return T.Z_RIDGE * max(np.trace(G) / G.shape[0], 1e-300)


def z_from_stats(XtH, G, eps):
    """Ridge least-squares centroids ``Z = X^T H (H^T H + eps I)^-1`` from the
    sufficient statistics ``X^T H`` (d, k) and ``G = H^T H`` (k, k).

    The minimiser of the reconstruction term of Eq. 6 plus ``eps ||Z||^2``.
    Without the ridge the pair term drives the columns of H towards
    collinearity and Z grows without bound; it also keeps Z defined when a
    cluster is empty.  ``eps`` follows ``H^T H`` (:func:`z_ridge`): a weight
    fixed at the start let the pair term smooth the indicators as the fit
    ran on, and retrieval got worse (docs/flexcmh.md, "Convergence")."""
    k = G.shape[0]
    return np.linalg.solve(G + eps * np.eye(k), XtH.T).T.copy()


def gram(H):
    """``H^T H`` (k, k), accumulated in float64: float32 rows are cast a
    block at a time (no float64 copy of H)."""
    if H.dtype == np.float64:
        return H.T @ H
    rows = max(1, T.GRAM_BLOCK_ROWS)
    G = np.zeros((H.shape[1], H.shape[1]))
    for s in range(0, H.shape[0], rows):
        block = H[s:s + rows].astype(np.float64)
        G += block.T @ block
    return G


def start_indicators(assign, k, dtype=np.float64):
    """Ding et al.'s SemiNMF start: one-hot k-means clusters + 0.2."""
    H = np.full((assign.shape[0], k), 0.2, dtype=dtype)
    H[np.arange(assign.shape[0]), assign] += 1.0
    return H


def kmeans_subsample(n, rng):
    """Sorted rows the k-means of the start runs on (at most
    ``KMEANS_SAMPLE``, materialised preprocessed), or None (all ``n``)."""
    if n <= T.KMEANS_SAMPLE:
        return None
    return np.sort(rng.choice(n, T.KMEANS_SAMPLE, replace=False))


def nearest_centres(features, centers, products=None):
    """Nearest centre of every row of ``features`` (:class:`Features`);
    ties: smaller index.  ``products``: ``features.xz(centers.T)`` when the
    caller has it already."""
    sq = (np.asarray(centers, dtype=np.float64) ** 2).sum(axis=1)
    if products is None:
        products = features.xz(centers.T)
    return nearest_from_products(products, sq)[0]


def cluster_sums(X, assign, k):
    """Per-cluster row sums (k, d) and member counts of X (dense or CSR)."""
    if sp.issparse(X):
        return cluster_sums_csr(X.indptr, X.indices, X.data, X.shape[1], assign, k)
    return cluster_sums_dense(X, assign, k)


def _sq(v):
    """Squared norm of a vector, in float64."""
    v = np.asarray(v, dtype=np.float64)
    return float(v @ v)


def kmeans(X, sqx, k, rng, n_iter=25):
    """k-means of all rows of X (dense or CSR; ``sqx`` their squared norms):
    ``KMEANS_INITS`` k-means++ seedings, each followed by Lloyd iterations; the
    run with the smallest within-cluster sum of squares wins.

    The start needs rough clusters, not exact ones: callers run it on at
    most ``KMEANS_SAMPLE`` rows (:func:`kmeans_subsample`) and assign the
    other rows to the nearest centre.

    Returns
    -------
    assign : int ndarray (n,), centers : ndarray (k, d)
    """
    n = X.shape[0]

    def row(i):
        r = X[i]
        return r.toarray().ravel() if sp.issparse(r) else r

    best = best_centers = None
    best_inertia = np.inf
    for _ in range(T.KMEANS_INITS):
        centers = np.empty((k, X.shape[1]), dtype=X.dtype)
        centers[0] = row(int(rng.integers(n)))
        d2 = np.maximum(sqx - 2.0 * (X @ centers[0]) + _sq(centers[0]), 0.0)
        for c in range(1, k):
            total = d2.sum()
            if total > 0:
                idx = int(np.searchsorted(np.cumsum(d2), rng.random() * total))
            else:
                idx = int(rng.integers(n))
            centers[c] = row(min(idx, n - 1))
            d2 = np.minimum(d2, np.maximum(
                sqx - 2.0 * (X @ centers[c]) + _sq(centers[c]), 0.0))
        assign = None
        for _ in range(n_iter + 1):
            # Only serial kernels run between these products: BLAS workers
            # left spinning take no core from them (PRODUCT_BETWEEN_KERNELS).
            products = xz(X, centers.T, large=LARGE_PRODUCT)
            new, nearest = nearest_from_products(
                products, (centers.astype(np.float64) ** 2).sum(axis=1))
            inertia = float(nearest.sum() + sqx.sum())
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            sums, counts = cluster_sums(X, assign, k)
            nz = counts > 0
            centers[nz] = sums[nz] / counts[nz, None]
        # The first run always counts (a non-finite inertia never compares
        # smaller than inf).
        if best is None or inertia < best_inertia:
            best, best_inertia, best_centers = assign, inertia, centers
    return best, best_centers
