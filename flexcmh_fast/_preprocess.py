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

Every statistic is a sum over rows
(:func:`flexcmh_fast._feature_stats.feature_stats`), so row blocks of the
data (Dask partitions) add up; CSR input is never densified.  The training
matrix is never transformed as a whole: the fit applies the map as it reads
the rows (:class:`Preprocessor`).
"""
import numpy as np
import scipy.sparse as sp

from ._feature_stats import row_sums
from ._validation import _describe, check_matrix, check_option

KINDS = ("none", "l2", "hellinger", "standard")
# The kinds that need no fitted statistics (normalize_rows).
ROW_KINDS = ("none", "l2", "hellinger")
# Dense non-negative features with at least this fraction of zero entries
# are treated as histograms / counts by "auto".
AUTO_ZERO_FRACTION = 0.1


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
    ``"standard"``, the column ``mean`` (zeros for CSR) and ``scale``.

    Every kind maps a row ``x`` to ``r(x) * (f(x) - mean) / scale`` with
    ``f = sqrt`` for ``"hellinger"`` (else the identity), the column terms
    for ``"standard"`` only, and a factor per row ``r(x)`` for ``"l2"``
    (``1 / ||x||``) and ``"hellinger"`` (``1 / sqrt(sum(x))``, the norm of
    ``sqrt(x)``); all-zero rows keep the factor 1.  The row factors come
    from the row sums of :func:`flexcmh_fast._feature_stats.feature_stats`,
    so the training rows (:class:`flexcmh_fast.flexcmh._features.Features`,
    which applies the map as it reads them) and queries
    (:meth:`transform`) get the same values."""

    def __init__(self, kind, mean=None, scale=None):
        self.kind = kind
        self.mean = mean
        self.scale = scale

    @property
    def root(self):
        """Whether the map takes the square root of every value."""
        return self.kind == "hellinger"

    @classmethod
    def from_stats(cls, setting, stats, dtype=np.float64):
        """The preprocessing ``setting`` (a kind or ``"auto"``) fitted from a
        modality's column statistics; the column terms of ``"standard"`` are
        stored in ``dtype``, the model's."""
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
        return cls(kind, mean.astype(dtype), scale.astype(dtype))

    def row_factors(self, row_sum, row_sumsq):
        """The factor of every row (float64; None for the kinds without one)
        from the rows' sums and sums of squares."""
        if self.kind not in ("l2", "hellinger"):
            return None
        norms = np.sqrt(row_sumsq if self.kind == "l2" else np.maximum(row_sum, 0.0))
        norms[norms == 0] = 1.0
        return 1.0 / norms

    def check_input(self, X):
        """Refuse rows the map is not defined for (negative values under
        ``"hellinger"``)."""
        if self.root and (X.data if sp.issparse(X) else X).min(initial=0.0) < 0:
            raise ValueError("'X' must be non-negative: the model's preprocessing of this "
                             "modality is 'hellinger' (the square root of the features).")

    def apply(self, X, factors, dtype, copy=True):
        """The map of the rows ``X`` (dense or CSR; a block or a sample, not
        the training matrix) with their row ``factors``, as a matrix of
        ``dtype`` (CSR stays CSR); ``copy=False``: ``X`` is the caller's own
        fresh copy and may be transformed in place."""
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=dtype, copy=copy)
            values = X.data
            if self.root:
                np.sqrt(values, out=values)
            if factors is not None:
                values *= np.repeat(factors, np.diff(X.indptr))
            if self.kind == "standard":
                values /= self.scale[X.indices]
            return X
        out = np.array(X, dtype=dtype, order="C", copy=copy or None)
        if self.root:
            np.sqrt(out, out=out)
        if self.kind == "standard":
            out -= self.mean
            out /= self.scale
        if factors is not None:
            out *= factors[:, None]
        return out

    def factors_of(self, X):
        """The row factors of the rows ``X`` (one pass; None for the kinds
        without)."""
        if self.kind not in ("l2", "hellinger"):
            return None
        return self.row_factors(*row_sums(X))

    def transform(self, X, dtype=None):
        """The map of the rows ``X`` (validated, dense or CSR), as a new
        matrix of ``dtype`` (default: ``X``'s) unless the kind is
        ``"none"`` and nothing changes."""
        dtype = X.dtype if dtype is None else np.dtype(dtype)
        if self.kind == "none":
            return X if X.dtype == dtype else X.astype(dtype)
        self.check_input(X)
        return self.apply(X, self.factors_of(X), dtype)

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
        mean, scale = arrays[prefix + "mean"], arrays[prefix + "scale"]
        dtype = np.float32 if mean.dtype == np.float32 else np.float64
        return cls(kind, np.asarray(mean, dtype=dtype), np.asarray(scale, dtype=dtype))


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
    ndarray or CSR matrix in ``X``'s floating dtype (float32 stays float32,
        other input becomes float64); ``X`` itself for ``"none"``.
    """
    check_option(kind, "kind", ROW_KINDS)
    if kind == "none":
        return X
    return Preprocessor(kind).transform(check_matrix(X, "X"))
