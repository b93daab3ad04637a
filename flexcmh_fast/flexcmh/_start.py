"""The start of FlexCMH (Eq. 3): k-means clusters seed SemiNMF, and the
ridge least-squares centroid update shared by the start and the loop.

Dense and CSR data go through the same code: the data enter only through
``X @ Z`` and ``X^T @ H`` products (CSR stays sparse).
"""
from contextlib import nullcontext

import numpy as np
import scipy.sparse as sp

from .._threads import LARGE_PRODUCT, PRODUCT_BETWEEN_KERNELS, dense_product_threads
from . import _tuning as T
from ._kernels import (cluster_sums_csr, cluster_sums_dense, csr_dense_product,
                       nearest_from_products)


def _product_threads(X, k, large=PRODUCT_BETWEEN_KERNELS):
    """BLAS threads of a product of X with k columns (CSR: no BLAS); by
    default for a product run between Numba parallel kernels
    (``PRODUCT_BETWEEN_KERNELS``)."""
    if sp.issparse(X):
        return nullcontext()
    return dense_product_threads(X.shape[0] * X.shape[1] * k, large=large)


def xz(X, Z, out=None, large=PRODUCT_BETWEEN_KERNELS):
    """``X @ Z`` as a C-contiguous float64 array (CSR is never densified),
    written into ``out`` (C-contiguous (n, k) float64) when given: the loop
    keeps one buffer per modality instead of taking fresh memory every
    iteration (at scale the page faults of a new (n, k) array cost more than
    a sparse product; docs/flexcmh.md, "Training speed").  ``large``: multiply-adds from which a
    dense product runs on every thread (:func:`_product_threads`)."""
    if out is None:
        out = np.empty((X.shape[0], Z.shape[1]))
    if sp.issparse(X):
        X = X.tocsr()
        csr_dense_product(X.indptr, X.indices, X.data, np.ascontiguousarray(Z), out)
        return out
    with _product_threads(X, Z.shape[1], large):
        np.matmul(X, Z, out=out)
    return out


def xth(X, H):
    """``X^T @ H`` (d, k); for CSR, scipy's transpose product (no densify).

    Dense data: computed as ``(H^T X)^T``, which OpenBLAS runs faster for
    these shapes (n rows, k << d; docs/flexcmh.md, "Training speed")."""
    if sp.issparse(X):
        return np.asarray(X.T @ H)
    with _product_threads(X, H.shape[1]):
        return np.ascontiguousarray((H.T @ X).T)


def z_stats(X, H):
    """Sufficient statistics of the Z step, ``X^T H`` and ``H^T H``: sums over
    samples, so row blocks of the data add up."""
    return xth(X, H), H.T @ H


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


def start_indicators(assign, k):
    """Ding et al.'s SemiNMF start: one-hot k-means clusters + 0.2."""
    H = np.full((assign.shape[0], k), 0.2)
    H[np.arange(assign.shape[0]), assign] += 1.0
    return H


def kmeans_subsample(n, rng, max_sample=T.KMEANS_SAMPLE):
    """Sorted rows the k-means of the start runs on, or None (all ``n``)."""
    if n <= max_sample:
        return None
    return np.sort(rng.choice(n, max_sample, replace=False))


def nearest_centres(X, centers):
    """Nearest centre of every row of X (dense or CSR); ties: smaller index."""
    return nearest_from_products(xz(X, centers.T), (centers ** 2).sum(axis=1))[0]


def cluster_sums(X, assign, k):
    """Per-cluster row sums (k, d) and member counts of X (dense or CSR)."""
    if sp.issparse(X):
        return cluster_sums_csr(X.indptr, X.indices, X.data, X.shape[1], assign, k)
    return cluster_sums_dense(X, assign, k)


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
        centers = np.empty((k, X.shape[1]))
        centers[0] = row(int(rng.integers(n)))
        d2 = np.maximum(sqx - 2.0 * (X @ centers[0]) + centers[0] @ centers[0], 0.0)
        for c in range(1, k):
            total = d2.sum()
            if total > 0:
                idx = int(np.searchsorted(np.cumsum(d2), rng.random() * total))
            else:
                idx = int(rng.integers(n))
            centers[c] = row(min(idx, n - 1))
            d2 = np.minimum(d2, np.maximum(
                sqx - 2.0 * (X @ centers[c]) + centers[c] @ centers[c], 0.0))
        assign = None
        for _ in range(n_iter + 1):
            # Only serial kernels run between these products: BLAS workers
            # left spinning take no core from them (PRODUCT_BETWEEN_KERNELS).
            products = xz(X, centers.T, large=LARGE_PRODUCT)
            new, nearest = nearest_from_products(products, (centers ** 2).sum(axis=1))
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
