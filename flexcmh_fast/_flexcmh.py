"""FlexCMH trainer (paper Section III, Algorithm 1; read as in DESIGN.md §2).

Rows are samples: ``X_m`` is ``(n_m, d_m)``, the indicators ``H_m`` are
``(n_m, k)`` (the paper's ``H_m^T``) and the centroids ``Z_m`` are
``(d_m, k)``, so that ``X_m ~ H_m Z_m^T`` (Eq. 3).  Every step costs time
linear in the number of samples: the data enter only through ``X_m @ Z_m``
and ``X_m^T @ H_m`` (sparse CSR stays sparse), and the correspondence Γ is
kept as index pairs.
"""
import numba
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from . import _kernels as K
from ._codes import pack_codes
from ._flexcmh_codes import SCHEMES, code_class
from ._model import HashingModel
from ._progress import ProgressBar
from ._rbf import mean_anchor_distance, rbf_blocks, row_sq_norms
from ._threads import numba_threads
from ._validation import check_bool, check_float, check_int, check_option

MATCHINGS = ("clusters", "labels")
ENCODERS = ("kernel", "nnls")
MATCH_SCORES = ("auto", "profiles", "profiles+sizes")
# Coordinate-descent sweeps of the H step per outer iteration, and limits of
# the NNLS used to encode new samples.
_H_SWEEPS = 1
_ENCODE_SWEEPS = 300
_ENCODE_TOL = 1e-7
_ENCODE_BATCH = 65536
# SemiNMF warm-up iterations after k-means (Eq. 3 only, no coupling).
_INIT_ITERS = 5
# k-means of the start runs on at most this many rows per modality.
_KMEANS_SAMPLE = 10_000
# ITQ / k-means iterations of the code step inside the loop (warm-started)
# and for the final code function.
_CODE_ITERS_LOOP = 1
_CODE_ITERS_FINAL = 50
# Ridge of the Z step, relative to the mean diagonal of H^T H.
_Z_RIDGE = 1e-2
# Aligned rows the in-loop code step is fitted on (at most).
_CODE_SAMPLE = 20_000
# Per-cluster cost improvement a re-matching needs to replace the current one.
_REMATCH_MARGIN = 0.01
# Below this many indicator entries (sum of n_m times k) one thread is used.
_PARALLEL_MIN_SIZE = 200_000
# Kernel encoder (encoder="kernel"): RBF width = this factor times the mean
# sample-to-anchor distance, ridge relative to the mean diagonal of the
# kernel Gram matrix, at most this many training rows for the regression,
# rows per kernel block.  Factor and ridge chosen on Wiki validation data
# (docs/flexcmh.md).
_ENC_SIGMA_FACTOR = 0.5
_ENC_RIDGE = 1e-3
_ENC_FIT_SAMPLE = 20_000
_ENC_BLOCK = 8192


# --------------------------------------------------------------------------
# small linear-algebra helpers (dense or CSR X)
# --------------------------------------------------------------------------
def _xz(X, Z):
    """``X @ Z`` as a C-contiguous float64 array (CSR stays sparse)."""
    return np.ascontiguousarray(X @ Z)


def _xth(X, H):
    """``X^T @ H`` (d, k); for CSR, scipy's transpose product (no densify)."""
    return np.asarray(X.T @ H)


def _solve_z(X, H):
    """Ridge least-squares centroids ``Z = X^T H (H^T H + eps I)^-1``.

    The minimiser of the reconstruction term of Eq. 6 plus ``eps ||Z||^2``
    with ``eps = _Z_RIDGE`` times the mean diagonal of ``H^T H``.  Without the
    ridge the pair term drives the columns of H towards collinearity and Z
    grows without bound (docs/flexcmh.md); it also keeps Z defined when a
    cluster is empty."""
    return z_from_stats(_xth(X, H), H.T @ H)


def z_from_stats(XtH, G):
    """The ridge solution of :func:`_solve_z` from its sufficient statistics
    ``X^T H`` (d, k) and ``G = H^T H`` (k, k), which are sums over samples
    (the distributed trainer adds them up over partitions)."""
    k = G.shape[0]
    eps = _Z_RIDGE * max(np.trace(G) / k, 1e-300)
    return np.linalg.solve(G + eps * np.eye(k), XtH.T).T.copy()


def _kmeans(X, sqx, k, rng, n_iter=25, n_init=3, max_sample=_KMEANS_SAMPLE):
    """k-means for dense or CSR X: ``n_init`` k-means++ seedings, each
    followed by Lloyd iterations, on a random subsample of at most
    ``max_sample`` rows (the start of SemiNMF needs rough clusters, not exact
    ones, and this keeps the start cheap for large n); the best run (smallest
    within-cluster sum of squares) assigns every row to its nearest centre."""
    sub = kmeans_subsample(X.shape[0], rng, max_sample)
    if sub is not None:
        centers = _kmeans(X[sub], sqx[sub], k, rng, n_iter, n_init, max_sample)[1]
        return nearest_centres(X, centers), centers
    n = X.shape[0]

    def row(i):
        r = X[i]
        return r.toarray().ravel() if sp.issparse(r) else r

    best, best_inertia = None, np.inf
    for _ in range(n_init):
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
            D = (centers ** 2).sum(axis=1)[None, :] - 2.0 * _xz(X, centers.T)
            new = D.argmin(axis=1)
            inertia = float(D[np.arange(n), new].sum() + sqx.sum())
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            M = sp.csr_matrix((np.ones(n), (assign, np.arange(n))), shape=(k, n))
            counts = np.bincount(assign, minlength=k)
            sums = M @ X
            sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
            nz = counts > 0
            centers[nz] = sums[nz] / counts[nz, None]
        if inertia < best_inertia:
            best, best_inertia, best_centers = assign, inertia, centers
    return best, best_centers


def kmeans_subsample(n, rng, max_sample=_KMEANS_SAMPLE):
    """Sorted rows the k-means of the start runs on, or None (all ``n``)."""
    if n <= max_sample:
        return None
    return np.sort(rng.choice(n, max_sample, replace=False))


def nearest_centres(X, centers):
    """Nearest centre of every row of X (dense or CSR); ties: smaller index."""
    D = (centers ** 2).sum(axis=1)[None, :] - 2.0 * _xz(X, centers.T)
    return D.argmin(axis=1)


def _assignments(H):
    """Hard cluster of every row (argmax; ``-1`` for an all-zero row)."""
    a = H.argmax(axis=1).astype(np.int64)
    a[H.max(axis=1) <= 0] = -1
    return a


def _pair_csr(n, self_idx, other_idx):
    """Adjacency (CSR ptr/idx) of row ``self_idx[p]`` -> ``other_idx[p]``."""
    order = np.argsort(self_idx, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(self_idx, minlength=n), out=ptr[1:])
    return ptr, np.ascontiguousarray(other_idx[order])


def _known_rows(pairs, m, k):
    """Sorted rows of modality m with a known partner in some modality, or
    None (= every row) when there are fewer than ``10 k`` of them.

    The kernel encoder is fitted on these rows: their indicators were tied
    to their true partners by the pair term, whereas inferred partners
    (Eq. 2) are mostly wrong when the modalities' clusters correspond poorly
    (docs/flexcmh.md), so the other rows' indicators are a noisier
    regression target.  With only a handful of known pairs, though, a
    regression onto k indicator columns from them would be fitted on too
    few rows; ``10 k`` is a guard (not tuned: the validated settings had
    hundreds of known pairs per cluster)."""
    found = [g[:, 0] if a == m else g[:, 1] for (a, b), g in pairs.items()
             if m in (a, b) and g.size]
    rows = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    return rows if rows.size >= 10 * k else None


def fit_kernel_encoder(X, H, n_anchors, rng, rows=None):
    """Kernel ridge regression from a modality's samples to their learned
    training indicators (the out-of-sample encoder ``encoder="kernel"``).

    ``phi(x) = exp(-||x - a_j||^2 / (2 sigma^2))`` over ``n_anchors`` anchors
    ``a_j`` drawn from the candidate rows, ``sigma`` = ``_ENC_SIGMA_FACTOR``
    times the mean sample-to-anchor distance (on at most 1,000 candidate
    rows), and ``W = argmin ||Phi W - H||^2 + eps ||W||^2`` with
    ``eps = _ENC_RIDGE`` times the mean diagonal of ``Phi^T Phi``, on at
    most ``_ENC_FIT_SAMPLE`` candidate rows.  Cost
    ``O(min(n, 20000) * n_anchors * (d + n_anchors))``; X is never densified
    (only the anchors are) and at most 20,000 of its rows are copied.

    Parameters
    ----------
    X : ndarray or CSR (n, d)
    H : ndarray (n, k)
        Learned training indicators of the rows of X.
    n_anchors : int
    rng : numpy.random.Generator
    rows : ndarray of int or None
        Sorted candidate rows (the samples with a known partner, whose
        indicators the pair term tied to their true partner); None: all.

    Returns
    -------
    anchors : ndarray (a, d), sigma : float, weights : ndarray (a, k)
    """
    cand = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    anchor_pos, probe_pos, fit_pos = encoder_sample(cand.size, n_anchors, rng)
    anchors = X[cand[anchor_pos]]
    anchors = np.ascontiguousarray(anchors.toarray() if sp.issparse(anchors) else anchors)
    sigma = encoder_width(X[cand[probe_pos]], anchors)
    fit = cand if fit_pos is None else cand[fit_pos]
    G, R = encoder_gram(X[fit], H[fit], anchors, sigma)
    return anchors, sigma, encoder_weights(G, R)


def encoder_sample(n, n_anchors, rng):
    """Random draws of :func:`fit_kernel_encoder` among ``n`` candidate rows:
    sorted positions of the anchors, of the (at most 1,000) rows that set
    the RBF width, and of the regression rows (None: all candidates)."""
    anchor_pos = np.sort(rng.choice(n, min(n_anchors, n), replace=False))
    probe_pos = np.sort(rng.choice(n, min(n, 1000), replace=False))
    fit_pos = (None if n <= _ENC_FIT_SAMPLE
               else np.sort(rng.choice(n, _ENC_FIT_SAMPLE, replace=False)))
    return anchor_pos, probe_pos, fit_pos


def encoder_width(X_probe, anchors):
    """RBF width: ``_ENC_SIGMA_FACTOR`` times the mean probe-to-anchor distance."""
    mean_dist = mean_anchor_distance(X_probe, anchors)
    # Constant data (every distance 0): any width gives the same features.
    return float(_ENC_SIGMA_FACTOR * mean_dist) if mean_dist > 0 else 1.0


def encoder_gram(Xf, Hf, anchors, sigma):
    """``Phi^T Phi`` (a, a) and ``Phi^T H`` (a, k) over the regression rows:
    sums over rows, so partitions of the rows can be added up."""
    a = anchors.shape[0]
    G = np.zeros((a, a))
    R = np.zeros((a, Hf.shape[1]))
    for s, e, Phi in rbf_blocks(Xf, anchors, sigma, _ENC_BLOCK):
        G += Phi.T @ Phi
        R += Phi.T @ Hf[s:e]
    return G, R


def encoder_weights(G, R):
    """Ridge solution ``(G + eps I)^-1 R``, ``eps = _ENC_RIDGE`` x mean diag G."""
    a = G.shape[0]
    G = G.copy()
    eps = _ENC_RIDGE * max(np.trace(G) / a, 1e-300)
    G[np.diag_indices(a)] += eps
    return np.ascontiguousarray(np.linalg.solve(G, R))


# --------------------------------------------------------------------------
# cluster matching (Eq. 1) from per-cluster summaries
# --------------------------------------------------------------------------
NO_CORRESPONDENCE = (
    "FlexCMH found no correspondence between the modalities (every cluster is empty in "
    "some modality); check the data or lower 'n_clusters'.")


def is_fully_paired(pairs, n_samples):
    """Whether every sample of every modality has a known partner in every
    other modality (then Γ is the known pairs alone)."""
    M = len(n_samples)
    return all(
        (m, m2) in pairs
        and np.unique(pairs[(m, m2)][:, 0]).size == n_samples[m]
        and np.unique(pairs[(m, m2)][:, 1]).size == n_samples[m2]
        for m in range(M) for m2 in range(m + 1, M))


def start_indicators(assign, k):
    """Ding et al.'s SemiNMF start: one-hot k-means clusters + 0.2."""
    H = np.full((assign.shape[0], k), 0.2)
    H[np.arange(assign.shape[0]), assign] += 1.0
    return H


def scaled_sq_norms(Z, scale):
    """Squared norms of the centroids (columns of Z) times ``scale**2``."""
    return (Z ** 2).sum(axis=0) * scale ** 2


def uses_size_score(match_score, pairs, m):
    """Whether matching modality m to modality 0 adds the size score:
    ``"profiles+sizes"``, or ``"auto"`` and no known pair links them (known
    pairs' votes are direct evidence, and the size term only added noise to
    them on Wiki validation data)."""
    return match_score == "profiles+sizes" or (match_score == "auto" and (0, m) not in pairs)


def profile_scale(counts, sums):
    """Per-cluster mean indicator of the members at their own cluster.

    SemiNMF fixes only the product H Z^T: column c of H may carry any scale
    s_c with z_c / s_c.  The centroid as it appears in its members'
    reconstruction is z_c times their mean indicator, and that is the
    centroid the profiles are measured from."""
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def size_scores(count_a, count_b):
    """``|log(n_c / n_c2)|``: clusters of the same concept should hold
    similar fractions of their modality's samples (``inf`` if either is
    empty).  Sample counts of the modalities may differ, so fractions."""
    frac = [np.asarray(c, dtype=np.float64) / max(float(np.sum(c)), 1.0)
            for c in (count_a, count_b)]
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.abs(np.log(frac[0][:, None] / frac[1][None, :]))
    S[~np.isfinite(S)] = np.inf
    return S


def matching_cost(scores, votes, k):
    """Cost of aligning cluster c of modality 0 with c2 of another modality.

    Every score matrix (Eq. 1 profiles, optionally the size score) scaled to
    [0, 1] (``inf``, an empty cluster: 2), minus the known-pair votes scaled
    to [0, 1], so a cluster pair backed by many known pairs wins unless its
    profiles disagree strongly."""
    cost = np.zeros((k, k))
    for S in scores:
        finite = np.isfinite(S)
        top = S[finite].max() if finite.any() else 1.0
        cost += np.where(finite, S / (top if top > 0 else 1.0), 2.0)
    if votes is not None and votes.max() > 0:
        cost -= votes / votes.max()
    return cost


def choose_matching(cost, rematch):
    """Hungarian assignment of ``cost``; None when the clusters stay as they are.

    When re-matching (``rematch``, the clusters are already aligned) the new
    assignment replaces the current one only if it lowers the total cost by
    more than ``_REMATCH_MARGIN`` per cluster: near-ties would otherwise flip
    back and forth between iterations and scramble the coupled indicators."""
    k = cost.shape[0]
    _, perm = linear_sum_assignment(cost)
    ident = np.arange(k)
    if rematch and (cost[ident, ident].sum() - cost[ident, perm].sum()
                    <= _REMATCH_MARGIN * k):
        return None
    return None if np.array_equal(perm, ident) else perm


# --------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------
class _Trainer:
    """State of one FlexCMH fit (H, Z, X Z, Γ, code function, history)."""

    def __init__(self, Xs, pairs, labels, n_bits, k, ns, lam, joint, matching,
                 code_scheme, rng, kernels, match_score="auto"):
        self.K = kernels
        self.Xs = Xs
        self.M = len(Xs)
        self.n = [X.shape[0] for X in Xs]
        self.pairs = pairs
        self.labels = labels
        self.n_bits, self.k, self.ns, self.lam = n_bits, k, ns, lam
        self.joint, self.matching = joint, matching
        self.match_score = match_score
        self.code_cls = code_class(code_scheme)
        self.rng = rng
        self.sqx = [row_sq_norms(X) for X in Xs]
        self.sqX = [float(s.sum()) for s in self.sqx]
        self.fully_paired = is_fully_paired(pairs, self.n)
        self.code = None
        self.history = []
        self._assign = [None] * self.M
        # cluster_matching[m, c]: initial k-means cluster of modality m that
        # is aligned cluster c (composition of all relabelings).
        self.cluster_matching = np.tile(np.arange(k, dtype=np.int64), (self.M, 1))

    def assignment(self, m):
        """Hard clusters of modality m (cached until H_m changes)."""
        if self._assign[m] is None:
            self._assign[m] = _assignments(self.H[m])
        return self._assign[m]

    # ---- Eq. 3: k-means seeded SemiNMF ----------------------------------
    def init_semi_nmf(self):
        self.H, self.Z, self.XZ = [], [], []
        for m, X in enumerate(self.Xs):
            assign = _kmeans(X, self.sqx[m], self.k, self.rng)[0]
            # Ding et al.'s SemiNMF start: one-hot indicators + 0.2.
            H = start_indicators(assign, self.k)
            Z = _solve_z(X, H)
            zero = np.zeros(self.n[m])
            for _ in range(_INIT_ITERS):
                XZ = _xz(X, Z)
                self.K.nnls_rows(Z.T @ Z, XZ, zero, H, _H_SWEEPS, 0.0)
                Z = _solve_z(X, H)
            self.H.append(H)
            self.Z.append(Z)
            self.XZ.append(_xz(X, Z))

    # ---- Eq. 1-2: cluster matching and relabelling ----------------------
    def _votes(self, m0, m, pair_lists):
        """Votes V[c, c2]: pairs (i, j) with i in cluster c of m0, j in c2 of m."""
        a0, a1 = self.assignment(m0), self.assignment(m)
        V = np.zeros((self.k, self.k))
        for pr in pair_lists:
            ci, cj = a0[pr[:, 0]], a1[pr[:, 1]]
            ok = (ci >= 0) & (cj >= 0)
            np.add.at(V, (ci[ok], cj[ok]), 1.0)
        return V

    def cluster_mass(self, m):
        """Members per cluster of modality m and the sum of their indicator
        at their own cluster (sums over samples: partitions add up)."""
        a = self.assignment(m)
        ok = a >= 0
        counts = np.bincount(a[ok], minlength=self.k)
        sums = np.bincount(a[ok], weights=self.H[m][np.flatnonzero(ok), a[ok]],
                           minlength=self.k)
        return counts, sums

    def profiles(self, m, scale, sqz):
        """Eq. 1 profiles (top-ns distances, counts) of modality m's clusters
        measured from the scaled centroids (see :func:`profile_scale`)."""
        return self.K.nn_profiles(np.ascontiguousarray(self.XZ[m] * scale), self.sqx[m],
                                  sqz, self.assignment(m), self.k, self.ns,
                                  numba.get_num_threads())

    def _scores(self, m0, m):
        prof, cnt, sqz = [], [], []
        for mm in (m0, m):
            scale = profile_scale(*self.cluster_mass(mm))
            sz = scaled_sq_norms(self.Z[mm], scale)
            p, c = self.profiles(mm, scale, sz)
            prof.append(p)
            cnt.append(c)
            sqz.append(sz)
        return self.K.match_scores(prof[0], cnt[0], sqz[0], prof[1], cnt[1], sqz[1])

    def match_clusters(self, use_scores, extra_pairs=None, rematch=False):
        """Align every modality's clusters to modality 0 (Hungarian; the cost
        is :func:`matching_cost`, the decision :func:`choose_matching`)."""
        for m in range(1, self.M):
            scores = []
            if use_scores:
                scores.append(self._scores(0, m))
                if uses_size_score(self.match_score, self.pairs, m):
                    scores.append(size_scores(self.cluster_mass(0)[0],
                                              self.cluster_mass(m)[0]))
            lists = []
            if (0, m) in self.pairs:
                lists.append(self.pairs[(0, m)])
            if extra_pairs is not None and (0, m) in extra_pairs:
                lists.append(extra_pairs[(0, m)])
            votes = self._votes(0, m, lists) if lists else None
            perm = choose_matching(matching_cost(scores, votes, self.k), rematch)
            if perm is not None:
                self.permute(m, perm)

    def permute(self, m, perm):
        """Relabel modality m's clusters: new cluster c is old ``perm[c]``."""
        self.H[m] = np.ascontiguousarray(self.H[m][:, perm])
        self._assign[m] = None
        self.Z[m] = np.ascontiguousarray(self.Z[m][:, perm])
        self.XZ[m] = np.ascontiguousarray(self.XZ[m][:, perm])
        self.cluster_matching[m] = self.cluster_matching[m][perm]

    # ---- Eq. 2, 4: sample correspondence Γ ------------------------------
    def _label_groups(self, m):
        lab = self.labels[m]
        if lab.ndim == 1:
            return lab.astype(np.int64)
        # Multi-label: the first label of a sample is its group.
        g = lab.argmax(axis=1).astype(np.int64)
        g[lab.max(axis=1) == 0] = -1
        return g

    def build_gamma(self):
        """Γ for every modality pair: known pairs plus inferred pairs among the
        samples without a known partner (ranked within matched clusters, or
        within label classes for ``matching="labels"``)."""
        gamma = {}
        for m in range(self.M):
            for m2 in range(m + 1, self.M):
                known = self.pairs.get((m, m2), np.empty((0, 2), dtype=np.int64))
                if self.fully_paired:
                    gamma[(m, m2)] = known
                    continue
                if self.matching == "labels":
                    a, b = self.label_group[m].copy(), self.label_group[m2].copy()
                    sa, sb = self.label_rank[m], self.label_rank[m2]
                    n_groups = int(max(a.max(initial=-1), b.max(initial=-1))) + 1
                else:
                    a, b = self.assignment(m).copy(), self.assignment(m2).copy()
                    sa = self.H[m][np.arange(self.n[m]), np.maximum(a, 0)]
                    sb = self.H[m2][np.arange(self.n[m2]), np.maximum(b, 0)]
                    n_groups = self.k
                # Known pairs override inferred ones: their samples are not
                # paired again.
                a[known[:, 0]] = -1
                b[known[:, 1]] = -1
                inferred = self.K.rank_pairs(a, sa, b, sb, max(n_groups, 1))
                gamma[(m, m2)] = np.vstack([known, inferred])
        self.gamma = gamma
        self._adjacency()

    def _adjacency(self):
        """Per modality: CSR adjacency into the stacked partner indicators."""
        self.adj = []
        for m in range(self.M):
            offs, selfs, others = 0, [], []
            self_mods = []
            for m2 in range(self.M):
                if m2 == m:
                    continue
                g = self.gamma[(min(m, m2), max(m, m2))]
                si, oi = (g[:, 0], g[:, 1]) if m < m2 else (g[:, 1], g[:, 0])
                selfs.append(si)
                others.append(oi + offs)
                self_mods.append(m2)
                offs += self.n[m2]
            si = np.concatenate(selfs)
            oi = np.concatenate(others)
            ptr, idx = _pair_csr(self.n[m], si, oi)
            deg = np.diff(ptr).astype(np.float64)
            self.adj.append((ptr, idx, deg, self_mods))

    # ---- Eq. 7-8: H step; Eq. 9: Z step ---------------------------------
    def update_H(self):
        for m in range(self.M):
            ptr, idx, deg, mods = self.adj[m]
            partners = np.vstack([self.H[m2] for m2 in mods])
            C = np.empty_like(self.H[m])
            self.K.gather_sum(ptr, idx, partners, C)
            C += self.XZ[m]
            self.K.nnls_rows(self.Z[m].T @ self.Z[m], C, deg, self.H[m], _H_SWEEPS, 0.0)
            self._assign[m] = None

    def update_Z(self):
        for m in range(self.M):
            self.Z[m] = _solve_z(self.Xs[m], self.H[m])
            self.XZ[m] = _xz(self.Xs[m], self.Z[m])

    # ---- Eq. 5, 10-11: codes --------------------------------------------
    def aligned(self):
        """Rows of the training correspondence: modality-0 samples with a
        partner in every other modality (first partner; repeats removed)."""
        if self.M == 2 and not self.gamma[(0, 1)].size:
            return [np.empty(0, dtype=np.int64)] * 2
        rows = [np.arange(self.n[0])]
        keep = np.ones(self.n[0], dtype=bool)
        partner = []
        for m in range(1, self.M):
            g = self.gamma[(0, m)]
            first = np.full(self.n[0], -1, dtype=np.int64)
            # Reverse order so that the first listed partner wins.
            first[g[::-1, 0]] = g[::-1, 1]
            keep &= first >= 0
            partner.append(first)
        rows = [rows[0][keep]] + [p[keep] for p in partner]
        return rows

    def update_codes(self, n_iter, final=False):
        """Fit the code function on the aligned indicators, then B (Eq. 11).

        Inside the loop (``final=False``) the fit is warm-started and uses at
        most ``_CODE_SAMPLE`` aligned rows (a fixed-size random subset, as ITQ
        is usually trained), so that its cost does not grow with n; the final
        fit uses every aligned row.  B and the per-modality codes always
        cover every aligned row."""
        rows = self.aligned()
        if rows[0].size == 0:
            raise ValueError(NO_CORRESPONDENCE)
        fit_rows = rows
        if not final and rows[0].size > _CODE_SAMPLE:
            pick = np.sort(self.rng.choice(rows[0].size, _CODE_SAMPLE, replace=False))
            fit_rows = [r[pick] for r in rows]
        self.code = self.code_cls.fit([self.H[m][r] for m, r in enumerate(fit_rows)],
                                      self.n_bits, self.rng, n_iter=n_iter,
                                      previous=self.code)
        self.apply_code(self.code, rows)

    def apply_code(self, code, rows):
        """Per-modality codes ``Ht`` and common code B (Eq. 11) of the aligned
        ``rows`` under the code function ``code``."""
        self.code = code
        proj = [code.project(self.H[m][r]) for m, r in enumerate(rows)]
        self.rows = rows
        self.B = np.where(np.add.reduce(proj) > 0, 1, -1).astype(np.int8)
        self.Ht = [np.where(p > 0, 1, -1).astype(np.int8) for p in proj]

    # ---- Eq. 6 ------------------------------------------------------------
    def objective(self):
        Lc, Ls, Lq = self.objective_sums()
        return Lc, max(Ls, 0.0), Lq

    def objective_sums(self):
        """The terms of Eq. 6 as plain sums over samples and pairs (so
        partitions add up); Ls may round slightly below 0."""
        Lc = 0.0
        for (m, m2), g in self.gamma.items():
            Lc += self.K.pair_loss(g, self.H[m], self.H[m2])
        Ls = 0.0
        for m in range(self.M):
            H, Z = self.H[m], self.Z[m]
            Ls += (self.sqX[m] - 2.0 * np.einsum("ij,ij->", H, self.XZ[m])
                   + np.einsum("ij,ij->", H.T @ H, Z.T @ Z))
        Lq = self.lam * sum(4.0 * np.count_nonzero(self.B != Ht) for Ht in self.Ht)
        return Lc, Ls, Lq


def check_params(n_samples, n_clusters, n_neighbors, lam, max_iter, tol, code_scheme,
                 joint, matching, labels, encoder, n_anchors, match_score):
    """Validate FlexCMH's parameters (``n_samples``: rows per modality)."""
    k = check_int(n_clusters, "n_clusters", 1)
    for m, n in enumerate(n_samples):
        if k > n:
            raise ValueError(
                f"'n_clusters' must be <= the number of samples of every modality; "
                f"modality {m} has {n} samples. Got {k} instead.")
    ns = check_int(n_neighbors, "n_neighbors", 1)
    lam = check_float(lam, "lam", 0.0)
    max_iter = check_int(max_iter, "max_iter", 0)
    tol = check_float(tol, "tol", 0.0)
    code_scheme = check_option(code_scheme, "code_scheme", SCHEMES)
    joint = check_bool(joint, "joint")
    matching = check_option(matching, "matching", MATCHINGS)
    if matching == "labels" and labels is None:
        raise ValueError("matching='labels' (FlexCMH(nC)) needs 'labels': one array "
                         "per modality. Got labels=None.")
    encoder = check_option(encoder, "encoder", ENCODERS)
    n_anchors = check_int(n_anchors, "n_anchors", 1)
    match_score = check_option(match_score, "match_score", MATCH_SCORES)
    return (k, ns, lam, max_iter, tol, code_scheme, joint, matching, encoder, n_anchors,
            match_score)


def fit_flexcmh(Xs, pairs, *, n_bits, labels, rng, n_threads, verbose, callback,
                n_clusters=10, n_neighbors=5, lam=1.0, max_iter=500, tol=1e-4,
                code_scheme="itq", joint=True, matching="clusters", encoder="kernel",
                n_anchors=1000, match_score="auto"):
    """Fit FlexCMH (called by :func:`flexcmh_fast.train`, which has validated
    ``Xs``, ``pairs``, ``labels``, ``rng`` and ``n_threads``).

    Parameters
    ----------
    Xs : list of ndarray or CSR matrix
        One ``(n_m, d_m)`` float64 matrix per modality.
    pairs : dict
        ``{(m, m2): int64 (P, 2)}``, ``m < m2``: known correspondences.
    n_bits : int
        Code length.
    labels : list of ndarray or None
        Used only by ``matching="labels"``.
    rng : numpy.random.Generator
    n_threads : int
        Threads for the Numba kernels and for BLAS.
    verbose : bool
        Progress bar with the objective.
    callback : callable or None
        ``callback(iteration, state)``; ``state`` is a dict with
        ``objective``, ``terms`` (Lc, Ls, Lq), ``H``, ``Z`` and
        ``correspondence``.  Returning ``True`` stops training.
    n_clusters : int, default=10
        k, clusters per modality (paper: 10 Wiki, 25 MIRFlickr, 80 NUS-WIDE).
    n_neighbors : int, default=5
        ns of Eq. 1.
    lam : float, default=1.0
        λ of Eq. 6 (weight of the quantisation term).
    max_iter : int, default=500
        Outer iterations of Algorithm 1.
    tol : float, default=1e-4
        Stop when the objective changes by less than ``tol`` times its value.
    code_scheme : {"itq", "kmeans"}, default="itq"
        Code function (see :mod:`flexcmh_fast._flexcmh_codes`).
    joint : bool, default=True
        ``False``: FlexCMH(nJ), match once and never re-match.
    matching : {"clusters", "labels"}, default="clusters"
        ``"labels"``: FlexCMH(nC), the correspondence of samples without a
        known pair comes from equal labels.
    encoder : {"kernel", "nnls"}, default="kernel"
        Out-of-sample indicators of new samples.  ``"nnls"``: the paper's
        Eq. 3 reading, ``argmin_{h >= 0} ||x - Z_m h||^2``.  ``"kernel"``:
        kernel ridge regression from RBF features (against ``n_anchors``
        training rows) to the learned training indicators of the samples
        with a known partner (every sample if none has one), fitted once
        after training (see :func:`fit_kernel_encoder`); better validation
        MAP on Wiki (docs/flexcmh.md).
    n_anchors : int, default=1000
        Anchors of the kernel encoder per modality (at most the number of
        rows it is fitted on).
    match_score : {"auto", "profiles", "profiles+sizes"}, default="auto"
        Cluster matching score.  ``"profiles"``: Eq. 1 (ordered-neighbour
        profiles) alone.  ``"profiles+sizes"``: Eq. 1 plus the mismatch
        ``|log(n_c / n_c')|`` of the clusters' relative sizes, both scaled to
        [0, 1].  ``"auto"``: ``"profiles+sizes"`` for a modality pair without
        known pairs, ``"profiles"`` otherwise (the validation winner on Wiki
        in both cases, docs/flexcmh.md).

    Returns
    -------
    FlexCMHModel
    """
    (k, ns, lam, max_iter, tol, code_scheme, joint, matching, encoder, n_anchors,
     match_score) = check_params([X.shape[0] for X in Xs], n_clusters, n_neighbors, lam,
                                 max_iter, tol, code_scheme, joint, matching, labels,
                                 encoder, n_anchors, match_score)
    from threadpoolctl import threadpool_limits

    # Tiny problems (Wiki: ~2,000 x 10 indicators) finish each kernel in
    # microseconds; waking worker threads would cost more than it saves.
    size = sum(X.shape[0] for X in Xs) * k
    threads = 1 if size < _PARALLEL_MIN_SIZE else n_threads
    # BLAS stays on one thread: its worker threads, woken right after a Numba
    # parallel region, contend with Numba's for the same cores and made
    # products like H.T @ H up to 100x slower (measured: docs/performance.md).
    with threadpool_limits(limits=1, user_api="blas"), numba_threads(threads):
        return run_flexcmh(
            Xs, pairs, n_bits=n_bits, labels=labels, rng=rng, verbose=verbose,
            callback=callback, k=k, ns=ns, lam=lam, max_iter=max_iter, tol=tol,
            code_scheme=code_scheme, joint=joint, matching=matching, kernels=K,
            encoder=encoder, n_anchors=n_anchors, match_score=match_score)


def run_flexcmh(Xs, pairs, *, n_bits, labels, rng, verbose, callback, k, ns, lam,
                max_iter, tol, code_scheme, joint, matching, kernels, encoder="kernel",
                n_anchors=1000, match_score="auto"):
    """Algorithm 1 on validated inputs, with the kernel set ``kernels`` (the
    Numba module, or the numpy references of the tests for the reference
    loop of the benchmarks).  Thread limits are the caller's business."""
    tr = _Trainer(Xs, pairs, labels, n_bits, k, ns, lam, joint, matching,
                  code_scheme, rng, kernels, match_score)
    if matching == "labels":
        tr.label_group = [tr._label_groups(m) for m in range(tr.M)]
        # Rank within a label class by a random draw: samples of the same
        # class are interchangeable for FlexCMH(nC).
        tr.label_rank = [rng.random(n) for n in tr.n]
    tr.init_semi_nmf()
    if matching == "labels":
        tr.build_gamma()
        tr.match_clusters(False, extra_pairs=tr.gamma)
    else:
        tr.match_clusters(not tr.fully_paired)
        tr.build_gamma()
    tr.update_codes(_CODE_ITERS_LOOP)
    bar = ProgressBar(max_iter, "FlexCMH", verbose)
    prev = sum(tr.objective())
    n_iter = 0
    for it in range(max_iter):
        tr.update_H()
        tr.update_Z()
        if joint and matching == "clusters" and not tr.fully_paired:
            tr.match_clusters(True, rematch=True)
            tr.build_gamma()
        tr.update_codes(_CODE_ITERS_LOOP)
        terms = tr.objective()
        total = sum(terms)
        tr.history.append(terms)
        n_iter = it + 1
        bar.update(1, info=f"objective {total:.6g}")
        stop = False
        if callback is not None:
            stop = bool(callback(it, {
                "objective": total, "terms": terms, "H": tr.H, "Z": tr.Z,
                "correspondence": tr.gamma}))
        if stop or abs(prev - total) <= tol * abs(prev):
            break
        prev = total
    tr.update_codes(_CODE_ITERS_FINAL, final=True)
    bar.close()
    # The encoder is fitted after training and draws from rng last, so the
    # choice of encoder does not change the learned H, Z or codes.
    kernel_enc = None
    if encoder == "kernel":
        kernel_enc = [fit_kernel_encoder(X, H, n_anchors, rng,
                                         rows=_known_rows(pairs, m, k))
                      for m, (X, H) in enumerate(zip(Xs, tr.H))]
    return FlexCMHModel(
        Zs=tr.Z, code=tr.code, n_bits=n_bits, n_features=[X.shape[1] for X in Xs],
        history=np.array(tr.history, dtype=np.float64).reshape(-1, 3),
        codes=pack_codes(tr.B),
        train_codes=[pack_codes(tr.code.signs(H)) for H in tr.H],
        cluster_matching=tr.cluster_matching,
        correspondence=tr.gamma, n_iter=n_iter, kernel_encoder=kernel_enc,
        params={"n_clusters": k, "n_neighbors": ns, "lam": lam, "max_iter": max_iter,
                "tol": tol, "code_scheme": code_scheme, "joint": joint,
                "matching": matching, "encoder": encoder, "n_anchors": n_anchors,
                "match_score": match_score})


class FlexCMHModel(HashingModel):
    """A trained FlexCMH model.

    Attributes
    ----------
    n_bits : int
    n_features_ : list of int
        Features per modality.
    centroids_ : list of ndarray (d_m, k)
        Learned centroids ``Z_m``, clusters aligned across modalities.
    codes_ : ndarray of uint8 (n, ceil(n_bits/8))
        Common code B of the training correspondence (one row per aligned
        object: a modality-0 sample with a partner in every modality).
    train_codes_ : list of ndarray of uint8 (n_m, ceil(n_bits/8))
        Learned code of every training sample of each modality, from its
        training indicator vector (the paper's H̃m), in that modality's row
        order.  These indicators were fitted jointly with the matched samples
        of the other modalities, so they carry cross-modal information that
        re-encoding the same rows with :meth:`encode` (from their own
        features alone) only approximates: use them as the database codes
        when the database is the training set (see docs/evaluation.md).
    history_ : ndarray (n_iter, 3)
        Per iteration the terms of Eq. 6: inter-modal loss Lc (Eq. 4),
        reconstruction loss Ls (Eq. 3), weighted quantisation loss λLq (Eq. 5).
        Their sum is the objective.
    cluster_matching_ : ndarray of int64 (M, k)
        ``[m, c]``: the initial (k-means) cluster of modality m aligned to
        cluster c (row 0 is the identity).
    correspondence_ : dict {(m, m2): ndarray of int64 (P, 2)}
        Γ of the last iteration as index pairs (known pairs first).
    n_iter_ : int
        Outer iterations run.
    encoder_ : {"kernel", "nnls"}
        How :meth:`encode` computes the indicators of new samples.
    anchors_, sigmas_, encoder_weights_ : lists (per modality) or None
        The kernel encoder (``encoder_ == "kernel"``): anchors ``(a, d_m)``,
        RBF width and regression weights ``(a, k)``; None for ``"nnls"``.
    """

    kind = "FlexCMHModel"

    def __init__(self, Zs, code, n_bits, n_features, history, codes, train_codes,
                 cluster_matching, correspondence, n_iter, params, kernel_encoder=None):
        self.centroids_ = [np.ascontiguousarray(Z) for Z in Zs]
        self.code_ = code
        self.n_bits = int(n_bits)
        self.n_features_ = [int(d) for d in n_features]
        self.history_ = history
        self.codes_ = codes
        self.train_codes_ = list(train_codes)
        self.cluster_matching_ = cluster_matching
        self.correspondence_ = correspondence
        self.n_iter_ = int(n_iter)
        self.params = dict(params)
        # Models saved before the kernel encoder existed encode with NNLS.
        self.encoder_ = self.params.get("encoder", "nnls")
        if (kernel_encoder is None) != (self.encoder_ != "kernel"):
            raise ValueError(f"encoder {self.encoder_!r} needs kernel_encoder to be "
                             f"{'given' if self.encoder_ == 'kernel' else 'None'}.")
        if kernel_encoder is None:
            self.anchors_ = self.sigmas_ = self.encoder_weights_ = None
        else:
            self.anchors_ = [np.ascontiguousarray(a, dtype=np.float64)
                             for a, _, _ in kernel_encoder]
            self.sigmas_ = [float(sg) for _, sg, _ in kernel_encoder]
            self.encoder_weights_ = [np.ascontiguousarray(w, dtype=np.float64)
                                     for _, _, w in kernel_encoder]

    @property
    def objective_(self):
        """Objective of Eq. 6 per iteration (sum of the three terms)."""
        return self.history_.sum(axis=1)

    def indicators(self, X, modality):
        """Indicator vectors of new samples, by the model's encoder.

        ``"nnls"``: ``h = argmin_{h >= 0} ||x - Z_m h||^2`` per row.
        ``"kernel"``: ``h = phi(x) W_m`` (RBF features against the anchors
        times the regression weights).  ``X`` must already be validated
        (float64 dense or CSR)."""
        if self.encoder_ == "kernel":
            out = np.empty((X.shape[0], self.encoder_weights_[modality].shape[1]))
            for s, e, Phi in rbf_blocks(X, self.anchors_[modality], self.sigmas_[modality],
                                        _ENC_BLOCK):
                np.matmul(Phi, self.encoder_weights_[modality], out=out[s:e])
            return out
        return self.nnls_indicators(X, modality)

    def nnls_indicators(self, X, modality):
        """``h = argmin_{h >= 0} ||x - Z_m h||^2`` per row (Eq. 3 with the
        learned centroids; the ``"nnls"`` encoder).  ``X`` must already be
        validated (float64 dense or CSR)."""
        from threadpoolctl import threadpool_limits

        Z = self.centroids_[modality]
        Q = Z.T @ Z
        out = np.zeros((X.shape[0], Z.shape[1]))
        zero = np.zeros(min(X.shape[0], _ENCODE_BATCH))
        # One BLAS thread beside the Numba kernel (see fit_flexcmh).
        with threadpool_limits(limits=1, user_api="blas"):
            for s in range(0, X.shape[0], _ENCODE_BATCH):
                e = min(s + _ENCODE_BATCH, X.shape[0])
                H = np.zeros((e - s, Z.shape[1]))
                K.nnls_rows(Q, _xz(X[s:e], Z), zero[:e - s], H, _ENCODE_SWEEPS, _ENCODE_TOL)
                out[s:e] = H
        return out

    def _encode_signs(self, X, modality):
        if X.shape[0] == 0:
            return np.zeros((0, self.n_bits), dtype=np.int8)
        return self.code_.signs(self.indicators(X, modality))

    def _get_state(self):
        meta = {
            "n_bits": self.n_bits, "n_features": self.n_features_,
            "n_iter": self.n_iter_, "params": self.params,
            "pair_keys": [list(key) for key in self.correspondence_],
        }
        arrays = {f"Z_{m}": Z for m, Z in enumerate(self.centroids_)}
        arrays.update(self.code_.state("code_"))
        arrays["history"] = self.history_
        # np.asarray: a model trained on Dask holds dask arrays here; saving
        # computes them.
        arrays["codes"] = np.asarray(self.codes_)
        arrays.update({f"train_codes_{m}": np.asarray(c)
                       for m, c in enumerate(self.train_codes_)})
        arrays["cluster_matching"] = self.cluster_matching_
        if self.encoder_ == "kernel":
            meta["sigmas"] = self.sigmas_
            for m, (A, W) in enumerate(zip(self.anchors_, self.encoder_weights_)):
                arrays[f"anchors_{m}"] = A
                arrays[f"encoder_weights_{m}"] = W
        for m, m2 in self.correspondence_:
            arrays[f"gamma_{m}_{m2}"] = np.asarray(self.correspondence_[(m, m2)])
        return meta, arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        try:
            M = len(meta["n_features"])
            params = meta["params"]
            code = code_class(params["code_scheme"]).from_state(arrays, "code_")
            kernel_enc = None
            if params.get("encoder", "nnls") == "kernel":
                kernel_enc = [(arrays[f"anchors_{m}"], float(meta["sigmas"][m]),
                               arrays[f"encoder_weights_{m}"]) for m in range(M)]
            model = cls(
                Zs=[arrays[f"Z_{m}"] for m in range(M)], code=code,
                n_bits=meta["n_bits"], n_features=meta["n_features"],
                history=arrays["history"], codes=arrays["codes"],
                train_codes=[arrays[f"train_codes_{m}"] for m in range(M)],
                cluster_matching=arrays["cluster_matching"],
                correspondence={(int(a), int(b)): arrays[f"gamma_{a}_{b}"]
                                for a, b in meta["pair_keys"]},
                n_iter=meta["n_iter"], params=params, kernel_encoder=kernel_enc)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"Corrupt FlexCMHModel file: missing or bad entry {exc}.") from None
        for m, (Z, d) in enumerate(zip(model.centroids_, model.n_features_)):
            if Z.ndim != 2 or Z.shape[0] != d:
                raise ValueError(f"Corrupt FlexCMHModel file: centroids {m} have shape {Z.shape}.")
            if model.encoder_ == "kernel":
                A, W = model.anchors_[m], model.encoder_weights_[m]
                if (A.ndim != 2 or A.shape[1] != d or W.ndim != 2
                        or W.shape != (A.shape[0], Z.shape[1]) or not model.sigmas_[m] > 0):
                    raise ValueError(f"Corrupt FlexCMHModel file: kernel encoder {m} has anchors "
                                     f"{A.shape}, weights {W.shape}, sigma {model.sigmas_[m]}.")
        return model
