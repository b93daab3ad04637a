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

from .._params import Float, Param, table
from .._progress import progress
from .._state_checks import array_entry
from .._threads import thread_limits
from .._validation import check_n_threads
from ._linear import (
    LinearHashEstimator,
    TrainingRows,
    model_array,
    orient_columns,
    paired_rows,
    ridge_covariance,
    ridge_param,
)

PARAMETERS = table(
    reg=ridge_param(),
    eigen_power=Param(4.0, Float(0.0), "scale CCA direction k by its canonical correlation "
                                       "to this power"),
    max_iter=50,
    tol=0.0,
)


def cca_directions(X0, X1, n_components, reg):
    """CCA of the training rows of two modalities.

    Parameters
    ----------
    X0, X1 : TrainingRows
        The paired training rows (uncentred, dense or CSR).
    n_components : int
    reg : float

    Returns
    -------
    means : list of two float64 ndarray
    W0, W1 : ndarray (d_0, k), (d_1, k)
        Canonical directions with ``W_m^T C_mm W_m = I`` (ridged
        covariances), the sign of each pair fixed so that the
        largest-magnitude entry of the column of ``W0`` is positive.
    correlations : ndarray (k,)
        Canonical correlations, decreasing.
    """
    n = X0.n
    L0 = np.linalg.cholesky(ridge_covariance(X0.gram(), n, reg))
    L1 = np.linalg.cholesky(ridge_covariance(X1.gram(), n, reg))
    C01 = X0.cross(X1) / n
    T = scipy.linalg.solve_triangular(L0, C01, lower=True)
    T = scipy.linalg.solve_triangular(L1, T.T, lower=True).T      # L0^-1 C01 L1^-T
    U, S, Vt = np.linalg.svd(T, full_matrices=False)
    W0 = scipy.linalg.solve_triangular(L0.T, U[:, :n_components], lower=False)
    W1 = scipy.linalg.solve_triangular(L1.T, Vt[:n_components].T, lower=False)
    W0, W1 = orient_columns(W0, W1)
    return [X0.mean, X1.mean], W0, W1, S[:n_components]


def itq_rotation(V, n_bits, rng, max_iter, tol, callback, bar):
    """ITQ: ``R`` (n_bits x k, orthonormal columns) minimising
    ``||sign(V R^T) - V R^T||^2`` by alternating exact steps from a random
    orthonormal start.  Returns ``(R, losses, n_iter)``; ``losses[t]`` is
    ``||B - V R^T||^2 / n_rows`` after iteration ``t``'s rotation step
    (never increases: both steps are exact minimisers).  Stops after
    ``max_iter`` iterations, when the relative decrease is at most ``tol``
    or when ``callback`` returns True."""
    k = V.shape[1]
    R, _ = np.linalg.qr(rng.standard_normal((n_bits, k)))
    losses = []
    it = 0
    for it in range(1, max_iter + 1):
        # Three arrays of 2n rows at a time: V, B and P (V R^T, then B - V R^T).
        P = V @ R.T
        B = np.where(P >= 0, 1.0, -1.0)              # sign, ties to +1
        U, _, Qt = np.linalg.svd(B.T @ V, full_matrices=False)
        R = U @ Qt
        np.subtract(B, np.matmul(V, R.T, out=P), out=P)
        loss = float(np.square(P, out=P).sum()) / V.shape[0]
        bar.update(1, objective=loss)
        stop = callback is not None and bool(
            callback(it, {"objective": loss, "terms": {}, "R": R}))
        if losses and losses[-1] - loss <= tol * abs(losses[-1]):
            stop = True
        losses.append(loss)
        if stop:
            break
    return R, losses, it


class CCAITQ(LinearHashEstimator):
    """CCA-ITQ (Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013), cross-modal:
    ``h_m(x) = sign((x - mean_m) W_m R^T)``.

    Trained on the known pairs of two modalities (with weakly-paired data,
    on the known pairs only); unsupervised (``labels`` are ignored).  The
    objective is set out term by term in ``docs/baselines.md``.

    Parameters
    ----------
    n_bits : int in [1, 4096], default=32
        Code length.
    reg : float > 0, default=1e-4
        Ridge added to each covariance, times its mean diagonal.
    eigen_power : float >= 0, default=4.0
        Each CCA direction is scaled by its canonical correlation to this
        power before ITQ (0: no scaling).
    max_iter : int >= 0, default=50
        ITQ iterations (the paper's 50); 0 keeps the random rotation.
    tol : float >= 0, default=0.0
        Stop when the relative decrease of the quantisation loss is at most
        ``tol`` (0: when it no longer decreases, i.e. at a fixed point).
    n_threads : int, None or -1, default=None
        BLAS threads in ``fit`` and ``encode`` (None / -1: every core).
    random_state : None, int or numpy.random.Generator, default=None
        Seed of the initial ITQ rotation.
    verbose : bool, default=False
        Progress bar (tqdm) with the quantisation loss.
    callback : callable, default=None
        ``callback(iteration, state)`` after every ITQ iteration (from 1);
        ``state`` holds ``objective``, ``terms`` (empty: the loss has one
        term) and the rotation ``R``.  Returning ``True`` stops.

    Attributes
    ----------
    n_bits_ : int
    n_features_ : list of int
    means_, projections_, codes_, train_codes_ :
        See :class:`~flexcmh_fast.baselines._linear.LinearHashEstimator`
        (``projections_[m]`` is ``W_m R^T``).
    correlations_ : ndarray (k,)
        Canonical correlations of the CCA directions used, decreasing.
    history_ : dict of ndarray
        Per ITQ iteration: ``objective``, the quantisation loss
        ``||B - V R^T||^2`` per training row.
    n_iter_ : int
    """

    _parameters = PARAMETERS
    kind = "CCAITQ"
    HISTORY_TERMS = ("objective",)

    def __init__(self, n_bits=32, reg=1e-4, eigen_power=4.0, max_iter=50, tol=0.0,
                 n_threads=None, random_state=None, verbose=False, callback=None):
        self.n_bits = n_bits
        self.reg = reg
        self.eigen_power = eigen_power
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def _fit(self, Xs, pairs, labels, params, rng):
        rows = paired_rows(Xs, pairs, "CCAITQ")
        n_bits = params["n_bits"]
        with thread_limits(check_n_threads(params["n_threads"])):
            data = [TrainingRows(X, r) for X, r in zip(Xs, rows)]
            k = min(n_bits, Xs[0].shape[1], Xs[1].shape[1])
            means, W0, W1, corr = cca_directions(data[0], data[1], k, params["reg"])
            scale = np.clip(corr, 0.0, None) ** params["eigen_power"]
            Ws = [W0 * scale, W1 * scale]
            # float64 (2n x k) whatever the data's dtype: ITQ's sums run over it.
            V = np.vstack([X.dot(W) for X, W in zip(data, Ws)])
            bar = progress(params["max_iter"], "CCA-ITQ", params["verbose"])
            R, losses, n_iter = itq_rotation(V, n_bits, rng, params["max_iter"], params["tol"],
                                             params["callback"], bar)
            bar.close()
            self._store(Xs, rows, means, [W @ R.T for W in Ws], losses, n_iter)
        self.correlations_ = model_array(corr, self.projections_[0].dtype)

    def _get_state(self):
        meta, arrays = super()._get_state()
        arrays["correlations"] = self.correlations_
        return meta, arrays

    @classmethod
    def _check_state(cls, meta, arrays):
        super()._check_state(meta, arrays)
        array_entry(arrays, "correlations", ndim=1)

    def _set_state(self, meta, arrays):
        super()._set_state(meta, arrays)
        self.correlations_ = model_array(arrays["correlations"], self.projections_[0].dtype)
