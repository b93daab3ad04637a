"""CCA-ITQ (Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013): canonical
correlation analysis of the paired training data, then iterative
quantisation (ITQ) of the CCA embedding, then sign.

Written from the paper; the objective is set out term by term in
``docs/baselines.md``.  In short, with ``n`` known pairs, centred feature
matrices ``X_0``, ``X_1`` and ``r`` bits:

1. CCA: directions ``W_0`` (d_0 x k), ``W_1`` (d_1 x k), ``k = min(r, d_0, d_1)``,
   maximising ``tr(W_0^T C_01 W_1)`` subject to ``W_m^T (C_mm + rho I) W_m = I``
   (``C`` the covariances), i.e. the top ``k`` singular vectors of
   ``L_0^{-1} C_01 L_1^{-T}`` (``L_m`` the Cholesky factor of the ridged
   ``C_mm``); each direction is scaled by its canonical correlation to the
   power ``eigen_power``, as the paper does.
2. ITQ: with ``V = [X_0 W_0; X_1 W_1]`` (both modalities' embeddings of the
   training objects, 2n x k), minimise the quantisation loss
   ``||B - V R^T||^2`` over ``B`` in {-1, +1}^{2n x r} and ``R`` (r x k)
   with orthonormal columns, alternating ``B = sign(V R^T)`` and the
   Procrustes step ``R = U Q^T`` from the SVD ``B^T V = U S Q^T``.  For
   ``r <= k`` this is the paper's square rotation; for ``r > k`` (a code
   longer than the CCA space, e.g. Wiki's 10-d text at 16 bits) ``R``
   is the rectangular orthonormal map that keeps the same exact steps.
3. Hash: ``h_m(x) = sign((x - mean_m) W_m R^T)``.
"""
import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from .._progress import ProgressBar
from .._validation import check_float, check_int
from ._linear import (LinearHashModel, build_model, centred_cross, centred_dot,
                      check_param_names, column_means, orient_columns, paired_rows,
                      ridge_covariance, sign_codes, take_rows)

METHOD = "cca_itq"

#: The method's own parameters and their defaults.
PARAMS = {
    "reg": 1e-4,          # CCA ridge, relative to the mean feature variance
    "eigen_power": 4.0,   # scale direction k by (canonical correlation k) ** eigen_power
    "max_iter": 50,       # ITQ iterations (the paper's 50)
}


def check_params(**params):
    """CCA-ITQ's parameters with defaults filled in, validated: ``TypeError``
    for an unknown name (listing the valid ones) or a wrong type,
    ``ValueError`` for a value out of range."""
    p = check_param_names(params, PARAMS, METHOD)
    return {
        "reg": check_float(p["reg"], "reg", 0.0, low_inclusive=False),
        "eigen_power": check_float(p["eigen_power"], "eigen_power", 0.0),
        "max_iter": check_int(p["max_iter"], "max_iter", 1),
    }


def cca_directions(X0, X1, n_components, reg):
    """CCA of paired, uncentred matrices (dense or CSR).

    Returns
    -------
    means : list of two ndarray
    W0, W1 : ndarray (d_0, k), (d_1, k)
        Canonical directions with ``W_m^T C_mm W_m = I`` (ridged
        covariances), the sign of each pair fixed so that the
        largest-magnitude entry of the column of ``W0`` is positive.
    correlations : ndarray (k,)
        Canonical correlations, decreasing.
    """
    means = [column_means(X0), column_means(X1)]
    n = X0.shape[0]
    L0 = np.linalg.cholesky(ridge_covariance(X0, means[0], reg))
    L1 = np.linalg.cholesky(ridge_covariance(X1, means[1], reg))
    C01 = centred_cross(X0, means[0], X1, means[1]) / n
    T = scipy.linalg.solve_triangular(L0, C01, lower=True)
    T = scipy.linalg.solve_triangular(L1, T.T, lower=True).T      # L0^-1 C01 L1^-T
    U, S, Vt = np.linalg.svd(T, full_matrices=False)
    W0 = scipy.linalg.solve_triangular(L0.T, U[:, :n_components], lower=False)
    W1 = scipy.linalg.solve_triangular(L1.T, Vt[:n_components].T, lower=False)
    W0, W1 = orient_columns(W0, W1)
    return means, W0, W1, S[:n_components]


def itq_rotation(V, n_bits, rng, max_iter, callback=None, bar=None):
    """ITQ: ``R`` (n_bits x k, orthonormal columns) minimising
    ``||sign(V R^T) - V R^T||^2`` by alternating exact steps from a random
    orthonormal start.  Returns ``(R, losses, n_iter)``; ``losses[t]`` is
    ``||B - V R^T||^2 / n_rows`` after iteration ``t``'s rotation step
    (never increases: both steps are exact minimisers)."""
    k = V.shape[1]
    R, _ = np.linalg.qr(rng.standard_normal((n_bits, k)))
    losses = []
    it = 0
    for it in range(1, max_iter + 1):
        B = sign_codes(V @ R.T).astype(np.float64)
        U, _, Qt = np.linalg.svd(B.T @ V, full_matrices=False)
        R = U @ Qt
        loss = float(((B - V @ R.T) ** 2).sum()) / V.shape[0]
        losses.append(loss)
        if bar is not None:
            bar.update(1, info=f"quantisation loss {loss:.5g}")
        if callback is not None and callback(it, {"history": {"objective": loss}, "R": R}):
            break
    return R, losses, it


def fit_cca_itq(Xs, pairs, *, n_bits, labels, rng, n_threads, verbose, callback, **params):
    """Train CCA-ITQ on the known pairs of two modalities.

    Called by :func:`flexcmh_fast.train` with ``method="cca_itq"``, which has
    validated the common inputs.

    Parameters
    ----------
    Xs : list of two ndarray or CSR matrices
    pairs : dict {(0, 1): (P, 2) int64}
        The known pairs (at least 2); only these rows are trained on.
    n_bits : int
    labels : ignored
        CCA-ITQ is unsupervised.
    rng : numpy.random.Generator
        Draws the initial ITQ rotation.
    n_threads : int
        Threads for the BLAS calls.
    verbose : bool
    callback : callable or None
        ``callback(iteration, state)`` after each ITQ iteration, ``state``
        holding the ``history`` entry and the rotation ``R``; returning
        ``True`` stops.
    reg : float > 0, default=1e-4
        Ridge added to each covariance, times its mean diagonal.
    eigen_power : float >= 0, default=4.0
        Each CCA direction is scaled by its canonical correlation to this
        power before ITQ (0: no scaling).
    max_iter : int >= 1, default=50
        ITQ iterations.

    Returns
    -------
    CCAITQModel
    """
    params = check_params(**params)
    rows = paired_rows(Xs, pairs, METHOD)
    with threadpool_limits(limits=n_threads):
        Xp = [take_rows(X, r) for X, r in zip(Xs, rows)]
        k = min(n_bits, Xs[0].shape[1], Xs[1].shape[1])
        means, W0, W1, corr = cca_directions(Xp[0], Xp[1], k, params["reg"])
        scale = np.clip(corr, 0.0, None) ** params["eigen_power"]
        Ws = [W0 * scale, W1 * scale]
        V = np.vstack([centred_dot(X, mu, W) for X, mu, W in zip(Xp, means, Ws)])
        bar = ProgressBar(params["max_iter"], "CCA-ITQ", verbose)
        R, losses, n_iter = itq_rotation(V, n_bits, rng, params["max_iter"], callback, bar)
        bar.close()
        projections = [W @ R.T for W in Ws]
        model = build_model(CCAITQModel, Xs, rows, means, projections, n_bits,
                            np.array(losses)[:, None], n_iter, params)
    model.correlations_ = corr
    return model


class CCAITQModel(LinearHashModel):
    """A trained CCA-ITQ model: ``h_m(x) = sign((x - mean_m) W_m R^T)``.

    Created by ``flexcmh_fast.train(..., method="cca_itq")``; load a saved
    one with :func:`flexcmh_fast.load`.  See :class:`LinearHashModel` for
    the attributes; ``history_`` holds per ITQ iteration the ``objective``,
    the quantisation loss ``||B - V R^T||^2`` per training row, and
    ``correlations_`` (after training, not persisted) the canonical
    correlations of the CCA directions used.
    """

    kind = "CCAITQModel"
    HISTORY_TERMS = ("objective",)
