"""What the three peer baselines share: linear hash functions on centred
features, sparse-aware centred products, parameter checking, the known
pairs they train on, and the model class.

Every baseline hashes a sample ``x`` of modality ``m`` by
``sign((x - mean_m) W_m)`` (ties at zero give +1): CCA-ITQ with its CCA
directions and ITQ rotation folded into ``W_m``, CMFH with its projection
``P_m``, SCM with one projection column per sequentially learned bit.
"""
import numpy as np
import scipy.sparse as sp

from .._codes import pack_codes
from .._model import HashingModel


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
def check_param_names(params, valid, method):
    """Raise ``TypeError`` naming the unknown parameters and the valid ones."""
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(
            f"Unknown parameter(s) {unknown} for method={method!r}. "
            f"Valid parameters: {sorted(valid)}."
        )
    out = dict(valid)
    out.update(params)
    return out


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
            f"method={method!r} is a two-modality method: 'modalities' must hold exactly "
            f"2 matrices. Got {len(Xs)} instead."
        )
    p = pairs.get((0, 1))
    n_pairs = 0 if p is None else p.shape[0]
    if n_pairs < 2:
        raise ValueError(
            f"method={method!r} trains on known pairs: 'pairs' must give at least 2 "
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
# The model
# --------------------------------------------------------------------------
class LinearHashModel(HashingModel):
    """A trained baseline: ``F_m(x) = sign((x - mean_m) W_m)``.

    Subclasses set ``kind``, ``HISTORY_TERMS`` and ``method``.

    Attributes
    ----------
    n_bits : int
    n_features_ : list of int
        Feature count per modality.
    means_ : list of ndarray (d_m,)
        Training mean of every modality (the centring of the hash function).
    projections_ : list of ndarray (d_m, n_bits)
        ``W_m``.
    codes_ : ndarray of uint8 (n_pairs, ceil(n_bits / 8))
        The codes of the training objects (the known pairs, in pair order):
        the learned unified codes where the method learns them (CMFH),
        otherwise the modality-0 hash codes.
    train_codes_ : list of ndarray of uint8 (n_m, ceil(n_bits / 8))
        Codes of every training row of each modality, in its own row order:
        the learned code for the rows of known pairs where the method learns
        codes (CMFH), the hash function's code otherwise.
    history_ : list of dict
        One entry per iteration (per bit for SCM) with the named terms of
        ``HISTORY_TERMS``.
    n_iter_ : int
    params_ : dict
        The method parameters used.
    """

    kind = None
    HISTORY_TERMS = ()

    def __init__(self, n_bits, n_features, means, projections, codes, train_codes,
                 history, n_iter, params):
        self.n_bits = int(n_bits)
        self.n_features_ = [int(d) for d in n_features]
        self.means_ = [np.ascontiguousarray(m, dtype=np.float64) for m in means]
        self.projections_ = [np.ascontiguousarray(w, dtype=np.float64) for w in projections]
        self.codes_ = codes
        self.train_codes_ = list(train_codes)
        self._history = np.asarray(history, dtype=np.float64).reshape(
            -1, len(self.HISTORY_TERMS))
        self.n_iter_ = int(n_iter)
        self.params_ = dict(params)

    @property
    def history_(self):
        return [dict(zip(self.HISTORY_TERMS, map(float, row))) for row in self._history]

    def _encode_signs(self, X, modality):
        return sign_codes(centred_dot(X, self.means_[modality], self.projections_[modality]))

    def _get_state(self):
        meta = {"n_bits": self.n_bits, "n_features": self.n_features_, "n_iter": self.n_iter_,
                "params": self.params_, "history_terms": list(self.HISTORY_TERMS)}
        arrays = {"codes": self.codes_, "history": self._history}
        for m in range(self.n_modalities):
            arrays[f"mean_{m}"] = self.means_[m]
            arrays[f"projection_{m}"] = self.projections_[m]
            arrays[f"train_codes_{m}"] = self.train_codes_[m]
        return meta, arrays

    @classmethod
    def _from_state(cls, meta, arrays):
        try:
            n_mod = len(meta["n_features"])
            model = cls(
                n_bits=meta["n_bits"], n_features=meta["n_features"],
                means=[arrays[f"mean_{m}"] for m in range(n_mod)],
                projections=[arrays[f"projection_{m}"] for m in range(n_mod)],
                codes=arrays["codes"],
                train_codes=[arrays[f"train_codes_{m}"] for m in range(n_mod)],
                history=arrays["history"], n_iter=meta["n_iter"], params=meta["params"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Corrupt {cls.kind} file: missing or bad entry {exc}.") from None
        for m in range(n_mod):
            if (model.means_[m].shape != (model.n_features_[m],)
                    or model.projections_[m].shape != (model.n_features_[m], model.n_bits)):
                raise ValueError(f"Corrupt {cls.kind} file: inconsistent shapes for modality {m}.")
        return model


def build_model(cls, Xs, rows, means, projections, n_bits, history, n_iter, params,
                learned=None):
    """A fitted model whose training codes are the hash codes of every
    training row, overwritten by ``learned`` (±1, one row per known pair)
    for the rows of the known pairs when the method learns codes."""
    train_codes = []
    for m, X in enumerate(Xs):
        signs = sign_codes(centred_dot(X, means[m], projections[m]))
        if learned is not None:
            signs[rows[m]] = learned
        train_codes.append(pack_codes(signs))
    codes = pack_codes(learned) if learned is not None else train_codes[0][rows[0]]
    return cls(n_bits=n_bits, n_features=[X.shape[1] for X in Xs], means=means,
               projections=projections, codes=codes, train_codes=train_codes,
               history=history, n_iter=n_iter, params=params)
