"""The CSMH estimator: settings, ``fit``, encoding, saving."""
import numbers

import numpy as np

from .._base import HashingEstimator
from .._params import Float, Int, Param, table
from .._rbf import rbf_blocks
from .._threads import thread_limits
from .._validation import _describe, check_float, check_n_threads
from ._solver import (
    _BLOCK_ROWS,
    HISTORY_TERMS,
    CSMHSettings,
    _label_matrix,
    _object_order,
    fit_csmh,
)
from ._state import check_csmh_state


class _Sigma:
    """None, a float > 0, or a list of (None or float > 0), one per modality."""

    def __call__(self, value, name):
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [None if s is None else check_float(s, f"{name}[{m}]", 0.0,
                                                       low_inclusive=False)
                    for m, s in enumerate(value)]
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"'{name}' must be None, a float > 0 or a list of them (one per "
                            f"modality). Got {_describe(value)} instead.")
        return check_float(value, name, 0.0, low_inclusive=False)


PARAMETERS = table(
    n_anchors=Param(1000, Int(1), "anchors per modality of the RBF features (capped to "
                                  "the number of samples)"),
    sigma=Param(None, _Sigma(), "RBF width per modality (None: 0.35 x the mean "
                                "sample-to-anchor distance)"),
    alpha=Param(100.0, Float(0.0), "weight of the label-similarity embedding"),
    beta=Param(10.0, Float(0.0), "weight of the marginal and conditional MMD terms"),
    gamma=Param(1.0, Float(0.0), "weight of the label regression"),
    reg=Param(1e-5, Float(0.0, low_open=True), "ridge weight of the projections"),
    max_iter=20,
    tol=1e-5,
    n_sweeps=Param(3, Int(1), "coordinate-descent passes over B per iteration"),
)


class CSMH(HashingEstimator):
    """CSMH: supervised cross-modal hashing (Li et al., IEEE TKDE 37(5), 2025).

    Kernelises each modality (RBF features against anchors), aligns the
    modalities' marginal and conditional distributions in a common subspace
    (MMD), embeds the label similarity and learns the codes by discrete
    coordinate descent; the formulation is written out term by term in
    ``docs/csmh.md``.  ``fit`` needs completely paired data
    (``pairs="all"`` or a complete one-to-one pairing) and ``labels``.

    Parameters
    ----------
    n_bits : int in [1, 4096], default=32
        Code length.
    n_anchors : int >= 1, default=1000
        Anchors per modality for the RBF kernel features (sampled from the
        training rows); capped to the number of samples.
    sigma : None, float > 0 or list of floats, default=None
        RBF width per modality; ``None``: 0.35 x the mean sample-to-anchor
        distance.
    alpha : float >= 0, default=100.0
        Weight of the label-similarity embedding ``||r S - B B^T||^2``.
    beta : float >= 0, default=10.0
        Weight of the marginal and conditional MMD terms.
    gamma : float >= 0, default=1.0
        Weight of the label regression ``||Y - B G||^2``.
    reg : float > 0, default=1e-5
        Ridge weight on the projections ``W_m`` and on ``G``.
    max_iter : int >= 0, default=20
        Iterations at most.
    tol : float >= 0, default=1e-5
        Stop when the relative decrease of the objective is below ``tol``
        (or when no bit flips).
    n_sweeps : int >= 1, default=3
        Passes of single-bit coordinate descent over B per iteration.
    n_threads : int, None or -1, default=None
        Threads of the kernels and BLAS, in ``fit`` and ``encode`` (None /
        -1: every core).
    random_state : None, int or numpy.random.Generator, default=None
        Seed of every random choice.
    verbose : bool, default=False
        Progress bar (tqdm) with the objective.
    callback : callable, default=None
        ``callback(iteration, state)`` after every iteration (from 1);
        ``state`` holds ``objective``, ``terms`` (dict) and the current
        codes ``B`` (read-only).  Returning ``True`` stops.

    Attributes
    ----------
    n_bits_ : int
    n_features_ : list of int
    anchors_ : list of ndarray (n_anchors, d_m)
    sigmas_ : list of float
        RBF width per modality.
    weights_ : list of ndarray (n_anchors + 1, n_bits)
        Projection ``W_m`` (last row: bias).
    codes_ : ndarray of uint8 (n_train, ceil(n_bits / 8))
        The learned discrete training codes ``B`` (row order of modality 0).
    train_codes_ : list of ndarray of uint8 (n_train, ceil(n_bits / 8))
        The same codes in each modality's own training row order.
    history_ : dict of ndarray
        Per iteration: ``objective``, its terms ``fit``, ``ridge``,
        ``mmd_marginal``, ``mmd_conditional``, ``label``, ``similarity``, and
        the number of bit ``flips`` in the B-step.
    n_iter_ : int
    """

    _parameters = PARAMETERS
    kind = "CSMH"
    _requires_labels = True
    _FORMAT1_HISTORY_TERMS = HISTORY_TERMS

    def __init__(self, n_bits=32, n_anchors=1000, sigma=None, alpha=100.0, beta=10.0,
                 gamma=1.0, reg=1e-5, max_iter=20, tol=1e-5, n_sweeps=3, n_threads=None,
                 random_state=None, verbose=False, callback=None):
        self.n_bits = n_bits
        self.n_anchors = n_anchors
        self.sigma = sigma
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.reg = reg
        self.max_iter = max_iter
        self.tol = tol
        self.n_sweeps = n_sweeps
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def _fit(self, Xs, pairs, labels, params, rng):
        orders = _object_order(pairs, [X.shape[0] for X in Xs])
        settings = CSMHSettings.from_params(params, orders[0].shape[0], len(Xs))
        Y = _label_matrix(labels, orders)
        with thread_limits(check_n_threads(params["n_threads"])):
            fitted = fit_csmh(Xs, orders, Y, settings, rng)
        for name, value in fitted.items():
            setattr(self, name, value)

    def _encode_signs(self, X, modality):
        A, W = self.anchors_[modality], self.weights_[modality]
        out = np.empty((X.shape[0], self.n_bits_), dtype=np.int8)
        with thread_limits(check_n_threads(self.n_threads)):
            for s, e, phi in rbf_blocks(X, A, self.sigmas_[modality], _BLOCK_ROWS):
                out[s:e] = np.where(phi @ W[:-1] + W[-1] >= 0, 1, -1)
        return out

    def _get_state(self):
        arrays = {}
        for m in range(len(self.n_features_)):
            arrays[f"anchors_{m}"] = self.anchors_[m]
            arrays[f"weights_{m}"] = self.weights_[m]
        return {"sigmas": self.sigmas_}, arrays

    @classmethod
    def _check_state(cls, meta, arrays):
        check_csmh_state(meta, arrays)

    def _set_state(self, meta, arrays):
        M = len(self.n_features_)
        self.anchors_ = [np.ascontiguousarray(arrays[f"anchors_{m}"], dtype=np.float64)
                         for m in range(M)]
        self.sigmas_ = [float(s) for s in meta["sigmas"]]
        self.weights_ = [np.ascontiguousarray(arrays[f"weights_{m}"], dtype=np.float64)
                         for m in range(M)]
        for m in range(M):
            if (self.anchors_[m].shape[1] != self.n_features_[m]
                    or self.weights_[m].shape != (self.anchors_[m].shape[0] + 1, self.n_bits_)):
                raise ValueError(f"inconsistent shapes for modality {m}.")
