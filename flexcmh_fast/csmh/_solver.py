"""CSMH: supervised cross-modal hashing by kernelisation, MMD alignment of a
common latent space, label-similarity embedding and discrete code updates.

Only the abstract of Li et al. (IEEE TKDE 37(5), 2025) is available; the
objective implemented here is our formulation of its four parts and is
written out term by term in ``docs/csmh.md``.  In short, with ``n`` paired
training objects, ``M`` modalities, ``r`` bits:

    J(B, W, G) = (1/n)   sum_m ||B - K_m W_m||^2                 fit
               + reg     sum_m ||W_m||^2  (bias row excluded)      ridge
               + beta    sum_{m<m'} ||mean(K_m W_m) - mean(K_m' W_m')||^2
               + beta    sum_{m<m'} sum_c ||mean_c(K_m W_m) - mean_c(K_m' W_m')||^2
               + gamma   [(1/n) ||Y - B G||^2 + reg ||G||^2]      label regression
               + alpha/(n^2 r) ||r S - B B^T||^2                 similarity embedding

with ``K_m = [phi_m(X_m), 1]`` the RBF kernel features of modality ``m``
against ``n_anchors`` anchors plus a bias column, ``B`` in {-1, +1}^{n x r}
and ``S = 2 Yn Yn^T - 1`` (``Yn`` the row-normalised label matrix, never
formed as ``n x n``).  Each step is an exact (W, G) or coordinate-wise (B)
minimiser, so the objective never increases.
"""
from dataclasses import dataclass

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._base import history_dict
from .._progress import progress
from .._rbf import BLOCK_ROWS, mean_anchor_distance, rbf_blocks
from ..search import pack_codes

# Rows of kernel features computed at once: bounds the temporaries
# (block x n_anchors dot products) whatever the number of samples.
_BLOCK_ROWS = BLOCK_ROWS
# Training kernel features are kept in float64 while all modalities' features
# fit in this many bytes (fastest: no conversions); beyond it in float32
# (half the memory, upcast block by block for every product).
_FLOAT64_FEATURE_BYTES = 1 << 30

# RBF width = SIGMA_FACTOR x mean sample-to-anchor distance (sigma=None).
SIGMA_FACTOR = 0.35

HISTORY_TERMS = ("objective", "fit", "ridge", "mmd_marginal", "mmd_conditional",
                 "label", "similarity", "flips")


# --------------------------------------------------------------------------
# Kernel features
# --------------------------------------------------------------------------
def kernel_features(X, anchors, sigma, dtype=np.float64, block_rows=None, out=None):
    """RBF kernel features of every row of ``X`` against ``anchors``.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n, d)
        Never densified: only ``block_rows x n_anchors`` dot products are
        held at once.
    anchors : ndarray of shape (n_anchors, d)
    sigma : float > 0
    dtype : numpy dtype of the result (float32 halves the stored features).
    block_rows : int, optional
        Rows per block (default ``_BLOCK_ROWS`` = 8192).
    out : ndarray of shape (n, n_anchors), optional
        Written in place (may be a strided view), so no second copy of the
        features is ever made.

    Returns
    -------
    ndarray of shape (n, n_anchors)
    """
    if out is None:
        out = np.empty((X.shape[0], anchors.shape[0]), dtype=dtype)
    for s, e, phi in rbf_blocks(X, anchors, sigma, block_rows or _BLOCK_ROWS):
        out[s:e] = phi
    return out


def _sigma_heuristic(X, anchors, rng, n_probe=1000):
    """``SIGMA_FACTOR`` x the mean Euclidean distance between (up to ``n_probe``)
    training rows and the anchors.  Narrower than the mean: the hash function
    then reproduces the training codes (the retrieval database) more closely
    and, on Wiki images, also generalises better (docs/csmh.md, "Results on
    Wiki", "RBF width")."""
    n = X.shape[0]
    rows = np.sort(rng.choice(n, size=min(n_probe, n), replace=False))
    mean_dist = mean_anchor_distance(X[rows], anchors)
    # all probes identical to the anchors (constant data): any width works
    return SIGMA_FACTOR * mean_dist if mean_dist > 0 else 1.0


def _blocked_matmul_t(K, R, block_rows=None):
    """K^T R in float64; a float32-stored K is upcast one block at a time."""
    if K.dtype == np.float64:
        return K.T @ R
    block_rows = block_rows or _BLOCK_ROWS
    out = np.zeros((K.shape[1], R.shape[1]))
    for s in range(0, K.shape[0], block_rows):
        out += K[s:s + block_rows].astype(np.float64).T @ R[s:s + block_rows]
    return out


def _blocked_matmul(K, W, block_rows=None):
    """K W in float64; a float32-stored K is upcast one block at a time."""
    if K.dtype == np.float64:
        return K @ W
    block_rows = block_rows or _BLOCK_ROWS
    out = np.empty((K.shape[0], W.shape[1]))
    for s in range(0, K.shape[0], block_rows):
        out[s:s + block_rows] = K[s:s + block_rows].astype(np.float64) @ W
    return out


# --------------------------------------------------------------------------
# Discrete code update (coordinate descent over single bits)
# --------------------------------------------------------------------------
@numba.njit(cache=True)
def _b_step(B, U, Yn, E, G, g_sq, P, s, Q, gamma, alpha_eff, n_sweeps):
    """Minimise, over B in {-1,1}^{n x r}, by exact single-entry flips:

        -2 tr(B^T U) + gamma ||Y - B G||^2 + alpha_eff ||r S - B B^T||^2,

    S = 2 Yn Yn^T - 1.  A flip of B[i, k] is taken only when it strictly
    lowers the objective, so the objective never increases.  Maintained
    statistics (updated in O(r + c) per accepted flip, so nothing is n x n):
    E = Y - B G (residuals), P = B^T Yn (r x c), s = B^T 1, Q = B^T B.
    Returns the number of flips.
    """
    n, r = B.shape
    c = Yn.shape[1]
    flips = 0
    for _ in range(n_sweeps):
        sweep_flips = 0
        for i in range(n):
            yy = 0.0
            for t in range(c):
                yy += Yn[i, t] * Yn[i, t]
            # R_ii = r S_ii - b_i.b_i: the j = i term, excluded from the sum
            r_ii = r * (2.0 * yy - 1.0) - r
            for k in range(r):
                b = B[i, k]
                delta = -2.0 * b
                # linear (fit) term
                change = 4.0 * U[i, k] * b
                if gamma > 0.0:
                    ge = 0.0
                    for t in range(E.shape[1]):
                        ge += G[k, t] * E[i, t]
                    change += gamma * (-2.0 * delta * ge + delta * delta * g_sq[k])
                if alpha_eff > 0.0:
                    # T = sum_{j != i} b_jk (r S_ij - b_i.b_j)
                    ys = 0.0
                    for t in range(c):
                        ys += Yn[i, t] * P[k, t]
                    bq = 0.0
                    for l in range(r):
                        bq += B[i, l] * Q[l, k]
                    T = r * (2.0 * ys - s[k]) - bq - b * r_ii
                    change += alpha_eff * (-4.0 * delta * T + 2.0 * (n - 1) * delta * delta)
                if change < 0.0:
                    if gamma > 0.0:
                        for t in range(E.shape[1]):
                            E[i, t] -= delta * G[k, t]
                    for t in range(c):
                        P[k, t] += delta * Yn[i, t]
                    s[k] += delta
                    for l in range(r):
                        if l != k:
                            Q[l, k] += delta * B[i, l]
                            Q[k, l] = Q[l, k]
                    B[i, k] = -b
                    sweep_flips += 1
        flips += sweep_flips
        if sweep_flips == 0:
            break
    return flips


# --------------------------------------------------------------------------
# The problem: data, statistics and objective
# --------------------------------------------------------------------------
class _Problem:
    """Everything fixed during the alternating updates (features, labels,
    Cholesky factor of the W-step system) and the objective's evaluation."""

    def __init__(self, Ks, Y, n_bits, alpha, beta, gamma, reg):
        self.Ks = Ks                      # list of (n, A_m + 1), last column 1
        self.n = Ks[0].shape[0]
        self.r = n_bits
        self.M = len(Ks)
        self.alpha, self.beta, self.gamma, self.reg = alpha, beta, gamma, reg
        self.Y = Y                        # (n, c) float64 0/1
        norms = np.sqrt((Y * Y).sum(axis=1))
        self.Yn = Y / np.where(norms > 0, norms, 1.0)[:, None]
        counts = Y.sum(axis=0)
        self.class_weights = Y / np.where(counts > 0, counts, 1.0)[None, :]   # (n, c)
        # Means operator D^T (rows: overall mean, then each class mean).
        self.Dt = np.vstack([np.full((1, self.n), 1.0 / self.n), self.class_weights.T])
        self.Es = [_blocked_matmul_t(K, self.Dt.T).T for K in Ks]           # (1+c, A+1)
        self.sizes = [K.shape[1] for K in Ks]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self._factor_w_system()

    def _factor_w_system(self):
        """Factor the W-step's normal equations (times n) once; they do not
        depend on B.  The system is  (Hd + n beta F^T F) W = K^T B  with
        Hd = blockdiag(K_m^T K_m + n reg I') (I' skips the bias) and F the
        MMD operator: one block row per modality pair (m, m'), holding E_m
        in block m and -E_m' in block m', so ||F W||^2 is the sum of the MMD
        terms.  F has only P(1+c) rows (P pairs), so the coupling is solved
        by the Woodbury identity: one Cholesky per modality (A^3/3 each
        instead of (MA)^3/3) plus a small P(1+c)-square system.
        Positive definite: reg > 0 on every anchor weight and the bias
        column (all ones) has Gram entry n > 0."""
        n, M = self.n, self.M
        self.h_factors = []
        for m in range(M):
            gram = _blocked_matmul_t(self.Ks[m], self.Ks[m])
            ridge = np.full(self.sizes[m], n * self.reg)
            ridge[-1] = 0.0   # the bias is not shrunk
            gram[np.diag_indices_from(gram)] += ridge
            self.h_factors.append(scipy.linalg.cho_factor(gram, lower=True,
                                                          check_finite=False))
        pairs = [(m, m2) for m in range(M) for m2 in range(m + 1, M)]
        self.coupled = self.beta > 0
        if not self.coupled:
            return
        rows = self.Es[0].shape[0]
        F = np.zeros((len(pairs) * rows, self.offsets[-1]))
        for p, (m, m2) in enumerate(pairs):
            F[p * rows:(p + 1) * rows, self.offsets[m]:self.offsets[m + 1]] = self.Es[m]
            F[p * rows:(p + 1) * rows, self.offsets[m2]:self.offsets[m2 + 1]] = -self.Es[m2]
        self.F = F
        self.Z = self._solve_blocks(F.T)                     # Hd^-1 F^T
        inner = F @ self.Z
        inner[np.diag_indices_from(inner)] += 1.0 / (n * self.beta)
        self.inner_factor = scipy.linalg.cho_factor(inner, lower=True, check_finite=False)

    def _solve_blocks(self, R):
        """Hd^-1 R, one modality block at a time."""
        return np.vstack([
            scipy.linalg.cho_solve(self.h_factors[m], R[self.offsets[m]:self.offsets[m + 1]],
                                   check_finite=False)
            for m in range(self.M)])

    # -- steps ------------------------------------------------------------
    def w_step(self, B):
        """The exact minimiser of J over (W_1, ..., W_M) for fixed B."""
        Bf = B.astype(np.float64)
        rhs = np.vstack([_blocked_matmul_t(K, Bf) for K in self.Ks])
        W = self._solve_blocks(rhs)
        if self.coupled:
            # (Hd + n beta F^T F)^-1 = Hd^-1 - Z (I/(n beta) + F Z)^-1 Z^T
            W -= self.Z @ scipy.linalg.cho_solve(self.inner_factor, self.F @ W,
                                                 check_finite=False)
        return [W[self.offsets[m]:self.offsets[m + 1]] for m in range(self.M)]

    def g_step(self, B):
        Bf = B.astype(np.float64)
        lhs = Bf.T @ Bf + self.n * self.reg * np.eye(self.r)
        return scipy.linalg.solve(lhs, Bf.T @ self.Y, assume_a="pos")

    def b_step(self, B, Ws, G, n_sweeps):
        """Coordinate descent on B (in place); returns the number of flips."""
        U = np.zeros((self.n, self.r))
        for K, W in zip(self.Ks, Ws):
            U += _blocked_matmul(K, W)
        Bf = B.astype(np.float64)
        E = np.ascontiguousarray(self.Y - Bf @ G) if self.gamma > 0 else np.zeros((self.n, 1))
        Gc = np.ascontiguousarray(G) if self.gamma > 0 else np.zeros((self.r, 1))
        g_sq = (Gc * Gc).sum(axis=1)
        P = np.ascontiguousarray(Bf.T @ self.Yn)
        s = Bf.sum(axis=0)
        Q = Bf.T @ Bf
        # n J_B = -2 tr(B^T U) + gamma ||Y - BG||^2 + alpha/(n r) ||rS - BB^T||^2 + const
        alpha_eff = self.alpha / (self.n * self.r)
        return _b_step(B, U, self.Yn, E, Gc, g_sq, P, s, Q, self.gamma, alpha_eff, n_sweeps)

    # -- objective --------------------------------------------------------
    def terms(self, B, Ws, G):
        """Every term of J (see the module docstring) as a dict."""
        n, r = self.n, self.r
        Bf = B.astype(np.float64)
        fit = 0.0
        means = []
        for K, W, E in zip(self.Ks, Ws, self.Es):
            fit += float(((Bf - _blocked_matmul(K, W)) ** 2).sum()) / n
            means.append(E @ W)                         # (1 + c, r)
        ridge = self.reg * sum(float((W[:-1] ** 2).sum()) for W in Ws)
        marg = cond = 0.0
        for m in range(self.M):
            for m2 in range(m + 1, self.M):
                diff = means[m] - means[m2]
                marg += float((diff[0] ** 2).sum())
                cond += float((diff[1:] ** 2).sum())
        label = 0.0
        if self.gamma > 0:
            label = self.gamma * (float(((self.Y - Bf @ G) ** 2).sum()) / n
                                  + self.reg * float((G ** 2).sum()))
        sim = 0.0
        if self.alpha > 0:
            sim = self.alpha / (n * n * r) * _similarity_residual(Bf, self.Yn, r)
        out = {"fit": fit, "ridge": ridge, "mmd_marginal": self.beta * marg,
               "mmd_conditional": self.beta * cond, "label": label, "similarity": sim}
        out["objective"] = sum(out.values())
        return out


def _similarity_residual(Bf, Yn, r):
    """||r S - B B^T||_F^2 with S = 2 Yn Yn^T - 1, through r x r / c x c / r x c
    products only (nothing n x n):
    r^2 ||S||^2 - 2 r tr(B^T S B) + ||B^T B||^2."""
    n = Bf.shape[0]
    yty = Yn.T @ Yn
    y1 = Yn.sum(axis=0)
    s_sq = 4.0 * float((yty ** 2).sum()) - 4.0 * float(y1 @ y1) + float(n) * n
    ytb = Yn.T @ Bf
    b1 = Bf.sum(axis=0)
    tr_bsb = 2.0 * float((ytb ** 2).sum()) - float(b1 @ b1)
    btb = Bf.T @ Bf
    return max(r * r * s_sq - 2.0 * r * tr_bsb + float((btb ** 2).sum()), 0.0)


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------
def _object_order(pairs, n_samples):
    """Row order of every modality such that row t of each is object t.

    CSMH needs complete one-to-one pairing: every modality has the same
    number of samples n and pairs (0, m) for every m > 0 form a bijection.
    Other given pairs (m, m2) must agree with it.  Objects are numbered by
    their row in modality 0.
    """
    M = len(n_samples)
    if not pairs:
        raise ValueError(
            "method='csmh' needs completely paired training data: pass pairs='all' "
            "(row i of every modality is one object) or a complete one-to-one pairing. "
            "Got no pairs."
        )
    if len(set(n_samples)) != 1:
        raise ValueError(
            "method='csmh' needs completely paired data: every modality must have the "
            f"same number of samples. Got sample counts {list(n_samples)} instead."
        )
    n = n_samples[0]
    orders = [np.arange(n, dtype=np.int64)]
    for m in range(1, M):
        if (0, m) not in pairs:
            raise ValueError(
                f"method='csmh' needs a complete pairing between modality 0 and modality {m}; "
                f"'pairs' has no entry for {(0, m)}."
            )
        p = pairs[(0, m)]
        if (p.shape[0] != n or np.unique(p[:, 0]).size != n
                or np.unique(p[:, 1]).size != n):
            raise ValueError(
                f"method='csmh' needs a complete one-to-one pairing: pairs[{(0, m)}] must pair "
                f"each of the {n} samples of modality 0 with exactly one of modality {m}. "
                f"Got {p.shape[0]} pairs covering {np.unique(p[:, 0]).size} and "
                f"{np.unique(p[:, 1]).size} distinct samples."
            )
        order = np.empty(n, dtype=np.int64)
        order[p[:, 0]] = p[:, 1]
        orders.append(order)
    for (m, m2), p in pairs.items():
        if m == 0:
            continue
        # object of row p[:,0] in m must be the object of row p[:,1] in m2
        obj_m = np.empty(n, dtype=np.int64)
        obj_m[orders[m]] = np.arange(n)
        obj_m2 = np.empty(n, dtype=np.int64)
        obj_m2[orders[m2]] = np.arange(n)
        if np.any(obj_m[p[:, 0]] != obj_m2[p[:, 1]]):
            raise ValueError(
                f"pairs[{(m, m2)}] contradicts the pairing given through modality 0 "
                f"(pairs[{(0, m)}] and pairs[{(0, m2)}])."
            )
    return orders


def _label_matrix(labels, orders):
    """Object label matrix (n, c) float64 0/1 from per-modality labels, which
    must agree for paired samples (they describe the same object)."""
    per_mod = [lab[order] for lab, order in zip(labels, orders)]
    for m in range(1, len(per_mod)):
        if not np.array_equal(per_mod[m], per_mod[0]):
            bad = int(np.any((per_mod[m] != per_mod[0]).reshape(len(per_mod[0]), -1),
                             axis=1).sum())
            raise ValueError(
                f"'labels' disagree between modality 0 and modality {m} for {bad} paired "
                "sample(s); paired samples are one object and must carry the same labels."
            )
    lab = per_mod[0]
    if lab.ndim == 1:
        classes, inverse = np.unique(lab, return_inverse=True)
        Y = np.zeros((lab.shape[0], classes.size))
        Y[np.arange(lab.shape[0]), inverse] = 1.0
    else:
        Y = lab.astype(np.float64)
    if Y.shape[1] == 0:
        raise ValueError("'labels' hold no class: CSMH needs at least one label column.")
    return np.ascontiguousarray(Y)


def _per_modality_sigmas(sigma, n_mod):
    """The ``sigma`` setting (validated: None, a float > 0 or a list of
    them) as one entry per modality."""
    if not isinstance(sigma, (list, tuple)):
        return (sigma,) * n_mod
    if len(sigma) != n_mod:
        raise ValueError(
            f"'sigma' as a list needs one value per modality ({n_mod}). "
            f"Got {len(sigma)} values instead."
        )
    return tuple(sigma)


@dataclass(frozen=True)
class CSMHSettings:
    """The settings of one CSMH fit, validated and resolved for its data.

    Attributes
    ----------
    n_bits : int
        Code length r.
    n_anchors : int
        Anchors per modality (at most the number of objects).
    sigmas : tuple
        RBF width per modality; None: :func:`_sigma_heuristic`.
    alpha, beta, gamma, reg : float
        Weights of the objective's terms (module docstring).
    max_iter : int
        Iterations at most.
    tol : float
        Relative decrease of the objective below which the fit stops.
    n_sweeps : int
        Coordinate-descent passes over B per iteration.
    verbose : bool
        Progress bar.
    callback : callable or None
        ``callback(iteration, state)``; returning True stops.
    """

    n_bits: int
    n_anchors: int
    sigmas: tuple
    alpha: float
    beta: float
    gamma: float
    reg: float
    max_iter: int
    tol: float
    n_sweeps: int
    verbose: bool = False
    callback: object = None

    @classmethod
    def from_params(cls, params, n_objects, n_modalities):
        """From the validated parameters of :class:`flexcmh_fast.CSMH` and the
        training data's size."""
        return cls(n_bits=params["n_bits"], n_anchors=min(params["n_anchors"], n_objects),
                   sigmas=_per_modality_sigmas(params["sigma"], n_modalities),
                   alpha=params["alpha"], beta=params["beta"], gamma=params["gamma"],
                   reg=params["reg"], max_iter=params["max_iter"], tol=params["tol"],
                   n_sweeps=params["n_sweeps"], verbose=params["verbose"],
                   callback=params["callback"])


# --------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------
def fit_csmh(Xs, orders, Y, settings, rng):
    """CSMH's alternating minimisation on validated inputs.

    Parameters
    ----------
    Xs : list of ndarray or CSR matrix
        The training rows of each modality.
    orders : list of ndarray of int64
        Each modality's rows of the objects (row ``orders[m][t]`` of
        modality m is object t).
    Y : ndarray (n, c)
        The objects' 0/1 label matrix.
    settings : CSMHSettings
    rng : numpy.random.Generator
        The source of every random draw.

    Returns
    -------
    dict
        The fitted attributes of :class:`flexcmh_fast.CSMH`.
    """
    anchors, sigmas, Ks = _kernel_problem(Xs, orders, settings, rng)
    prob = _Problem(Ks, Y, settings.n_bits, settings.alpha, settings.beta, settings.gamma,
                    settings.reg)
    # Start from label-consistent codes: a random projection of the labels,
    # so objects with the same labels share a code (b_i.b_j = r, the
    # similarity term's target for same-label pairs) and the B-step starts
    # from the label structure rather than from noise.
    R = rng.standard_normal((Y.shape[1], settings.n_bits))
    B = np.where(prob.Yn @ R >= 0, 1, -1).astype(np.int8)
    Ws, history = _alternate(prob, B, settings)
    packed, train_codes = _codes_in_row_orders(B, orders)
    return {
        "anchors_": anchors,
        "sigmas_": [float(sg) for sg in sigmas],
        "weights_": [np.ascontiguousarray(W, dtype=np.float64) for W in Ws],
        "codes_": packed,
        "train_codes_": train_codes,
        "history_": history_dict([[h[t] for t in HISTORY_TERMS] for h in history],
                                 HISTORY_TERMS),
        "n_iter_": len(history),
    }


def _kernel_problem(Xs, orders, settings, rng):
    """Each modality's anchors (drawn from its rows), RBF width and kernel
    features with a bias column, rows in object order.  The features are
    float64 while they fit in ``_FLOAT64_FEATURE_BYTES``, else float32."""
    n, n_anchors = orders[0].shape[0], settings.n_anchors
    fits = 8 * n * (n_anchors + 1) * len(Xs) <= _FLOAT64_FEATURE_BYTES
    dtype = np.float64 if fits else np.float32
    anchors, sigmas, Ks = [], [], []
    for m, X in enumerate(Xs):
        if not np.array_equal(orders[m], np.arange(n)):
            X = X[orders[m]]
        rows = np.sort(rng.choice(n, size=n_anchors, replace=False))
        A = X[rows]
        A = np.ascontiguousarray(A.toarray() if sp.issparse(A) else A, dtype=np.float64)
        sigma = settings.sigmas[m]
        if sigma is None:
            sigma = _sigma_heuristic(X, A, rng)
        K = np.empty((n, n_anchors + 1), dtype=dtype)
        kernel_features(X, A, sigma, out=K[:, :-1])
        K[:, -1] = 1.0
        anchors.append(A)
        sigmas.append(sigma)
        Ks.append(K)
    return anchors, sigmas, Ks


def _alternate(prob, B, settings):
    """The alternating minimisation from the codes ``B`` (updated in
    place): B-step, then W and G refitted to the new codes, until no bit
    flips, the objective's relative decrease is at most ``tol``, the
    callback stops or ``max_iter`` runs out.  Returns the projections and
    the history (one dict of terms per iteration)."""
    Ws = prob.w_step(B)
    G = prob.g_step(B)
    history = []
    bar = progress(settings.max_iter, "CSMH", settings.verbose)
    prev = None
    for it in range(1, settings.max_iter + 1):
        flips = prob.b_step(B, Ws, G, settings.n_sweeps)
        # Refit W and G to the new codes: each iteration ends with a
        # consistent (B, W, G), whose objective is recorded.
        Ws = prob.w_step(B)
        G = prob.g_step(B)
        terms = prob.terms(B, Ws, G)
        terms["flips"] = float(flips)
        history.append(terms)
        bar.update(1, objective=terms["objective"], flips=flips)
        stop = settings.callback is not None and bool(settings.callback(it, {
            "objective": terms["objective"],
            "terms": {name: value for name, value in terms.items() if name != "objective"},
            "B": B}))
        cur = terms["objective"]
        # no flip: B is a fixed point of the B-step and W, G are unchanged
        if stop or flips == 0 or (prev is not None and prev - cur <= settings.tol * abs(prev)):
            break
        prev = cur
    bar.close()
    return Ws, history


def _codes_in_row_orders(B, orders):
    """The packed codes in modality 0's row order (objects are numbered by
    it) and, per modality, each object's code at its row of that modality."""
    packed = pack_codes(B)
    train_codes = []
    for order in orders:
        rows = np.empty_like(packed)
        rows[order] = packed
        train_codes.append(rows)
    return packed, train_codes
