"""``train``: the design card's entry point (build a method's estimator and
fit it), and the validation of the inputs every ``fit`` shares."""
import importlib

import numpy as np

from ._base import as_int_array
from ._validation import _describe, check_matrix, check_option, warn_if_constant

# method name -> "module:estimator class"
METHODS = {
    "flexcmh": "flexcmh_fast.flexcmh:FlexCMH",
    "csmh": "flexcmh_fast.csmh:CSMH",
    "cca_itq": "flexcmh_fast.baselines:CCAITQ",
    "cmfh": "flexcmh_fast.baselines:CMFH",
    "scm": "flexcmh_fast.baselines:SCM",
}


def estimator_class(method):
    """The estimator class of ``method`` (a name of :data:`METHODS`)."""
    method = check_option(method, "method", tuple(METHODS))
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def check_modalities(modalities):
    """Validate the list of training matrices (dense or sparse, >= 2 of them)."""
    if not isinstance(modalities, (list, tuple)):
        raise TypeError(
            "'modalities' must be a list of 2-D arrays / sparse matrices, one per "
            f"modality. Got {_describe(modalities)} of type {type(modalities).__name__} instead."
        )
    if len(modalities) < 2:
        raise ValueError(
            f"'modalities' must hold at least 2 modalities. Got {len(modalities)} instead."
        )
    Xs = [check_matrix(X, f"modalities[{m}]", min_samples=1)
          for m, X in enumerate(modalities)]
    for m, X in enumerate(Xs):
        warn_if_constant(X, f"modalities[{m}]")
    return Xs


def normalize_pairs(pairs, n_samples):
    """Turn ``pairs`` into ``{(m, m2): int64 array (P, 2)}`` with ``m < m2``.

    ``None`` -> ``{}``; ``"all"`` -> row i of every modality paired with row i
    of every other (requires equal sample counts); a (P, 2) array -> pairs of
    modalities (0, 1) (two modalities only); a dict -> validated as is.
    Duplicated rows and out-of-range indices raise ``ValueError``.
    """
    n_mod = len(n_samples)
    if pairs is None:
        return {}
    if isinstance(pairs, str):
        check_option(pairs, "pairs", ("all",))
        if len(set(n_samples)) != 1:
            raise ValueError(
                "pairs='all' needs the same number of samples in every modality. "
                f"Got sample counts {list(n_samples)} instead."
            )
        idx = np.arange(n_samples[0], dtype=np.int64)
        both = np.stack([idx, idx], axis=1)
        return {(m, m2): both.copy() for m in range(n_mod) for m2 in range(m + 1, n_mod)}
    if isinstance(pairs, dict):
        items = list(pairs.items())
    else:
        if n_mod != 2:
            raise ValueError(
                f"'pairs' as an array is only for two modalities; with {n_mod} "
                "modalities pass a dict {(m, m2): (P, 2) array}."
            )
        items = [((0, 1), pairs)]
    out = {}
    for key, value in items:
        if (not isinstance(key, tuple) or len(key) != 2
                or not all(isinstance(k, (int, np.integer)) for k in key)):
            raise TypeError(
                f"'pairs' keys must be (m, m2) tuples of modality indices. Got {key!r} instead."
            )
        m, m2 = int(key[0]), int(key[1])
        if not (0 <= m < n_mod and 0 <= m2 < n_mod) or m == m2:
            raise ValueError(
                f"'pairs' key {key!r} must name two different modalities in [0, {n_mod - 1}]."
            )
        name = f"pairs[{key!r}]" if isinstance(pairs, dict) else "pairs"
        arr = as_int_array(value, name)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                f"'{name}' must have shape (P, 2). Got shape {arr.shape} instead."
            )
        if m > m2:
            m, m2, arr = m2, m, arr[:, ::-1]
        for col, mod in ((0, m), (1, m2)):
            if arr.shape[0] and (arr[:, col].min() < 0 or arr[:, col].max() >= n_samples[mod]):
                raise ValueError(
                    f"'{name}' column {col} indexes modality {mod}, which has "
                    f"{n_samples[mod]} samples; got indices in "
                    f"[{arr[:, col].min()}, {arr[:, col].max()}]."
                )
        if arr.shape[0] and np.unique(arr, axis=0).shape[0] != arr.shape[0]:
            raise ValueError(f"'{name}' contains duplicated pairs.")
        if (m, m2) in out:
            raise ValueError(f"'pairs' names the modality pair {(m, m2)} twice.")
        out[(m, m2)] = np.ascontiguousarray(arr, dtype=np.int64)
    return out


def normalize_labels(labels, n_samples, required=False, method=""):
    """Validate ``labels``: one array per modality, all 1-D class ids (int64)
    or all 2-D 0/1 multi-label matrices (uint8) with the same number of classes."""
    if labels is None:
        if required:
            raise ValueError(f"method={method!r} needs 'labels' (one array per modality).")
        return None
    if not isinstance(labels, (list, tuple)) or len(labels) != len(n_samples):
        raise ValueError(
            f"'labels' must be a list with one array per modality ({len(n_samples)}). "
            f"Got {_describe(labels)} instead."
        )
    out = []
    for m, (lab, n) in enumerate(zip(labels, n_samples)):
        name = f"labels[{m}]"
        arr = as_int_array(lab, name)
        if arr.ndim not in (1, 2) or arr.shape[0] != n:
            raise ValueError(
                f"'{name}' must have {n} rows (one per sample of modality {m}), as 1-D "
                f"class ids or a 2-D 0/1 matrix. Got shape {arr.shape} instead."
            )
        if arr.ndim == 2:
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise ValueError(f"'{name}' as a 2-D multi-label matrix must hold only 0 and 1.")
            arr = arr.astype(np.uint8)
        elif arr.size and arr.min() < 0:
            raise ValueError(f"'{name}' class ids must be >= 0. Got {arr.min()}.")
        out.append(np.ascontiguousarray(arr))
    if len({a.ndim for a in out}) != 1 or (
            out[0].ndim == 2 and len({a.shape[1] for a in out}) != 1):
        raise ValueError(
            "'labels' must be all 1-D class ids or all 2-D matrices with the same "
            "number of classes."
        )
    return out


def train(modalities, pairs=None, *, method="flexcmh", labels=None, **params):
    """Learn hash functions for every modality: ``method``'s estimator with
    ``params``, fitted.

    ``fc.train(Xs, pairs, method="flexcmh", n_bits=32, random_state=0)`` is
    ``fc.FlexCMH(n_bits=32, random_state=0).fit(Xs, pairs)``: the same
    validation, the same codes.

    Parameters
    ----------
    modalities : list of array-like or scipy.sparse matrices
        One ``(n_m, d_m)`` feature matrix per modality (M >= 2).  Sample counts
        may differ between modalities.  Sparse input (CSR) is never densified.
    pairs : None, "all", ndarray of shape (P, 2), or dict
        Known correspondences: ``None`` (none known), ``"all"`` (row i of every
        modality is one object), a ``(P, 2)`` int array of (row in modality 0,
        row in modality 1), or ``{(m, m2): (P, 2) array}`` for any modalities.
    method : {"flexcmh", "csmh", "cca_itq", "cmfh", "scm"}, default="flexcmh"
        ``"flexcmh"``: :class:`flexcmh_fast.FlexCMH` (unsupervised, weakly
        paired data).  ``"csmh"``: :class:`flexcmh_fast.CSMH` (supervised;
        needs complete pairs and ``labels``).  ``"cca_itq"``, ``"cmfh"``
        (unsupervised) and ``"scm"`` (needs ``labels``): the peer baselines
        :class:`flexcmh_fast.CCAITQ`, :class:`flexcmh_fast.CMFH` and
        :class:`flexcmh_fast.SCM` (two modalities, trained on the known
        pairs).
    labels : list of ndarray, optional
        One array per modality: 1-D class ids or 2-D 0/1 multi-label matrix.
        Not used by the default FlexCMH (only by ``matching="labels"``).
    **params
        Settings of the method's estimator (``n_bits``, ``random_state``,
        ``n_threads``, ``verbose``, ``callback``, ...; see its docstring).
        Unknown names raise ``TypeError`` listing the valid ones.

    Returns
    -------
    FlexCMH, CSMH, CCAITQ, CMFH or SCM
        The fitted estimator (``encode``, ``codes_``, ``history_``, ``save``).
    """
    cls = estimator_class(method)
    unknown = sorted(set(params) - set(cls._parameters))
    if unknown:
        raise TypeError(f"Unknown parameter(s) {unknown} for method={method!r}. "
                        f"Valid parameters: {sorted(cls._parameters)}.")
    return cls(**params).fit(modalities, pairs, labels)
