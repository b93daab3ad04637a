"""What the three peer baselines share: linear hash functions on centred
features, sparse-aware centred products, the known pairs they train on,
and the estimator base class.

Every baseline hashes a sample ``x`` of modality ``m`` by
``sign((x - mean_m) W_m)`` (ties at zero give +1): CCA-ITQ with its CCA
directions and ITQ rotation folded into ``W_m``, CMFH with its projection
``P_m``, SCM with one projection column per sequentially learned bit.
"""
import numpy as np
import scipy.sparse as sp

from .._base import HashingEstimator, history_dict
from .._params import Float, Param
from .._threads import thread_limits
from .._validation import _describe, check_n_threads
from ..search import pack_codes
from ._state import check_linear_hash_state


# --------------------------------------------------------------------------
# Training data: two modalities, the known pairs
# --------------------------------------------------------------------------
def paired_rows(Xs, pairs, method):
    """The rows of the known pairs: ``(rows_0, rows_1)``, row ``rows_0[t]``
    of modality 0 and ``rows_1[t]`` of modality 1 are object ``t``.

    The baselines are two-modality methods trained on paired objects; with
    weakly-paired data they train on the known pairs only.
    """
    if len(Xs) != 2:
        raise ValueError(
            f"{method} is a two-modality method: 'modalities' must hold exactly "
            f"2 matrices. Got {len(Xs)} instead."
        )
    p = pairs.get((0, 1))
    n_pairs = 0 if p is None else p.shape[0]
    if n_pairs < 2:
        raise ValueError(
            f"{method} trains on known pairs: 'pairs' must give at least 2 "
            f"pairs between modality 0 and modality 1. Got {n_pairs} instead."
        )
    return p[:, 0], p[:, 1]


def take_rows(X, rows):
    """Rows of a dense or CSR matrix (all rows: the matrix itself, no copy)."""
    if rows.shape[0] == X.shape[0] and np.array_equal(rows, np.arange(X.shape[0])):
        return X
    return X[rows]


# --------------------------------------------------------------------------
# Centred products that never densify sparse input
# --------------------------------------------------------------------------
def column_means(X):
    """Mean of every column, as a 1-D float64 array."""
    return np.asarray(X.mean(axis=0), dtype=np.float64).ravel()


def centred_gram(X, mean):
    """``(X - 1 mean)^T (X - 1 mean)``, d x d.

    For CSR input the centring is analytic, ``X^T X - n mean mean^T``, so
    only the sparse product is formed (d x d dense result: fine for d up to
    a few thousand)."""
    if sp.issparse(X):
        gram = (X.T @ X).toarray()
        gram -= X.shape[0] * np.outer(mean, mean)
        return (gram + gram.T) / 2.0
    Xc = X - mean
    return Xc.T @ Xc


def centred_cross(X, mean_x, Y, mean_y):
    """``(X - 1 mean_x)^T (Y - 1 mean_y)``, d_x x d_y dense, centred
    analytically (``X^T Y - n mean_x mean_y^T``) so CSR input stays sparse."""
    cross = X.T @ Y
    cross = cross.toarray() if sp.issparse(cross) else np.asarray(cross)
    return cross - X.shape[0] * np.outer(mean_x, mean_y)


def ridge_covariance(X, mean, reg):
    """Centred covariance ``Xc^T Xc / n`` plus ``reg`` times its mean
    diagonal on the diagonal (``reg`` alone for all-constant features): a
    ridge relative to the data's scale, so ``reg`` means the same for SIFT
    counts and for unit-norm TF-IDF rows."""
    cov = centred_gram(X, mean) / X.shape[0]
    scale = float(np.trace(cov)) / cov.shape[0]
    cov[np.diag_indices_from(cov)] += reg * (scale if scale > 0 else 1.0)
    return cov


def centred_t_dot(X, mean, Z):
    """``(X - 1 mean)^T Z`` (d x k) for a dense ``Z`` of shape (n, k)."""
    return np.asarray(X.T @ Z) - np.outer(mean, Z.sum(axis=0))


def centred_dot(X, mean, W):
    """``(X - 1 mean) W`` (n x k) for a dense ``W`` of shape (d, k)."""
    return np.asarray(X @ W) - mean @ W


def sign_codes(values):
    """±1 int8 codes, ties at zero to +1 (the package's convention)."""
    return np.where(values >= 0, 1, -1).astype(np.int8)


def top_singular_pair(T):
    """Leading singular triple ``(u, s, v)`` of a dense matrix, with the sign
    fixed so that the largest-magnitude entry of ``u`` is positive."""
    U, S, Vt = np.linalg.svd(T, full_matrices=False)
    u, v = U[:, 0], Vt[0]
    if u[np.argmax(np.abs(u))] < 0:
        u, v = -u, -v
    return u, float(S[0]), v


def orient_columns(W, *others):
    """Flip the sign of column ``k`` of ``W`` (and of every matrix in
    ``others``) so that its largest-magnitude entry is positive: SVD and
    eigen solvers return directions up to sign, this makes them canonical."""
    flip = np.where(W[np.argmax(np.abs(W), axis=0), np.arange(W.shape[1])] < 0, -1.0, 1.0)
    return (W * flip,) + tuple(O * flip for O in others)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
def ridge_param():
    """The ``reg`` setting of CCA-ITQ and SCM (one declaration, one meaning)."""
    return Param(1e-4, Float(0.0, low_open=True), "ridge on each covariance, relative to "
                                                  "its mean diagonal")


# --------------------------------------------------------------------------
# The estimator base class
# --------------------------------------------------------------------------
class LinearHashEstimator(HashingEstimator):
    """Base of the baselines: ``F_m(x) = sign((x - mean_m) W_m)``.

    Subclasses set ``kind``, ``HISTORY_TERMS`` (the names of ``history_``)
    and ``_parameters``, and implement ``_fit``, which ends with
    :meth:`_store`.  Their fitted attributes:

    - ``means_`` : list of ndarray (d_m,), the training mean of every
      modality (the centring of the hash function);
    - ``projections_`` : list of ndarray (d_m, n_bits), ``W_m``;
    - ``codes_`` : ndarray of uint8 (n_pairs, ceil(n_bits / 8)), the codes
      of the training objects (the known pairs, in pair order): the learned
      unified codes where the method learns them (CMFH), otherwise the
      modality-0 hash codes;
    - ``train_codes_`` : list of ndarray of uint8 (n_m, ceil(n_bits / 8)),
      codes of every training row of each modality in its own row order
      (the learned code for the rows of known pairs where the method learns
      codes, the hash function's code otherwise);
    - ``history_`` : dict of 1-D arrays, one per name of ``HISTORY_TERMS``;
    - ``n_iter_`` : int.
    """

    HISTORY_TERMS = ()

    def _store(self, Xs, rows, means, projections, history, n_iter, learned=None):
        """Set the fitted attributes; ``learned`` (±1, one row per known
        pair) overrides the hash codes of the known pairs' rows."""
        self.means_ = [np.ascontiguousarray(m, dtype=np.float64) for m in means]
        self.projections_ = [np.ascontiguousarray(w, dtype=np.float64) for w in projections]
        self.train_codes_ = []
        for m, X in enumerate(Xs):
            signs = sign_codes(centred_dot(X, self.means_[m], self.projections_[m]))
            if learned is not None:
                signs[rows[m]] = learned
            self.train_codes_.append(pack_codes(signs))
        self.codes_ = (pack_codes(learned) if learned is not None
                       else self.train_codes_[0][rows[0]])
        self.history_ = history_dict(history, self.HISTORY_TERMS)
        self.n_iter_ = int(n_iter)

    def _encode_signs(self, X, modality):
        with thread_limits(check_n_threads(self.n_threads)):
            return sign_codes(centred_dot(X, self.means_[modality],
                                          self.projections_[modality]))

    def _get_state(self):
        arrays = {}
        for m in range(len(self.n_features_)):
            arrays[f"mean_{m}"] = self.means_[m]
            arrays[f"projection_{m}"] = self.projections_[m]
        return {}, arrays

    @classmethod
    def _check_state(cls, meta, arrays):
        check_linear_hash_state(meta, arrays, cls.HISTORY_TERMS)

    def _set_state(self, meta, arrays):
        M = len(self.n_features_)
        self.means_ = [np.ascontiguousarray(arrays[f"mean_{m}"], dtype=np.float64)
                       for m in range(M)]
        self.projections_ = [np.ascontiguousarray(arrays[f"projection_{m}"], dtype=np.float64)
                             for m in range(M)]


class NoneOnly:
    """A common setting a method has no use for: ``None`` only (a value
    would be silently ignored otherwise)."""

    def __init__(self, method, reason):
        self.method, self.reason = method, reason

    def __call__(self, value, name):
        if value is not None:
            raise ValueError(f"'{name}' must be None for {self.method} ({self.reason}). "
                             f"Got {_describe(value)} instead.")
        return None
