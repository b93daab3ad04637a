"""The estimator base class shared by every hashing method.

Conventions (scikit-learn's): ``__init__`` stores every setting unchanged
and validates nothing; ``fit`` validates them against the method's parameter
table (:mod:`flexcmh_fast._params`) and returns ``self``; fitted state lives
in attributes with a trailing underscore; ``get_params`` / ``set_params``
make estimators work with ``sklearn.base.clone`` and grid searches.
"""
import os

import numpy as np

from ._params import validate_params
from ._persist import save_state
from ._validation import (
    check_bool,
    check_int,
    check_matrix,
    check_modalities,
    check_parameter_names,
    check_random_state,
    normalize_labels,
    normalize_pairs,
)


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted estimator is called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """Warned when a fit stops at ``max_iter`` without meeting its convergence test."""


class HashingEstimator:
    """Base class: parameters, validation, ``encode`` / ``transform``, ``save``.

    Subclasses declare ``_parameters`` (their table), ``kind`` (the name
    saved files carry), ``_requires_labels`` (``True`` for supervised
    methods: ``fit`` refuses ``labels=None``; a method that needs labels for
    some settings only overrides :meth:`_labels_required_by`), an
    ``__init__`` whose keyword arguments are exactly the table's names,
    ``_fit(modalities, pairs, labels, params, rng)``,
    ``_encode_signs(X, modality)`` returning ±1 int8, and
    ``_get_state()`` / ``_set_state(meta, arrays)`` / ``_check_state`` for
    the method's own saved state.  What every method has — ``codes_``,
    ``train_codes_``, ``history_`` and ``n_iter_`` — is saved and restored
    here; ``_FORMAT1_HISTORY_TERMS`` names the history columns of files
    written before the terms were stored.
    """

    _FORMAT1_HISTORY_TERMS = ()
    # Feature dtypes a method fits and encodes as they are (scikit-learn's
    # ``preserves_dtype`` tag); other input is cast to float64.
    _preserves_dtype = ("float64",)

    _parameters = {}
    kind = None
    _requires_labels = False

    # ---- parameters ----------------------------------------------------
    @classmethod
    def _get_param_names(cls):
        return list(cls._parameters)

    def get_params(self, deep=True):
        """Settings of this estimator, ``{name: value}`` (``deep`` is accepted
        for scikit-learn compatibility; there are no nested estimators)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Change settings (validated at the next ``fit``); returns ``self``."""
        check_parameter_names(params, self._get_param_names(), type(self).__name__,
                              error=ValueError)
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def _validated_params(self):
        return validate_params(self.get_params(), self._parameters)

    def _labels_required_by(self, params):
        """Who needs ``labels`` with the validated settings ``params`` (the
        name the error gives), or ``None`` when labels are optional."""
        return type(self).__name__ if self._requires_labels else None

    def __repr__(self):
        shown = []
        for name, p in self._parameters.items():
            value = getattr(self, name, p.default)
            same = value is p.default
            if not same:
                try:
                    same = bool(type(value) is type(p.default) and value == p.default)
                except (TypeError, ValueError):
                    same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # ---- fitting ---------------------------------------------------------
    def fit(self, modalities, pairs=None, labels=None):
        """Learn one hash function per modality.

        Parameters
        ----------
        modalities : list of array-like or scipy.sparse matrices
            One ``(n_m, d_m)`` feature matrix per modality (M >= 2); sample
            counts may differ between modalities (FlexCMH).  Sparse (CSR)
            input is never densified.
        pairs : None, "all", ndarray of shape (P, 2), or dict
            Known correspondences: ``None`` (none known), ``"all"`` (row i of
            every modality is one object), a ``(P, 2)`` int array of (row in
            modality 0, row in modality 1), or ``{(m, m2): (P, 2) array}``.
        labels : list of ndarray, optional
            One array per modality: 1-D class ids or a 2-D 0/1 multi-label
            matrix (supervised methods and FlexCMH(nC) only).

        Returns
        -------
        self
        """
        params = self._validated_params()
        Xs = [self._as_supported_dtype(X) for X in check_modalities(modalities)]
        n_samples = [X.shape[0] for X in Xs]
        pairs = normalize_pairs(pairs, n_samples)
        labels = normalize_labels(labels, n_samples, self._labels_required_by(params))
        # random_state is resolved once, here: every draw of the fit comes
        # from this one generator, in a fixed order.
        rng = check_random_state(params["random_state"])
        self._fit(Xs, pairs, labels, params, rng)
        self.n_bits_ = params["n_bits"]
        self.n_features_ = [int(X.shape[1]) for X in Xs]
        return self

    def _as_supported_dtype(self, X):
        """``X`` in a dtype the method computes in (:attr:`_preserves_dtype`)."""
        return X if X.dtype.name in self._preserves_dtype else X.astype(np.float64)

    # ---- using a fitted estimator ----------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "n_features_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "the training modalities (or use flexcmh_fast.train) before using it.")

    @property
    def n_modalities_(self):
        """Number of modalities the fitted estimator encodes."""
        self._check_fitted()
        return len(self.n_features_)

    def encode(self, X, modality, packed=True):
        """Hash samples of one modality to binary codes.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Samples of modality ``modality``; may be data never seen in
            training, any batch size including zero rows.  Sparse input is
            never densified.
        modality : int
            Index of the modality ``X`` belongs to (order of ``fit``).
        packed : bool, default=True
            ``True``: packed uint8 codes of shape (n_samples, ceil(n_bits/8))
            (most significant bit first, padding zero).  ``False``: ±1 int8
            of shape (n_samples, n_bits).

        Returns
        -------
        ndarray
        """
        from .search import pack_codes

        self._check_fitted()
        modality = check_int(modality, "modality", 0, len(self.n_features_) - 1)
        packed = check_bool(packed, "packed")
        X = self._as_supported_dtype(check_matrix(X, "X", n_features=self.n_features_[modality]))
        if X.shape[0] == 0:
            signs = np.zeros((0, self.n_bits_), dtype=np.int8)
        else:
            signs = self._encode_signs(X, modality)
        return pack_codes(signs) if packed else signs

    def transform(self, X, modality, packed=True):
        """The same as :meth:`encode` (scikit-learn's name for it)."""
        return self.encode(X, modality, packed=packed)

    def save(self, path):
        """Save the fitted estimator to ``path`` (portable ``.npz``; no
        pickled objects), atomically.  Load it with :func:`flexcmh_fast.load`."""
        self._check_fitted()
        meta, arrays = self._get_state()
        meta.update(params=_jsonable_params(self.get_params()), n_bits=self.n_bits_,
                    n_features=self.n_features_, n_iter=self.n_iter_,
                    history_terms=list(self.history_))
        arrays["history"] = np.column_stack(
            [np.asarray(v, dtype=np.float64).reshape(-1) for v in self.history_.values()])
        # np.asarray: a fit on Dask holds dask arrays here; saving computes them.
        arrays["codes"] = np.asarray(self.codes_)
        arrays.update({f"train_codes_{m}": np.asarray(c)
                       for m, c in enumerate(self.train_codes_)})
        save_state(path, self.kind, meta, arrays)

    @classmethod
    def _from_state(cls, meta, arrays):
        cls._check_state(meta, arrays)
        params = {name: value for name, value in meta["params"].items()
                  if name in cls._parameters}
        params.setdefault("n_bits", int(meta["n_bits"]))
        est = cls(**params)
        try:
            est.n_bits_ = int(meta["n_bits"])
            est.n_features_ = [int(d) for d in meta["n_features"]]
            est.n_iter_ = int(meta["n_iter"])
            est.codes_ = arrays["codes"]
            est.train_codes_ = [arrays[f"train_codes_{m}"]
                                for m in range(len(est.n_features_))]
            est.history_ = cls._history_from_state(meta, arrays)
            est._set_state(meta, arrays)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"Corrupt {cls.kind} file: missing or bad entry {exc}.") from None
        return est

    @classmethod
    def _history_from_state(cls, meta, arrays):
        terms = meta.get("history_terms", list(cls._FORMAT1_HISTORY_TERMS))
        return history_dict(arrays["history"], terms)

    # ---- to implement ----------------------------------------------------
    @classmethod
    def _check_state(cls, meta, arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, Xs, pairs, labels, params, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_signs(self, X, modality):  # pragma: no cover - abstract
        raise NotImplementedError

    def _get_state(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, meta, arrays):  # pragma: no cover - abstract
        raise NotImplementedError


def history_dict(rows, names):
    """Per-iteration records (a list of tuples in the order of ``names``)
    as ``{name: 1-D float64 array}``, the ``history_`` of every method."""
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, len(names))
    return {name: arr[:, i].copy() for i, name in enumerate(names)}


def _jsonable_params(params):
    """Settings as saved: callables and generators are not stored (None),
    paths are stored as strings."""
    out = {}
    for name, value in params.items():
        if callable(value) or isinstance(value, (np.random.Generator, np.random.RandomState)):
            value = None
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return out
