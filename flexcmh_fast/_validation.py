"""Input validation shared by every public entry point.

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
# dtype's maximum with room for the cross terms, distances and objective
# sums computed from it (FlexCMH's codes change from half of float64 max on;
# 1/10 still trains as at ordinary scales).
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


def check_int(value, name, low=None, high=None):
    """Return ``value`` as a Python int after checking its type and range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"'{name}' must be an int{_range_text(low, high)}. "
            f"Got {_describe(value)} of type {type(value).__name__} instead."
        )
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(
            f"'{name}' must be an int{_range_text(low, high)}. Got {value} instead."
        )
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
                high_inclusive=True):
    """Return ``value`` as a finite Python float within the given bounds."""
    lo_b = "[" if low_inclusive else "("
    hi_b = "]" if high_inclusive else ")"
    expected = (
        f"a finite float in {lo_b}{'-inf' if low is None else low}, "
        f"{'inf' if high is None else high}{hi_b}"
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
            f"'{name}' must be one of {sorted(map(repr, options))}. "
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


def check_n_threads(n_threads, name="n_threads"):
    """Resolve ``n_threads``: ``None`` or ``-1`` mean all available cores;
    otherwise an int in [1, max_threads()]."""
    if n_threads is None:
        return available_cores()
    n_threads = check_int(n_threads, name)
    if n_threads == -1:
        return available_cores()
    if not 1 <= n_threads <= max_threads():
        raise ValueError(
            f"'{name}' must be None, -1 or an int >= 1 and <= {max_threads()}. "
            f"Got {n_threads} instead."
        )
    return n_threads


def check_random_state(random_state, name="random_state"):
    """Turn ``random_state`` into a :class:`numpy.random.Generator`.

    Accepts ``None`` (fresh entropy), an int seed, a ``Generator`` (used as is)
    or a legacy ``RandomState`` (a seed is drawn from it).
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(
            random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(
                f"'{name}' must be None, a non-negative int or a numpy Generator. "
                f"Got {random_state} instead."
            )
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"'{name}' must be None, a non-negative int or a numpy Generator. "
        f"Got {_describe(random_state)} of type {type(random_state).__name__} instead."
    )


def feature_dtype(dtype):
    """The dtype a feature matrix of ``dtype`` is used in: float32 and
    float64 as they are, anything else (ints, bools, other floats) float64."""
    dtype = np.dtype(dtype)
    return dtype if dtype in MAX_SUM_OF_SQUARES else np.dtype(np.float64)


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
        if X.ndim != 2:
            raise ValueError(f"'{name}' must be 2-D. Got {_describe(X)} instead.")
        if X.dtype.kind not in "biuf":
            raise TypeError(
                f"'{name}' must hold real numbers. Got dtype {X.dtype} instead."
            )
        dtype = feature_dtype(X.dtype)
        if not (X.format == "csr" and X.dtype == dtype and X.has_canonical_format):
            X = sp.csr_matrix(X, dtype=dtype, copy=True)
            X.sum_duplicates()
            X.sort_indices()
        data = X.data
    else:
        if isinstance(X, (str, bytes, dict, set)) or X is None:
            raise TypeError(
                f"'{name}' must be a 2-D array or scipy.sparse matrix. "
                f"Got {_describe(X)} of type {type(X).__name__} instead."
            )
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(
                f"'{name}' must be a 2-D array or scipy.sparse matrix. "
                f"Could not convert {type(X).__name__}: {exc}"
            ) from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"'{name}' must hold real numbers. Got dtype {arr.dtype} instead."
            )
        if arr.ndim != 2:
            raise ValueError(
                f"'{name}' must be 2-D (n_samples, n_features). "
                f"Got {_describe(arr)} instead."
            )
        X = arr.astype(feature_dtype(arr.dtype), copy=False)
        data = X
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
        # Column-wise max == min, implicit zeros included.
        constant = bool(np.all(X.max(axis=0).toarray() == X.min(axis=0).toarray()))
    else:
        constant = not any(np.any(block != X[0]) for block in _row_blocks(X))
    if constant:
        all_zero = " (all zero)" if not _stored_values(X).any() else ""
        warnings.warn(
            f"'{name}' is constant: all {n} samples are identical{all_zero}, so every "
            "sample of this modality will get the same code and it cannot be told apart "
            "in retrieval.", DegenerateDataWarning, stacklevel=2)
    return constant
