"""Input validation shared by every public entry point.

One rule per kind of value, used by the entry points' own checks and by
the constraints of the parameter tables (:mod:`flexcmh_fast._params`):
ints, floats, options, thread counts (one bound, :func:`max_threads`),
random states, callables, the names of settings; and the training inputs
every ``fit`` shares (the modalities, the pairs, the labels).

One message style everywhere: the argument's name, what was given and what
is expected, e.g. ``'n_bits' must be an int in [1, 4096]. Got 0 instead.``
Validation never modifies its inputs.
"""
import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp

MAX_BITS = 4096
# Feature matrices are computed with in their own floating dtype: float32
# stays float32 (no copy), anything else becomes float64.
FEATURE_DTYPES = (np.float32, np.float64)
# Largest accepted sum of squared entries of a feature matrix, per dtype: the
# dtype's maximum with a margin for the cross terms, distances and objective
# sums computed from it, which must stay finite and exact enough that
# training gives the codes it gives at ordinary scales (tests/test_faults.py
# trains just below the bound).
MAX_SUM_OF_SQUARES = {np.dtype(t): float(np.finfo(t).max) / 1e4 for t in FEATURE_DTYPES}
_SCALE_BLOCK_ROWS = 4096  # rows per block when summing rescaled squares
# Bytes of a dense matrix read at a time by the checks (cache-sized blocks:
# each block's reductions read it from cache).
_CHECK_BLOCK_BYTES = 1 << 22


class DegenerateDataWarning(UserWarning):
    """Training data that can only give degenerate codes (e.g. a modality
    whose samples are all identical, so every sample gets the same code)."""


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if sp.issparse(value):
        return f"a sparse {value.format} matrix of shape {value.shape}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def check_int(value, name, low=None, high=None, allow_none=False):
    """Return ``value`` as a Python int after checking its type and range
    (``allow_none``: ``None`` is accepted and returned as is)."""
    if value is None and allow_none:
        return None
    expected = f"{'None or ' if allow_none else ''}an int{_range_text(low, high)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"'{name}' must be {expected}. "
            f"Got {_describe(value)} of type {type(value).__name__} instead."
        )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"'{name}' must be {expected}. Got {value} instead.")
    return value


def _range_text(low, high):
    if low is None and high is None:
        return ""
    if high is None:
        return f" >= {low}"
    if low is None:
        return f" <= {high}"
    return f" in [{low}, {high}]"


def check_float(value, name, low=None, high=None, low_inclusive=True,
                high_inclusive=True, allow_none=False):
    """Return ``value`` as a finite Python float within the given bounds
    (``allow_none``: ``None`` is accepted and returned as is)."""
    if value is None and allow_none:
        return None
    lo_b = "[" if low_inclusive else "("
    hi_b = "]" if high_inclusive else ")"
    expected = (
        f"{'None or ' if allow_none else ''}a finite float in "
        f"{lo_b}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_b}"
    )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"'{name}' must be {expected}. Got {_describe(value)} of type "
            f"{type(value).__name__} instead."
        )
    value = float(value)
    bad = not np.isfinite(value)
    if low is not None:
        bad |= value < low if low_inclusive else value <= low
    if high is not None:
        bad |= value > high if high_inclusive else value >= high
    if bad:
        raise ValueError(f"'{name}' must be {expected}. Got {value} instead.")
    return value


def check_option(value, name, options):
    """Check that ``value`` is one of ``options`` (compared with ``==``)."""
    if not isinstance(value, (str, bool, numbers.Number)) or value not in options:
        raise ValueError(
            f"'{name}' must be one of [{', '.join(sorted(map(repr, options)))}]. "
            f"Got {_describe(value)} instead."
        )
    return value


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"'{name}' must be a bool. Got {_describe(value)} of type "
            f"{type(value).__name__} instead."
        )
    return bool(value)


def check_file_path(value, name, allow_none=True):
    """``value`` as a path string (``str`` or ``os.PathLike``; or ``None``
    when ``allow_none``) naming a file in an existing folder."""
    if value is None and allow_none:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    expected = f"{'None or ' if allow_none else ''}a file path (str or os.PathLike)"
    if not isinstance(value, str) or not value:
        raise TypeError(f"'{name}' must be {expected}. Got {_describe(value)} of type "
                        f"{type(value).__name__} instead.")
    folder = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(folder) or os.path.isdir(value):
        raise ValueError(f"'{name}' must be {expected} of a file in an existing folder. "
                         f"Got {value!r} instead.")
    return value


def check_callable(value, name, allow_none=True):
    """``value`` if it is callable (or ``None`` when ``allow_none``)."""
    if not callable(value) and not (value is None and allow_none):
        raise TypeError(f"'{name}' must be callable{' or None' if allow_none else ''}. "
                        f"Got {_describe(value)} instead.")
    return value


def check_parameter_names(params, valid, owner, error=TypeError):
    """Refuse names of ``params`` that are not in ``valid`` (the settings of
    ``owner``): ``error`` (``TypeError`` as for an unexpected keyword
    argument; ``set_params`` passes ``ValueError``, scikit-learn's type)
    listing the valid names."""
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise error(f"Unknown parameter(s) {unknown} for {owner}. "
                    f"Valid parameters: {sorted(valid)}.")


def check_n_bits(n_bits, name="n_bits"):
    return check_int(n_bits, name, 1, MAX_BITS)


def available_cores():
    """Cores this process may run on (respects affinity masks / cgroups cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def max_threads():
    """Largest accepted thread count: some oversubscription is allowed, but
    not counts that would make the OpenMP kernels spawn thousands of threads
    (or overflow their C int)."""
    return max(1024, 4 * available_cores())


def check_n_threads(n_threads, name="n_threads", resolve=True):
    """Check ``n_threads``: ``None`` or ``-1`` (every available core), or an
    int in [1, max_threads()].

    ``resolve=True`` returns the thread count to use here (``None`` / ``-1``
    become :func:`available_cores`); ``resolve=False`` returns ``None`` for
    "every core" so that the process doing the work (this one, or each Dask
    worker) resolves it where it runs.
    """
    if n_threads is not None:
        n_threads = check_int(n_threads, name)
        if n_threads != -1 and not 1 <= n_threads <= max_threads():
            raise ValueError(
                f"'{name}' must be None, -1 or an int >= 1 and <= {max_threads()}. "
                f"Got {n_threads} instead."
            )
    if n_threads is None or n_threads == -1:
        return available_cores() if resolve else None
    return n_threads


def check_random_state(random_state, name="random_state", resolve=True):
    """Check ``random_state``: ``None`` (fresh entropy), a non-negative int
    seed, a numpy ``Generator`` or a legacy ``RandomState``.

    ``resolve=True`` turns it into a :class:`numpy.random.Generator` (a
    ``Generator`` is used as is; from a ``RandomState`` a seed is drawn);
    ``resolve=False`` returns the checked value unchanged (an int seed as a
    Python int), for settings resolved later, once, at the start of ``fit``.
    """
    expected = "None, a non-negative int or a numpy Generator"
    if isinstance(random_state, numbers.Integral) and not isinstance(
            random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"'{name}' must be {expected}. Got {random_state} instead.")
        random_state = int(random_state)
    elif random_state is not None and not isinstance(
            random_state, (np.random.Generator, np.random.RandomState)):
        raise TypeError(
            f"'{name}' must be {expected}. Got {_describe(random_state)} of type "
            f"{type(random_state).__name__} instead."
        )
    if not resolve or isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def feature_dtype(dtype):
    """The dtype a feature matrix of ``dtype`` is used in: float32 and
    float64 as they are, anything else (ints, bools, other floats) float64."""
    dtype = np.dtype(dtype)
    return dtype if dtype in MAX_SUM_OF_SQUARES else np.dtype(np.float64)


def _as_csr(X, name):
    """A sparse matrix as canonical CSR (sorted indices, no duplicates) in
    :func:`feature_dtype`; the caller's object itself when it already is."""
    if X.ndim != 2:
        raise ValueError(f"'{name}' must be 2-D. Got {_describe(X)} instead.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"'{name}' must hold real numbers. Got dtype {X.dtype} instead.")
    dtype = feature_dtype(X.dtype)
    if X.format == "csr" and X.dtype == dtype and X.has_canonical_format:
        return X
    X = sp.csr_matrix(X, dtype=dtype, copy=True)
    X.sum_duplicates()
    X.sort_indices()
    return X


def as_array(X, name, expected):
    """``X`` as an ndarray (itself when it is one); ``TypeError`` naming
    ``name`` and ``expected`` (a phrase: "a 2-D array") for strings,
    mappings, sets, None and what numpy cannot convert (ragged lists)."""
    if isinstance(X, np.ndarray):
        return X
    if isinstance(X, (str, bytes, dict, set)) or X is None:
        raise TypeError(
            f"'{name}' must be {expected}. Got {_describe(X)} of type {type(X).__name__} instead."
        )
    try:
        return np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(
            f"'{name}' must be {expected}. Could not convert {type(X).__name__}: {exc}"
        ) from None


def _as_dense(X, name):
    """An array-like as a 2-D ndarray in :func:`feature_dtype`, in the
    caller's memory layout (no copy when the dtype is kept); subclasses
    (``np.matrix``, masked arrays) as plain ndarrays."""
    arr = np.asarray(as_array(X, name, "a 2-D array or scipy.sparse matrix"))
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"'{name}' must hold real numbers. Got dtype {arr.dtype} instead.")
    if arr.ndim != 2:
        raise ValueError(
            f"'{name}' must be 2-D (n_samples, n_features). Got {_describe(arr)} instead."
        )
    return arr.astype(feature_dtype(arr.dtype), copy=False)


def check_matrix(X, name, *, allow_sparse=True, n_features=None, min_samples=0):
    """Validate a feature matrix.

    Returns the matrix in :func:`feature_dtype` (float32 and float64 kept as
    they are: scikit-learn's ``preserves_dtype``), a dense ndarray in the
    caller's memory layout, or a CSR matrix with sorted indices and no
    explicit duplicates when sparse input is allowed.  Never densifies
    sparse input; never modifies the caller's object; copies only what must
    change (another dtype, another sparse format, unsorted or duplicate
    CSR entries).  The checks read a dense matrix once, in cache-sized
    blocks of rows.

    Raises
    ------
    TypeError
        Not an array-like / sparse matrix, or sparse where not allowed.
    ValueError
        Not 2-D, wrong number of features, too few rows, NaN or inf.
    """
    if sp.issparse(X):
        if not allow_sparse:
            raise TypeError(
                f"'{name}' must be a dense array; got {_describe(X)}. "
                "Convert it with .toarray() if it fits in memory."
            )
        X = _as_csr(X, name)
        data = X.data
    else:
        X = data = _as_dense(X, name)
    if X.shape[0] < min_samples:
        raise ValueError(
            f"'{name}' must have at least {min_samples} row(s). "
            f"Got shape {X.shape} instead."
        )
    if X.shape[1] < 1:
        raise ValueError(
            f"'{name}' must have at least one feature column. Got shape {X.shape} instead."
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"'{name}' must have {n_features} features (columns), as in training. "
            f"Got shape {X.shape} instead."
        )
    low, high = value_range(data)
    if not (np.isfinite(low) and np.isfinite(high)):
        n_bad = sum(int(block.size - np.count_nonzero(np.isfinite(block)))
                    for block in _row_blocks(data))
        raise ValueError(
            f"'{name}' must not contain NaN or inf. Found {n_bad} non-finite value(s)."
        )
    check_finite_scale(X, name, peak=max(high, -low))
    return X


def _stored_values(X):
    return X.data if sp.issparse(X) else X


def _row_blocks(data):
    """``data`` (a dense matrix or a 1-D array) in blocks of rows of about
    ``_CHECK_BLOCK_BYTES``."""
    if data.ndim == 1:
        rows = max(1, _CHECK_BLOCK_BYTES // data.itemsize)
    else:
        rows = max(1, _CHECK_BLOCK_BYTES // max(data.itemsize * data.shape[1], 1))
    for s in range(0, data.shape[0], rows):
        yield data[s:s + rows]


def value_range(data):
    """Smallest and largest value of ``data`` (NaN in both when a value is
    NaN), read once in blocks of rows; ``(0.0, 0.0)`` when empty."""
    if data.size == 0:
        return 0.0, 0.0
    low, high = np.inf, -np.inf
    for block in _row_blocks(data):
        block_low, block_high = float(block.min()), float(block.max())
        if np.isnan(block_low) or np.isnan(block_high):
            return np.nan, np.nan
        low, high = min(low, block_low), max(high, block_high)
    return low, high


def check_finite_scale(X, name, peak=None):
    """Refuse values so large that their squares overflow ``X``'s dtype.

    Every method sums squares of the features (squared norms, distances,
    the objective) and multiplies them in their dtype; near its maximum
    (float64: about 1.8e308, e.g. a few entries of 1e154; float32: about
    3.4e38, e.g. entries of 1e19) those values become inf or NaN and
    training or encoding silently breaks.  The sum of all squared entries
    must stay below ``MAX_SUM_OF_SQUARES[X.dtype]`` (the dtype's maximum /
    1e4).  ``X`` is a validated float32 / float64 ndarray or CSR matrix
    (only its stored values are read; nothing is densified or copied);
    ``peak``: its largest absolute value when already known.

    Raises
    ------
    ValueError
        The sum of the squared entries of ``X`` exceeds the bound.
    """
    data = _stored_values(X)
    if data.size == 0:
        return
    bound = MAX_SUM_OF_SQUARES[np.dtype(data.dtype)]
    if peak is None:
        low, high = value_range(data)
        peak = max(high, -low)
    if peak <= np.sqrt(bound / data.size):
        return  # even size * peak**2 is below the bound
    # Near the limit: the exact sum of squares, rescaled by the peak.
    rows = data.reshape(-1) if data.ndim == 1 else data
    total = sum(float(np.square(rows[s:s + _SCALE_BLOCK_ROWS] / np.float64(peak)).sum())
                for s in range(0, rows.shape[0], _SCALE_BLOCK_ROWS))
    if 2.0 * np.log(peak) + np.log(total) > np.log(bound):
        raise ValueError(
            f"'{name}' holds values up to {peak:.3g} in absolute value: the sum of their "
            f"squares exceeds {bound:.3g} ({data.dtype} max / 1e4), so norms, "
            f"distances and the objective would overflow to inf or NaN. Scale the "
            f"features down (e.g. divide '{name}' by {peak:.3g}) before training or "
            f"encoding."
        )


def warn_if_constant(X, name):
    """Warn (:class:`DegenerateDataWarning`) when every row of ``X`` is the
    same (including all-zero): every sample of that modality will get the
    same code.  ``X`` is a validated ndarray or CSR matrix; sparse input is
    not densified.  Dense rows are compared with the first in blocks, up to
    the first block that differs (at once for real data).  Returns whether
    ``X`` is constant."""
    n = X.shape[0]
    if n < 2:
        return False
    if sp.issparse(X):
        # Column-wise max == min, implicit zeros included, a block of rows at
        # a time (scipy takes column extremes of a CSC copy of the matrix).
        row_bytes = (X.data.itemsize + X.indices.itemsize) * X.nnz // n
        rows = max(1, _CHECK_BLOCK_BYTES // max(row_bytes, 1))
        high, low = np.full(X.shape[1], -np.inf), np.full(X.shape[1], np.inf)
        for s in range(0, n, rows):
            block = X[s:s + rows]
            high = np.maximum(high, block.max(axis=0).toarray().ravel())
            low = np.minimum(low, block.min(axis=0).toarray().ravel())
        constant = bool(np.all(high == low))
    else:
        constant = not any(np.any(block != X[0]) for block in _row_blocks(X))
    if constant:
        all_zero = " (all zero)" if not _stored_values(X).any() else ""
        warnings.warn(
            f"'{name}' is constant: all {n} samples are identical{all_zero}, so every "
            "sample of this modality will get the same code and it cannot be told apart "
            "in retrieval.", DegenerateDataWarning, stacklevel=2)
    return constant


# --------------------------------------------------------------------------
# The training inputs every ``fit`` shares: modalities, pairs, labels
# --------------------------------------------------------------------------
def as_int_array(values, name):
    """Integer ndarray view of ``values`` with a clear error for non-integers."""
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged nested sequences
        raise TypeError(f"'{name}' must be an integer array. Got {_describe(values)} "
                        "instead.") from None
    if arr.dtype.kind == "f":
        if arr.size and (not np.isfinite(arr).all() or np.any(arr != np.round(arr))):
            raise ValueError(f"'{name}' must hold integers. Got non-integer values.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    else:
        raise TypeError(f"'{name}' must be an integer array. Got dtype {arr.dtype} instead.")
    return arr


def check_modalities(modalities, check_one=None, expected="2-D arrays / sparse matrices"):
    """Validate the list of training matrices: a list or tuple of at least
    two, each checked by ``check_one(X, name)``.

    The default ``check_one`` is :func:`check_matrix` (dense or sparse, at
    least one row), followed by :func:`warn_if_constant` for every modality;
    the distributed trainer passes its check of a dask array (and
    ``expected="dask arrays"``, the text of the list's type error).
    """
    if not isinstance(modalities, (list, tuple)):
        raise TypeError(
            f"'modalities' must be a list of {expected}, one per modality. "
            f"Got {_describe(modalities)} of type {type(modalities).__name__} instead."
        )
    if len(modalities) < 2:
        raise ValueError(
            f"'modalities' must hold at least 2 modalities. Got {len(modalities)} instead."
        )
    if check_one is not None:
        return [check_one(X, f"modalities[{m}]") for m, X in enumerate(modalities)]
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


def normalize_labels(labels, n_samples, required_by=None):
    """Validate ``labels``: one array per modality, all 1-D class ids (int64)
    or all 2-D 0/1 multi-label matrices (uint8) with the same number of classes.

    ``required_by`` names who needs them (e.g. ``"CSMH"``): ``labels=None``
    then raises the one "needs labels" error; ``None``: labels are optional.
    """
    if labels is None:
        if required_by is not None:
            raise ValueError(
                "'labels' must be one array per modality (1-D class ids or 2-D 0/1 "
                f"matrices): {required_by} needs 'labels'. Got None instead."
            )
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
