"""Plain numpy references of the FlexCMH Numba kernels.

Each function has the signature and the contract of its namesake in
``flexcmh_fast.flexcmh._kernels`` and is written for obviousness, not speed.  The
module can also be passed to the trainer as its kernel set
(``FlexCMH._fit(..., kernels=reference_flexcmh)``), which
gives the plain-numpy reference loop of the same updates used by the
benchmarks.
"""
import numpy as np
import scipy.sparse as sp


def nn_profiles(xz, scale, sqx, sqz, assign, k, ns, n_chunks=1):
    """Sorted ``ns`` smallest squared member-to-centroid distances per cluster
    (centroid c scaled by ``scale[c]``)."""
    prof = np.full((k, ns), np.inf)
    count = np.zeros(k, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(assign == c)
        count[c] = members.size
        d = np.maximum(sqx[members] - 2.0 * (xz[members, c] * scale[c]) + sqz[c], 0.0)
        d = np.sort(d)[:ns]
        prof[c, :d.size] = d
    return prof, count


def nn_profiles_direct(X, Z, assign, ns):
    """Same profiles from the raw data (dense array), by explicit distances."""
    k = Z.shape[1]
    prof = np.full((k, ns), np.inf)
    count = np.zeros(k, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(assign == c)
        count[c] = members.size
        d = np.sort(((X[members] - Z[:, c]) ** 2).sum(axis=1))[:ns]
        prof[c, :d.size] = d
    return prof, count


def match_scores(prof_a, count_a, sqz_a, prof_b, count_b, sqz_b):
    """Eq. 1 with the rank-truncation / rescaling rule of the kernel."""
    ka, ns = prof_a.shape
    kb = prof_b.shape[0]
    S = np.empty((ka, kb))
    for c in range(ka):
        for c2 in range(kb):
            G = min(ns, count_a[c], count_b[c2])
            if G == 0:
                S[c, c2] = np.inf
                continue
            alpha = sqz_a[c] / max(sqz_b[c2], 1e-300)
            S[c, c2] = ((prof_a[c, :G] - alpha * prof_b[c2, :G]) ** 2).sum() * ns / G
    return S


def rank_pairs(assign_a, score_a, assign_b, score_b, k):
    """Rank-by-rank pairing inside each cluster (descending score, ties by index)."""
    out = []
    for c in range(k):
        ma = np.flatnonzero(assign_a == c)
        mb = np.flatnonzero(assign_b == c)
        ra = ma[np.argsort(-score_a[ma], kind="stable")]
        rb = mb[np.argsort(-score_b[mb], kind="stable")]
        N = min(ma.size, mb.size)
        out.extend(zip(ra[:N], rb[:N]))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def nnls_rows(Q, C, diag, H, max_sweeps, tol):
    """Cyclic coordinate descent, vectorised over rows (same stopping rule):
    each step minimises exactly over one coordinate, its gradient entry
    computed from the current rows."""
    n, k = H.shape
    active = np.ones(n, dtype=bool)
    for _ in range(max_sweeps):
        if not active.any():
            break
        moved = np.zeros(n)
        hmax = np.zeros(n)
        for c in range(k):
            qcc = Q[c, c] + diag
            ok = active & (qcc > 0)
            g = H @ Q[c] + diag * H[:, c] - C[:, c]
            new = np.where(ok, np.maximum(H[:, c] - g / np.where(qcc > 0, qcc, 1.0), 0.0),
                           H[:, c])
            moved = np.maximum(moved, np.abs(new - H[:, c]))
            hmax = np.maximum(hmax, np.where(ok, new, 0.0))
            H[:, c] = new
        active &= ~(moved <= tol * hmax)


def hard_assignments(H):
    """Argmax column per row (first on ties); -1 where no entry is positive."""
    a = H.argmax(axis=1).astype(np.int64)
    a[H.max(axis=1) <= 0] = -1
    return a


def cluster_mass(H, assign, k):
    """Members per cluster and the sum of their own-cluster indicators."""
    ok = assign >= 0
    counts = np.bincount(assign[ok], minlength=k)
    sums = np.bincount(assign[ok], weights=H[np.flatnonzero(ok), assign[ok]], minlength=k)
    return counts, sums


def gather_sum(ptr, idx, src, base, out):
    """Row sums of the partners' indicator vectors (CSR adjacency) plus ``base``."""
    acc = np.zeros_like(out)
    rows = np.repeat(np.arange(out.shape[0]), np.diff(ptr))
    np.add.at(acc, rows, src[idx])
    out[:] = acc + base


def pair_loss(pairs, Ha, Hb):
    """Sum of squared differences of paired indicator vectors."""
    if pairs.shape[0] == 0:
        return 0.0
    return float(((Ha[pairs[:, 0]] - Hb[pairs[:, 1]]) ** 2).sum())


def nnls_exact(Q, c):
    """Exact NNLS of one row by scipy (``min h^T Q h - 2 c^T h``)."""
    from scipy.optimize import nnls

    L = np.linalg.cholesky(Q + 1e-12 * np.eye(Q.shape[0]))
    # h^T Q h - 2 c^T h = ||L^T h - L^-1 c||^2 - const
    return nnls(L.T, np.linalg.solve(L, c))[0]


def rbf_features(X, anchors, sigma):
    """``exp(-||x_i - a_j||^2 / (2 sigma^2))`` by explicit differences (dense X)."""
    d2 = ((X[:, None, :] - anchors[None, :, :]) ** 2).sum(axis=2)
    return np.exp(-d2 / (2.0 * sigma * sigma))


def kernel_ridge_weights(X, H, anchors, sigma, ridge):
    """Ridge regression of ``H`` on the RBF features of ``X`` (dense):
    ``W = (Phi^T Phi + eps I)^-1 Phi^T H``, ``eps = ridge * mean diag(Phi^T Phi)``."""
    Phi = rbf_features(X, anchors, sigma)
    G = Phi.T @ Phi
    eps = ridge * np.trace(G) / G.shape[0]
    return np.linalg.solve(G + eps * np.eye(G.shape[0]), Phi.T @ H)


def mean_distance(X, anchors):
    """Mean Euclidean distance between rows of ``X`` and the anchors (dense)."""
    return float(np.sqrt(((X[:, None, :] - anchors[None, :, :]) ** 2).sum(axis=2)).mean())


def nearest_from_products(P, sq_centres):
    """Nearest centre by ``numpy.argmin`` of ``sq_centres - 2 P`` (first on
    ties) and the minimum."""
    D = sq_centres[None, :] - 2.0 * P
    a = D.argmin(axis=1)
    return a, D[np.arange(D.shape[0]), a]


def cluster_sums(X, assign, k):
    """Per-cluster row sums through an indicator matrix, and the counts."""
    M = np.zeros((k, X.shape[0]))
    M[assign, np.arange(X.shape[0])] = 1.0
    return M @ (X.toarray() if sp.issparse(X) else X), np.bincount(assign, minlength=k)


def linear_code_signs(Y, mu, P):
    """±1 codes of ``(Y - mu) P`` (+1 where > 0)."""
    V = (Y.astype(np.float64) - mu.astype(np.float64)) @ P.astype(np.float64)
    return np.where(V > 0, 1, -1).astype(np.int8)


def linear_code_bits(Y, mu, P, previous, out):
    """Packed :func:`linear_code_signs` into ``out``; bits that differ from
    ``previous`` (0 when it is empty)."""
    out[...] = np.packbits(linear_code_signs(Y, mu, P) > 0, axis=1)
    if previous.shape[0] != Y.shape[0] or Y.shape[0] == 0:
        return 0
    return int(np.unpackbits(out ^ previous).sum())


def linear_common_code(Ys, rows, mu, P, out):
    """Packed ``sign(sum_m (Ys[m][rows[m]] - mu) P)`` into ``out``; the bits
    in which each modality's own code disagrees with it, summed."""
    V = [(Y[r].astype(np.float64) - mu.astype(np.float64)) @ P.astype(np.float64)
         for Y, r in zip(Ys, rows)]
    B = np.add.reduce(V) > 0
    out[...] = np.packbits(B, axis=1)
    return int(sum(np.count_nonzero((v > 0) != B) for v in V))


def pair_adjacency(n, self_idx, other_idx):
    """CSR adjacency of ``self_idx[p] -> other_idx[p]`` (partners in pair order)."""
    order = np.argsort(self_idx, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(self_idx, minlength=n), out=ptr[1:])
    return ptr, np.ascontiguousarray(other_idx[order])
