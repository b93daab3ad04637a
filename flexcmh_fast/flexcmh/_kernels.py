"""Numba kernels of the FlexCMH trainer.

Every kernel works on small dense summaries (``X @ Z`` products, indicator
matrices, cluster assignments), never on the raw feature matrices, so dense
and sparse (CSR) training data go through the same code.  Parallel kernels
split work over ``prange``; where threads would write to shared memory they
fill per-thread buffers that are merged serially afterwards, so results do
not depend on the number of threads.

``fastmath`` is limited to re-association/contraction flags (no ``nnan`` /
``ninf``): profiles are padded with ``inf`` on purpose.

Plain numpy references of every kernel live in ``tests/reference_flexcmh.py``.
"""
import numpy as np
from numba import njit, prange

from .._threads import PRANGE_ONLY, fixed_blocks

_FM = {"contract", "reassoc", "arcp"}


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def nn_profiles(xz, scale, sqx, sqz, assign, k, ns, n_chunks):
    """Ordered-nearest-neighbour profiles of the clusters of one modality,
    measured from the centroids ``Z`` scaled column by column.

    Parameters
    ----------
    xz : float64 (n, k)
        ``X @ Z`` (inner products of samples with the centroids).
    scale : float64 (k,)
        Scale of each centroid (column c of ``X @ Z`` is multiplied by
        ``scale[c]`` as it is read: no scaled (n, k) copy).
    sqx : float64 (n,)
        Squared norms of the samples.
    sqz : float64 (k,)
        Squared norms of the scaled centroids.
    assign : int64 (n,)
        Cluster of each sample (``-1``: in no cluster, ignored).
    k, ns : int
        Number of clusters and profile length.
    n_chunks : int
        Sample blocks scanned in parallel (use the thread count); the result
        does not depend on it.

    Returns
    -------
    prof : float64 (k, ns)
        Row c: the ``ns`` smallest squared distances ``||x_i - scale[c] z_c||^2`` of the
        members i of cluster c, ascending; ``inf`` where c has fewer members.
    count : int64 (k,)
        Members per cluster.
    """
    n = assign.shape[0]
    n_chunks, step = fixed_blocks(n, n_chunks)
    buf = np.full((n_chunks, k, ns), np.inf)
    cnt = np.zeros((n_chunks, k), dtype=np.int64)
    for t in prange(n_chunks):
        for i in range(t * step, min(n, (t + 1) * step)):
            c = assign[i]
            if c < 0:
                continue
            cnt[t, c] += 1
            # Distances by expansion can be slightly negative from rounding.
            d = max(sqx[i] - 2.0 * (xz[i, c] * scale[c]) + sqz[c], 0.0)
            if d < buf[t, c, ns - 1]:
                g = ns - 1
                while g > 0 and buf[t, c, g - 1] > d:
                    buf[t, c, g] = buf[t, c, g - 1]
                    g -= 1
                buf[t, c, g] = d
    # Serial merge, chunk by chunk in order: the profiles do not depend on
    # how the rows were split.
    prof = np.empty((k, ns))
    count = np.zeros(k, dtype=np.int64)
    merged = np.empty(n_chunks * ns)
    for c in range(k):
        for t in range(n_chunks):
            count[c] += cnt[t, c]
            for g in range(ns):
                merged[t * ns + g] = buf[t, c, g]
        merged.sort()
        for g in range(ns):
            prof[c, g] = merged[g]
    return prof, count


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def match_scores(prof_a, count_a, sqz_a, prof_b, count_b, sqz_b):
    """Matching score S of Eq. 1 between the clusters of two modalities.

    ``S[c, c2] = (ns / G) * sum_{g < G} (prof_a[c, g] - alpha * prof_b[c2, g])^2``
    with ``alpha = ||z_c||^2 / ||z_c2||^2`` and ``G = min(ns, count_a[c],
    count_b[c2])``: a cluster with fewer than ``ns`` members is compared on
    the ranks both clusters have, rescaled to ``ns`` terms; ``inf`` when
    either cluster is empty.
    """
    ka, ns = prof_a.shape
    kb = prof_b.shape[0]
    S = np.empty((ka, kb))
    for c in prange(ka):
        for c2 in range(kb):
            G = min(ns, count_a[c], count_b[c2])
            if G == 0:
                S[c, c2] = np.inf
                continue
            alpha = sqz_a[c] / max(sqz_b[c2], 1e-300)
            s = 0.0
            for g in range(G):
                diff = prof_a[c, g] - alpha * prof_b[c2, g]
                s += diff * diff
            S[c, c2] = s * ns / G
    return S


@njit(cache=True)
def _group_by_cluster(assign, k):
    """Counting sort: members of cluster c are ``order[start[c]:start[c+1]]``
    in increasing sample index."""
    n = assign.shape[0]
    start = np.zeros(k + 1, dtype=np.int64)
    for i in range(n):
        if assign[i] >= 0:
            start[assign[i] + 1] += 1
    for c in range(k):
        start[c + 1] += start[c]
    fill = start[:k].copy()
    order = np.empty(start[k], dtype=np.int64)
    for i in range(n):
        c = assign[i]
        if c >= 0:
            order[fill[c]] = i
            fill[c] += 1
    return order, start


@njit(cache=True)
def pair_adjacency(n, self_idx, other_idx):
    """Adjacency in CSR form of pairs ``self_idx[p] -> other_idx[p]`` over
    ``n`` rows: ``idx[ptr[i]:ptr[i+1]]`` are row i's partners in the order
    of the pairs (a stable counting sort: one pass, no argsort)."""
    ptr = np.zeros(n + 1, dtype=np.int64)
    for p in range(self_idx.shape[0]):
        ptr[self_idx[p] + 1] += 1
    for i in range(n):
        ptr[i + 1] += ptr[i]
    fill = ptr[:n].copy()
    idx = np.empty(self_idx.shape[0], dtype=np.int64)
    for p in range(self_idx.shape[0]):
        i = self_idx[p]
        idx[fill[i]] = other_idx[p]
        fill[i] += 1
    return ptr, idx


@njit(cache=True, nogil=True)
def _ranked(members, score):
    """``members`` by descending ``score``, ties in their order (a stable
    sort of the negated score)."""
    return members[np.argsort(-score[members], kind="mergesort")]


@njit(cache=True, parallel=PRANGE_ONLY)
def rank_pairs(assign_a, score_a, assign_b, score_b, k):
    """Inferred correspondence inside matched clusters (Eq. 2 and 4).

    Samples with ``assign == -1`` take no part (e.g. they have known pairs).
    Within cluster c the members of each modality are ranked by ``score``
    descending (ties: smaller sample index first) and the top
    ``N_c = min(|members_a|, |members_b|)`` of each are paired rank by rank.

    Returns
    -------
    pairs : int64 (P, 2)
        (row in modality a, row in modality b), clusters in order, ranks in
        order within a cluster.
    """
    order_a, start_a = _group_by_cluster(assign_a, k)
    order_b, start_b = _group_by_cluster(assign_b, k)
    offset = np.zeros(k + 1, dtype=np.int64)
    for c in range(k):
        offset[c + 1] = offset[c] + min(start_a[c + 1] - start_a[c],
                                        start_b[c + 1] - start_b[c])
    pairs = np.empty((offset[k], 2), dtype=np.int64)
    for c in prange(k):
        N = offset[c + 1] - offset[c]
        if N == 0:
            continue
        ra = _ranked(order_a[start_a[c]:start_a[c + 1]], score_a)
        rb = _ranked(order_b[start_b[c]:start_b[c + 1]], score_b)
        for r in range(N):
            pairs[offset[c] + r, 0] = ra[r]
            pairs[offset[c] + r, 1] = rb[r]
    return pairs


# Rows of nnls_rows processed together (see there); the kernel's inner
# loop is written out for exactly this many rows.
NNLS_TILE = 4


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def nnls_rows(Q, C, diag, H, max_sweeps, tol):
    """Row-wise non-negative least squares by cyclic coordinate descent.

    Row i solves ``min_{h >= 0} h^T (Q + diag[i] I) h - 2 h^T C[i]`` (``Q``
    symmetric positive semi-definite), warm
    started from ``H[i]`` and updated in place.  With ``Q = Z^T Z``,
    ``C = X Z`` and ``diag = 0`` this is ``min ||x_i - Z h||^2`` (encoding);
    with the coupling terms added it is the H step of Eq. 7.  Every
    coordinate step is an exact minimisation, so the objective never
    increases.  A row stops after ``max_sweeps`` sweeps or when no entry
    moved by more than ``tol`` times the row's largest entry.
    """
    n, k = H.shape
    # Each coordinate step computes its gradient entry afresh from the
    # current row (k multiply-adds).  Keeping the whole gradient up to date
    # instead costs k to set up plus k after every step: twice the
    # arithmetic of one sweep (the H step runs one).
    n_blocks, step = fixed_blocks(n, 256)
    for t in prange(n_blocks):
        active = np.empty(NNLS_TILE, dtype=np.bool_)
        moved = np.empty(NNLS_TILE)
        hmax = np.empty(NNLS_TILE)
        g = np.empty(NNLS_TILE)
        # The tile's rows in float64 while they are solved (float32 H is
        # stored once, after the tile's sweeps); rows past the end stay 0.
        h = np.zeros((NNLS_TILE, k))
        stop = min(n, (t + 1) * step)
        # The tile's rows advance coordinate by coordinate together: each
        # row's steps form a dependency chain (gradient entry, step), the
        # rows' chains are independent, and one read of Q's row serves the
        # gradient entries of all of them.
        for i0 in range(t * step, stop, NNLS_TILE):
            m = min(NNLS_TILE, stop - i0)
            for r in range(NNLS_TILE):
                active[r] = r < m
                for j in range(k):
                    h[r, j] = H[i0 + r, j] if r < m else 0.0
            for _ in range(max_sweeps):
                for r in range(m):
                    moved[r] = 0.0
                    hmax[r] = 0.0
                for c in range(k):
                    for r in range(NNLS_TILE):
                        g[r] = diag[i0 + r] * h[r, c] - C[i0 + r, c] if r < m else 0.0
                    g0 = g[0]
                    g1 = g[1]
                    g2 = g[2]
                    g3 = g[3]
                    for j in range(k):
                        q = Q[c, j]
                        g0 += q * h[0, j]
                        g1 += q * h[1, j]
                        g2 += q * h[2, j]
                        g3 += q * h[3, j]
                    g[0] = g0
                    g[1] = g1
                    g[2] = g2
                    g[3] = g3
                    for r in range(m):
                        if not active[r]:
                            continue
                        i = i0 + r
                        qcc = Q[c, c] + diag[i]
                        if qcc <= 0.0:
                            continue
                        hc = h[r, c]
                        new = hc - g[r] / qcc
                        if new < 0.0:
                            new = 0.0
                        h[r, c] = new
                        moved[r] = max(moved[r], abs(new - hc))
                        hmax[r] = max(hmax[r], new)
                left = 0
                for r in range(m):
                    if active[r] and moved[r] <= tol * hmax[r]:
                        active[r] = False
                    left += active[r]
                if left == 0:
                    break
            for r in range(m):
                for j in range(k):
                    H[i0 + r, j] = h[r, j]


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def inner_float64(A, B):
    """``sum_ij A_ij B_ij`` of two (n, k) arrays, accumulated in float64.

    Fixed blocks of rows, their sums added in block order: the same value
    whatever the thread count.
    """
    n, k = A.shape
    n_blocks, step = fixed_blocks(n, 64)
    sums = np.zeros(n_blocks)
    for t in prange(n_blocks):
        s = 0.0
        for i in range(t * step, min(n, (t + 1) * step)):
            for j in range(k):
                s += np.float64(A[i, j]) * np.float64(B[i, j])
        sums[t] = s
    total = 0.0
    for t in range(n_blocks):
        total += sums[t]
    return total


@njit(cache=True, parallel=PRANGE_ONLY)
def hard_assignments(H):
    """Hard cluster of every row: the column of its largest entry (the
    first one on ties), ``-1`` for a row with no positive entry."""
    n, k = H.shape
    out = np.empty(n, dtype=np.int64)
    for i in prange(n):
        best = 0
        for c in range(1, k):
            if H[i, c] > H[i, best]:
                best = c
        out[i] = best if H[i, best] > 0.0 else -1
    return out


@njit(cache=True)
def cluster_mass(H, assign, k):
    """Members per cluster and the sum of their indicator at their own
    cluster (rows with ``assign == -1`` ignored)."""
    counts = np.zeros(k, dtype=np.int64)
    sums = np.zeros(k)
    for i in range(assign.shape[0]):
        c = assign[i]
        if c >= 0:
            counts[c] += 1
            sums[c] += H[i, c]
    return counts, sums


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def gather_sum(ptr, idx, src, base, out):
    """``out[i] = sum_{p in ptr[i]:ptr[i+1]} src[idx[p]] + base[i]`` (rows;
    ``out`` may be ``base``).

    The linear term of Eq. 8's H step for modality m: the sum of the
    indicator vectors of every sample paired with sample i (adjacency in
    CSR form) plus ``X Z`` (``base``), in one pass over the rows.
    """
    n, k = out.shape
    n_blocks, step = fixed_blocks(n, 256)
    for t in prange(n_blocks):
        # Partners' rows read whole (contiguous), summed per column in the
        # order of the partners, then the base added.
        s = np.empty(k)
        for i in range(t * step, min(n, (t + 1) * step)):
            for c in range(k):
                s[c] = 0.0
            for p in range(ptr[i], ptr[i + 1]):
                row = idx[p]
                for c in range(k):
                    s[c] += src[row, c]
            for c in range(k):
                out[i, c] = s[c] + base[i, c]


@njit(cache=True, parallel=PRANGE_ONLY, fastmath=_FM)
def pair_loss(pairs, Ha, Hb):
    """``sum_{(i, j) in pairs} ||Ha[i] - Hb[j]||^2`` (the Lc term of Eq. 4)."""
    P = pairs.shape[0]
    k = Ha.shape[1]
    n_chunks, step = fixed_blocks(P, 64)
    part = np.zeros(n_chunks)
    for t in prange(n_chunks):
        s = 0.0
        for p in range(t * step, min(P, (t + 1) * step)):
            i = pairs[p, 0]
            j = pairs[p, 1]
            for c in range(k):
                d = Ha[i, c] - Hb[j, c]
                s += d * d
        part[t] = s
    total = 0.0
    for t in range(n_chunks):
        total += part[t]
    return total


@njit(cache=True)
def nearest_from_products(P, sq_centres):
    """Nearest centre of every row from ``P = X C^T`` (n, k) and the centres'
    squared norms: ``argmin_c sq_centres[c] - 2 P[i, c]`` (the first on
    ties, like ``numpy.argmin``) and that value (the squared distance
    without the row's own norm), computed as ``numpy`` would (no fastmath).
    One pass instead of a (n, k) temporary, an ``argmin`` and a gather per
    Lloyd iteration of the k-means start."""
    n, k = P.shape
    assign = np.empty(n, dtype=np.int64)
    best = np.empty(n)
    for i in range(n):
        b = 0
        v = sq_centres[0] - 2.0 * P[i, 0]
        for c in range(1, k):
            d = sq_centres[c] - 2.0 * P[i, c]
            if d < v:
                b, v = c, d
        assign[i] = b
        best[i] = v
    return assign, best


@njit(cache=True)
def cluster_sums_dense(X, assign, k):
    """Sum of the rows of each cluster (rows added in order) and the member
    counts: the Lloyd update of the k-means start without building an
    indicator matrix."""
    sums = np.zeros((k, X.shape[1]))
    counts = np.zeros(k, dtype=np.int64)
    for i in range(X.shape[0]):
        c = assign[i]
        counts[c] += 1
        for j in range(X.shape[1]):
            sums[c, j] += X[i, j]
    return sums, counts


@njit(cache=True)
def cluster_sums_csr(indptr, indices, data, n_cols, assign, k):
    """:func:`cluster_sums_dense` of CSR rows (never densified)."""
    sums = np.zeros((k, n_cols))
    counts = np.zeros(k, dtype=np.int64)
    for i in range(indptr.shape[0] - 1):
        c = assign[i]
        counts[c] += 1
        for p in range(indptr[i], indptr[i + 1]):
            sums[c, indices[p]] += data[p]
    return sums, counts


# Set bits of every byte value (the code kernels count changed bits).
_BYTE_BITS = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)


@njit(cache=True, nogil=True, fastmath=_FM)
def _project_row(Y, i, mu, P, v):
    """``v = (Y[i] - mu) @ P`` in float64 (``mu``, ``P`` float64), the
    indicator columns in order: the code kernels' one arithmetic, so that
    training and encoding agree."""
    k, b = P.shape
    for j in range(b):
        v[j] = 0.0
    for c in range(k):
        y = np.float64(Y[i, c]) - mu[c]
        for j in range(b):
            v[j] += y * P[c, j]


@njit(cache=True, nogil=True)
def _pack_row(v, out, i):
    """Bits ``v > 0`` into ``out[i]``, most significant bit first, padding
    bits zero (``numpy.packbits``' layout); ``v`` is padded with zeros to a
    whole number of bytes."""
    for byte in range(out.shape[1]):
        x = 0
        for t in range(8):
            x = (x << 1) | (1 if v[byte * 8 + t] > 0.0 else 0)
        out[i, byte] = x


@njit(cache=True, parallel=PRANGE_ONLY)
def linear_code_signs(Y, mu, P):
    """±1 int8 codes ``sign((Y - mu) P)`` (+1 where > 0) of the rows of Y
    (``mu``, ``P`` float64)."""
    n = Y.shape[0]
    b = P.shape[1]
    out = np.empty((n, b), dtype=np.int8)
    n_blocks, step = fixed_blocks(n, 256)
    for t in prange(n_blocks):
        v = np.empty(b)
        for i in range(t * step, min(n, (t + 1) * step)):
            _project_row(Y, i, mu, P, v)
            for j in range(b):
                out[i, j] = 1 if v[j] > 0.0 else -1
    return out


@njit(cache=True, parallel=PRANGE_ONLY)
def linear_code_bits(Y, mu, P, previous, out):
    """Packed codes of the rows of Y under the linear code ``(mu, P)``
    (float64) into ``out`` (n, ceil(b/8)) uint8; returns how many bits differ
    from ``previous`` (same shape; an empty array: none compared, 0)."""
    n = Y.shape[0]
    width = out.shape[1]
    compare = previous.shape[0] == n and n > 0
    n_blocks, step = fixed_blocks(n, 256)
    changed = np.zeros(n_blocks, dtype=np.int64)
    for t in prange(n_blocks):
        v = np.zeros(8 * width)
        for i in range(t * step, min(n, (t + 1) * step)):
            _project_row(Y, i, mu, P, v)
            _pack_row(v, out, i)
            if compare:
                for byte in range(width):
                    changed[t] += _BYTE_BITS[out[i, byte] ^ previous[i, byte]]
    return changed.sum()


@njit(cache=True, parallel=PRANGE_ONLY)
def linear_common_code(Ys, rows, mu, P, out):
    """Eq. 11 for the aligned objects: ``out[r]`` = packed
    ``sign(sum_m (Ys[m][rows[m, r]] - mu) P)`` (``mu``, ``P`` float64);
    returns the bits in which the modalities' own codes disagree with it,
    summed over modalities (the quantisation term counts them)."""
    M = len(Ys)
    A = rows.shape[1]
    b = P.shape[1]
    width = out.shape[1]
    n_blocks, step = fixed_blocks(A, 256)
    disagree = np.zeros(n_blocks, dtype=np.int64)
    for t in prange(n_blocks):
        v = np.zeros(8 * width)
        total = np.zeros(8 * width)
        own = np.empty((M, width), dtype=np.uint8)
        for r in range(t * step, min(A, (t + 1) * step)):
            for j in range(b):
                total[j] = 0.0
            for m in range(M):
                _project_row(Ys[m], rows[m, r], mu, P, v)
                _pack_row(v, own, m)
                for j in range(b):
                    total[j] += v[j]
            _pack_row(total, out, r)
            for m in range(M):
                for byte in range(width):
                    disagree[t] += _BYTE_BITS[own[m, byte] ^ out[r, byte]]
    return disagree.sum()
