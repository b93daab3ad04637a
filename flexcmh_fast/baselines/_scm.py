"""SCM, sequential variant (Zhang, Li, AAAI 2014): supervised hashing by
semantic correlation maximisation, learned bit by bit in closed form.

Written from the paper; the objective is set out term by term in
``docs/baselines.md``.  With ``n`` labelled known pairs, centred feature
matrices ``X``, ``Y`` (two modalities), ``r`` bits and the label
similarity ``S = 2 Yn Yn^T - 1`` (``Yn`` the L2-normalised label rows: +1 for
objects with the same labels, -1 for disjoint ones), SCM wants the
cross-modal code inner products to reproduce ``r S``:

    min  ||r S - sign(X Wx) sign(Y Wy)^T||^2.

Relaxing the signs with uncorrelated projections makes this the
maximisation of ``tr(Wx^T X^T S Y Wy)``.  The sequential variant learns bit
``t`` from the residual ``R_t = r S - sum_{k<t} bx_k by_k^T`` of the bits
before it:

    (wx_t, wy_t) = argmax  wx^T X^T R_t Y wy
                   s.t.    wx^T (X^T X / n + rho I) wx = 1,  wy^T (Y^T Y / n + rho I) wy = 1,

the leading generalised singular pair: the top singular vectors of
``Lx^{-1} (X^T R_t Y / n) Ly^{-T}`` (``L`` the Cholesky factors).  Then
``bx_t = sign(X wx_t)``, ``by_t = sign(Y wy_t)``.  ``X^T R_t Y`` is
``d_x x d_y`` and is updated by a rank-one term per bit; ``S`` is never
formed (``X^T S Y = 2 (X^T Yn)(Yn^T Y)`` for centred data).
"""
import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from .._csmh import _label_matrix
from .._progress import ProgressBar
from .._validation import check_float
from ._linear import (LinearHashModel, build_model, centred_dot, centred_t_dot,
                      check_param_names, column_means, paired_rows, ridge_covariance,
                      sign_codes, take_rows, top_singular_pair)

METHOD = "scm"

#: The method's own parameters and their defaults.
PARAMS = {
    "reg": 1e-4,   # ridge on each covariance, relative to the mean feature variance
}

HISTORY_TERMS = ("objective", "correlation")


def check_params(**params):
    """SCM's parameters with defaults filled in, validated: ``TypeError``
    for an unknown name (listing the valid ones) or a wrong type,
    ``ValueError`` for a value out of range."""
    p = check_param_names(params, PARAMS, METHOD)
    return {"reg": check_float(p["reg"], "reg", 0.0, low_inclusive=False)}


def _normalized_labels(Y):
    norms = np.sqrt((Y * Y).sum(axis=1))
    return Y / np.where(norms > 0, norms, 1.0)[:, None]


class _Residual:
    """``||r S - Bx By^T||^2 / n^2`` kept up to date bit by bit through
    c x t and t x t products only (nothing n x n):
    ``r^2 ||S||^2 - 2 r tr(Bx^T S By) + tr(Bx^T Bx By^T By)``."""

    def __init__(self, Yn, n_bits):
        n = Yn.shape[0]
        yty = Yn.T @ Yn
        y1 = Yn.sum(axis=0)
        self.s_sq = 4.0 * float((yty ** 2).sum()) - 4.0 * float(y1 @ y1) + float(n) * n
        self.Yn, self.n, self.r = Yn, n, n_bits
        self.cross = 0.0            # tr(Bx^T S By)
        self.bx, self.by = [], []

    def add(self, bx, by):
        bx, by = bx.astype(np.float64), by.astype(np.float64)
        self.cross += 2.0 * float((self.Yn.T @ bx) @ (self.Yn.T @ by)) - bx.sum() * by.sum()
        self.bx.append(bx)
        self.by.append(by)
        Bx, By = np.stack(self.bx, axis=1), np.stack(self.by, axis=1)
        quad = float(((Bx.T @ Bx) * (By.T @ By)).sum())
        value = self.r * self.r * self.s_sq - 2.0 * self.r * self.cross + quad
        return max(value, 0.0) / (self.n * self.n)


def fit_scm(Xs, pairs, *, n_bits, labels, rng, n_threads, verbose, callback, **params):
    """Train sequential SCM on the labelled known pairs of two modalities.

    Called by :func:`flexcmh_fast.train` with ``method="scm"``, which has
    validated the common inputs.

    Parameters
    ----------
    Xs : list of two ndarray or CSR matrices
    pairs : dict {(0, 1): (P, 2) int64}
        The known pairs (at least 2); only these rows are trained on.
    n_bits : int
    labels : list of two ndarray
        Per-modality labels (1-D class ids or 2-D 0/1), equal for paired
        samples.  Required.
    rng : numpy.random.Generator
        Unused: SCM is deterministic (accepted for the common signature).
    n_threads : int
        Threads for the BLAS calls.
    verbose : bool
    callback : callable or None
        ``callback(bit, state)`` after every bit, ``state`` holding the
        ``history`` entry.  Its return value is ignored: every one of the
        ``n_bits`` bits is needed for the hash functions.
    reg : float > 0, default=1e-4
        Ridge added to each covariance, times its mean diagonal.

    Returns
    -------
    SCMModel
    """
    params = check_params(**params)
    if labels is None:
        raise ValueError(
            "method='scm' is supervised and needs 'labels' (one array per modality, "
            "1-D class ids or 2-D 0/1 matrices). Got labels=None."
        )
    rows = paired_rows(Xs, pairs, METHOD)
    n = rows[0].shape[0]
    identity = np.arange(n)
    Y = _label_matrix([labels[0][rows[0]], labels[1][rows[1]]], [identity, identity])
    with threadpool_limits(limits=n_threads):
        Xp = [take_rows(X, r) for X, r in zip(Xs, rows)]
        means = [column_means(X) for X in Xp]
        Ls = [np.linalg.cholesky(ridge_covariance(X, m, params["reg"]))
              for X, m in zip(Xp, means)]
        Yn = _normalized_labels(Y)
        # X^T (r S) Y / n for centred X, Y: the all-ones part of S vanishes.
        XtYn = [centred_t_dot(X, m, Yn) for X, m in zip(Xp, means)]
        C = (2.0 * n_bits / n) * (XtYn[0] @ XtYn[1].T)
        residual = _Residual(Yn, n_bits)
        Ws = [np.empty((X.shape[1], n_bits)) for X in Xp]
        history = []
        bar = ProgressBar(n_bits, "SCM", verbose)
        for t in range(n_bits):
            T = scipy.linalg.solve_triangular(Ls[0], C, lower=True)
            T = scipy.linalg.solve_triangular(Ls[1], T.T, lower=True).T
            u, s, v = top_singular_pair(T)
            w = [scipy.linalg.solve_triangular(Ls[0].T, u, lower=False),
                 scipy.linalg.solve_triangular(Ls[1].T, v, lower=False)]
            b = [sign_codes(centred_dot(X, m, wm[:, None]))[:, 0].astype(np.float64)
                 for X, m, wm in zip(Xp, means, w)]
            for m in range(2):
                Ws[m][:, t] = w[m]
            C -= np.outer(centred_t_dot(Xp[0], means[0], b[0][:, None])[:, 0],
                          centred_t_dot(Xp[1], means[1], b[1][:, None])[:, 0]) / n
            objective = residual.add(b[0], b[1])
            history.append((objective, s))
            bar.update(1, info=f"bit {t + 1} residual {objective:.5g}")
            if callback is not None:
                callback(t + 1, {"history": dict(zip(HISTORY_TERMS, history[-1]))})
        bar.close()
        return build_model(SCMModel, Xs, rows, means, Ws, n_bits, np.array(history),
                           n_bits, params)


class SCMModel(LinearHashModel):
    """A trained sequential SCM model: ``h_m(x) = sign((x - mean_m) W_m)``,
    one column of ``W_m`` per bit.

    Created by ``flexcmh_fast.train(..., method="scm", labels=...)``; load a
    saved one with :func:`flexcmh_fast.load`.  See
    :class:`LinearHashModel` for the attributes; ``history_`` holds per bit
    ``objective`` = ``||r S - Bx By^T||^2 / n^2`` with the bits learned so
    far and ``correlation``, the bit's maximised (whitened) correlation with
    the residual.
    """

    kind = "SCMModel"
    HISTORY_TERMS = HISTORY_TERMS
