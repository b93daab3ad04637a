"""Feature preprocessing fitted with a model and applied by ``encode``.

Kinds (per modality):

``"none"``
    The features as given.
``"l2"``
    Each row divided by its L2 norm (all-zero rows stay zero).
``"hellinger"``
    Element-wise square root, then L2 (non-negative features only): the
    Hellinger map of histograms; the square root damps bursty counts.
``"standard"``
    Columns centred and scaled to unit variance (fitted on the training
    rows).  Sparse (CSR) columns are only scaled: centring would densify.
``"auto"`` (resolved per modality in ``fit``, from the training data)
    * non-negative CSR (TF-IDF, tags, counts stored sparse) -> ``"l2"``;
    * non-negative dense with at least ``AUTO_ZERO_FRACTION`` zero entries
      (bag-of-words histograms, counts) -> ``"hellinger"``;
    * non-negative dense otherwise (proportions, GIST-like descriptors)
      -> ``"l2"``;
    * any negative value -> ``"none"``.

    Chosen on validation splits of the Wiki training part (never its test
    splits): for the SIFT bag-of-visual-words histograms Hellinger beat L2
    and the raw features, for the dense LDA topic proportions L2 beat
    Hellinger and the raw features (``docs/flexcmh.md``).  Mixed-sign
    features are left as given: we have no validation evidence for them
    (pass ``"standard"`` or ``"l2"`` explicitly to try).

Every statistic is a sum over rows (:func:`data_stats`), so row blocks of
the data (Dask partitions) add up; CSR input is never densified.
"""
import numpy as np
import scipy.sparse as sp

from ._validation import _describe, check_matrix, check_option

KINDS = ("none", "l2", "hellinger", "standard")
# The kinds that need no fitted statistics (normalize_rows).
ROW_KINDS = ("none", "l2", "hellinger")
# Dense non-negative features with at least this fraction of zero entries
# are treated as histograms / counts by "auto".
AUTO_ZERO_FRACTION = 0.1
# Rows normalised at a time (dense "l2" / "hellinger").
NORM_BLOCK_ROWS = 8192


class PreprocessSetting:
    """Constraint of the ``preprocess`` setting: one kind (or ``"auto"``) for
    every modality, or a list / tuple with one per modality."""

    options = ("auto",) + KINDS

    def _one(self, value, name):
        if not isinstance(value, str) or value not in self.options:
            raise ValueError(f"'{name}' must be one of {list(self.options)} or a list of "
                             f"them (one per modality). Got {_describe(value)} instead.")
        return value

    def __call__(self, value, name):
        if isinstance(value, (list, tuple)):
            return [self._one(v, f"{name}[{m}]") for m, v in enumerate(value)]
        return self._one(value, name)


def per_modality(setting, n_modalities):
    """The validated setting as one kind per modality."""
    if isinstance(setting, list):
        if len(setting) != n_modalities:
            raise ValueError(f"'preprocess' as a list needs one kind per modality "
                             f"({n_modalities}). Got {len(setting)} instead.")
        return list(setting)
    return [setting] * n_modalities


def data_stats(X):
    """Sums over the rows of X that every kind needs: rows, column sums and
    sums of squares, zero entries, minimum, and whether X is CSR."""
    if sp.issparse(X):
        values = X.data
        col_sum = np.asarray(X.sum(axis=0)).ravel()
        col_sq = np.asarray(X.multiply(X).sum(axis=0)).ravel()
        zeros = X.shape[0] * X.shape[1] - int(np.count_nonzero(values))
    else:
        values = X
        col_sum = X.sum(axis=0)
        col_sq = np.einsum("ij,ij->j", X, X)
        zeros = int(X.size - np.count_nonzero(X))
    low = float(values.min()) if values.size else 0.0
    return {"n": X.shape[0], "sum": col_sum, "sumsq": col_sq, "zeros": zeros,
            "min": low, "sparse": sp.issparse(X)}


def merge_stats(parts):
    """The statistics of several row blocks of one modality."""
    return {"n": sum(p["n"] for p in parts), "sum": np.add.reduce([p["sum"] for p in parts]),
            "sumsq": np.add.reduce([p["sumsq"] for p in parts]),
            "zeros": sum(p["zeros"] for p in parts), "min": min(p["min"] for p in parts),
            "sparse": any(p["sparse"] for p in parts)}


def auto_kind(stats):
    """The kind ``"auto"`` resolves to for data with these statistics."""
    if stats["min"] < 0:
        return "none"
    if stats["sparse"]:
        return "l2"
    size = stats["n"] * stats["sum"].shape[0]
    return "hellinger" if size and stats["zeros"] >= AUTO_ZERO_FRACTION * size else "l2"


class Preprocessor:
    """A fitted preprocessing of one modality: ``kind`` and, for
    ``"standard"``, the column ``mean`` (zeros for CSR) and ``scale``."""

    def __init__(self, kind, mean=None, scale=None):
        self.kind = kind
        self.mean = mean
        self.scale = scale

    @classmethod
    def from_stats(cls, setting, stats):
        kind = auto_kind(stats) if setting == "auto" else setting
        if kind == "hellinger" and stats["min"] < 0:
            raise ValueError("preprocess='hellinger' needs non-negative features; a modality "
                             f"has negative values (min {stats['min']:.3g}).")
        if kind != "standard":
            return cls(kind)
        n = max(stats["n"], 1)
        mean = stats["sum"] / n
        var = np.maximum(stats["sumsq"] / n - mean ** 2, 0.0)
        scale = np.sqrt(var)
        scale[scale == 0] = 1.0
        if stats["sparse"]:
            # Centring would densify CSR: scale by the root mean square.
            scale = np.sqrt(stats["sumsq"] / n)
            scale[scale == 0] = 1.0
            mean = np.zeros_like(mean)
        return cls(kind, mean, scale)

    def transform(self, X):
        """X (validated float64, dense or CSR) preprocessed; a new object
        unless the kind is ``"none"``."""
        if self.kind == "none":
            return X
        if self.kind == "standard":
            if sp.issparse(X):
                return sp.csr_matrix(X @ sp.diags(1.0 / self.scale))
            return (X - self.mean) / self.scale
        out = None
        if self.kind == "hellinger":
            if (X.data if sp.issparse(X) else X).min(initial=0.0) < 0:
                raise ValueError("'X' must be non-negative: the model's preprocessing of this "
                                 "modality is 'hellinger' (the square root of the features).")
            if sp.issparse(X):
                X = X.sqrt()
            else:
                X = out = np.sqrt(X)
        if sp.issparse(X):
            norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            return sp.csr_matrix(sp.diags(1.0 / norms) @ X)
        # Dense: normalised in blocks of rows, in place in the square roots'
        # array for "hellinger": one array the size of X is allocated, not
        # three (the square roots, the squares behind the norms, the quotient;
        # docs/flexcmh.md, "Training speed").  Row norms do not depend on the
        # blocking.
        if out is None:
            out = np.empty_like(X)
        for start in range(0, X.shape[0], NORM_BLOCK_ROWS):
            rows = slice(start, start + NORM_BLOCK_ROWS)
            norms = np.linalg.norm(X[rows], axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            np.divide(X[rows], norms, out=out[rows])
        return out

    def state(self, prefix):
        if self.kind != "standard":
            return {}
        return {prefix + "mean": self.mean, prefix + "scale": self.scale}

    @classmethod
    def from_state(cls, kind, arrays, prefix):
        if kind not in KINDS:
            raise ValueError(f"unknown preprocessing kind {kind!r}.")
        if kind != "standard":
            return cls(kind)
        return cls(kind, np.asarray(arrays[prefix + "mean"], dtype=np.float64),
                   np.asarray(arrays[prefix + "scale"], dtype=np.float64))


def normalize_rows(X, kind):
    """Row-wise feature normalisation (needs no fitted statistics, so it can be
    applied before a train/test split without leaking information).

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_samples, n_features)
    kind : {"none", "l2", "hellinger"}
        ``"l2"``: each row divided by its L2 norm.  ``"hellinger"``: the
        element-wise square root, then L2 (for non-negative histograms such
        as bag-of-visual-words; the square root damps bursty words).
        All-zero rows stay zero.

    Returns
    -------
    ndarray or CSR matrix (float64); ``X`` itself for ``"none"``.
    """
    check_option(kind, "kind", ROW_KINDS)
    if kind == "none":
        return X
    return Preprocessor(kind).transform(check_matrix(X, "X"))
