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

from .._params import Param, table
from .._progress import progress
from .._threads import thread_limits
from .._validation import check_n_threads
from ..csmh._solver import _label_matrix
from ._linear import (
    LinearHashEstimator,
    NoneOnly,
    TrainingRows,
    paired_rows,
    ridge_covariance,
    ridge_param,
    top_singular_pair,
)

_CLOSED_FORM = "it learns exactly n_bits bits, each in closed form"

PARAMETERS = table(
    reg=ridge_param(),
    max_iter=Param(None, NoneOnly("SCM", _CLOSED_FORM), f"not used ({_CLOSED_FORM})"),
    tol=Param(None, NoneOnly("SCM", _CLOSED_FORM), f"not used ({_CLOSED_FORM})"),
)

HISTORY_TERMS = ("objective", "correlation")


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


class SCM(LinearHashEstimator):
    """Sequential SCM (Zhang, Li, AAAI 2014): supervised hashing by
    semantic correlation maximisation, ``h_m(x) = sign((x - mean_m) W_m)``
    with one column of ``W_m`` per bit, learned bit by bit in closed form.

    Trained on the labelled known pairs of two modalities (with
    weakly-paired data, on the known pairs only); ``fit`` needs
    ``labels``.  The objective is set out in ``docs/baselines.md``.

    Parameters
    ----------
    n_bits : int in [1, 4096], default=32
        Code length (the number of sequential steps).
    reg : float > 0, default=1e-4
        Ridge added to each covariance, times its mean diagonal.
    max_iter, tol : None
        Common settings SCM has no use for (it learns exactly ``n_bits``
        bits, each in closed form); anything but ``None`` is an error.
    n_threads : int, None or -1, default=None
        BLAS threads in ``fit`` and ``encode`` (None / -1: every core).
    random_state : None, int or numpy.random.Generator, default=None
        Accepted for the common interface; SCM is deterministic.
    verbose : bool, default=False
        Progress bar (tqdm) with the residual.
    callback : callable, default=None
        ``callback(bit, state)`` after every bit (from 1); ``state`` holds
        ``objective`` and ``terms`` (``correlation``).  Its return value is
        ignored: every one of the ``n_bits`` bits is needed.

    Attributes
    ----------
    n_bits_ : int
    n_features_ : list of int
    means_, projections_, codes_, train_codes_ :
        See :class:`~flexcmh_fast.baselines._linear.LinearHashEstimator`.
    history_ : dict of ndarray
        Per bit: ``objective`` = ``||r S - Bx By^T||^2 / n^2`` with the bits
        learned so far and ``correlation``, the bit's maximised (whitened)
        correlation with the residual.
    n_iter_ : int
        ``n_bits``.
    """

    _parameters = PARAMETERS
    kind = "SCM"
    _requires_labels = True
    HISTORY_TERMS = HISTORY_TERMS

    def __init__(self, n_bits=32, reg=1e-4, max_iter=None, tol=None, n_threads=None,
                 random_state=None, verbose=False, callback=None):
        self.n_bits = n_bits
        self.reg = reg
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def _fit(self, Xs, pairs, labels, params, rng):
        n_bits, callback = params["n_bits"], params["callback"]
        rows = paired_rows(Xs, pairs, "SCM")
        n = rows[0].shape[0]
        identity = np.arange(n)
        Y = _label_matrix([labels[0][rows[0]], labels[1][rows[1]]], [identity, identity])
        with thread_limits(check_n_threads(params["n_threads"])):
            data = [TrainingRows(X, r) for X, r in zip(Xs, rows)]
            Ls = [np.linalg.cholesky(ridge_covariance(X.gram(), n, params["reg"]))
                  for X in data]
            Yn = _normalized_labels(Y)
            # X^T (r S) Y / n for centred X, Y: the all-ones part of S vanishes.
            XtYn = [X.t_dot(Yn) for X in data]
            C = (2.0 * n_bits / n) * (XtYn[0] @ XtYn[1].T)
            residual = _Residual(Yn, n_bits)
            Ws = [np.empty((X.d, n_bits)) for X in data]
            history = []
            bar = progress(n_bits, "SCM", params["verbose"])
            for t in range(n_bits):
                T = scipy.linalg.solve_triangular(Ls[0], C, lower=True)
                T = scipy.linalg.solve_triangular(Ls[1], T.T, lower=True).T
                u, s, v = top_singular_pair(T)
                w = [scipy.linalg.solve_triangular(Ls[0].T, u, lower=False),
                     scipy.linalg.solve_triangular(Ls[1].T, v, lower=False)]
                # The bits of the training objects and X^T b (float32 blocks: one read).
                (bx, xtb), (by, ytb) = [X.signs_t_dot(wm) for X, wm in zip(data, w)]
                for m in range(2):
                    Ws[m][:, t] = w[m]
                C -= np.outer(xtb, ytb) / n
                objective = residual.add(bx, by)
                history.append((objective, s))
                bar.update(1, objective=objective)
                if callback is not None:
                    # the return value is ignored: every bit is needed
                    callback(t + 1, {"objective": objective, "terms": {"correlation": s}})
            bar.close()
            self._store(Xs, rows, [X.mean for X in data], Ws, history, n_bits)
