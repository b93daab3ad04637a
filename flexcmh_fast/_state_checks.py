"""Checks of a loaded object's state (header ``meta`` and stored arrays).

A file that passed the archive checks of ``_persist.read_state`` may still
have been edited by hand or written by another program: every field an
object's ``_from_state`` relies on is checked here before it is used, and
every failure raises :class:`~flexcmh_fast._persist.FileFormatError` saying
which entry is wrong and what was expected (``flexcmh_fast.load`` adds the
file name).
"""
import numbers

import numpy as np

from ._persist import FileFormatError
from ._validation import MAX_BITS

# The layout module alone, not the search package, whose HammingIndex loads
# its saved state through this module.
from .search._layout import code_bytes

_KIND_NAMES = {"f": "float", "i": "signed int", "u": "unsigned int", "b": "bool"}


def meta_int(meta, key, low=None, high=None, allow_none=False):
    """``meta[key]`` as an int within [low, high] (JSON ints only; no bools)."""
    if key not in meta:
        raise FileFormatError(f"header meta has no {key!r}")
    value = meta[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
            low is not None and value < low) or (high is not None and value > high):
        raise FileFormatError(
            f"header meta {key!r} must be an int in [{low}, {high}]"
            f"{' or null' if allow_none else ''}. Got {value!r:.60}")
    return int(value)


def finite_number(value, name, positive=False):
    """``value`` as a finite float (JSON numbers; no bools)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or (positive and not value > 0):
        raise FileFormatError(f"{name} must be a finite{' positive' if positive else ''} "
                              f"number. Got {value!r:.60}")
    return float(value)


def meta_int_list(meta, key, low=None, length=None):
    """``meta[key]`` as a list of ints >= ``low`` (of ``length`` items)."""
    value = meta.get(key)
    if (not isinstance(value, list) or (length is not None and len(value) != length)
            or not all(isinstance(v, int) and not isinstance(v, bool)
                       and (low is None or v >= low) for v in value)):
        raise FileFormatError(
            f"header meta {key!r} must be a list of {'' if length is None else length} "
            f"ints >= {low}. Got {value!r:.60}")
    return [int(v) for v in value]


def meta_dict(meta, key):
    value = meta.get(key)
    if not isinstance(value, dict):
        raise FileFormatError(f"header meta {key!r} must be a JSON object. Got {value!r:.60}")
    return value


def meta_option(params, key, options, default=None):
    """``params[key]`` (or ``default`` when absent) among ``options``."""
    value = params.get(key, default)
    if not isinstance(value, str) or value not in options:
        raise FileFormatError(f"{key!r} must be one of {list(options)}. Got {value!r:.60}")
    return value


def array_entry(arrays, key, kinds="f", shape=None, ndim=None, finite=True):
    """``arrays[key]`` after checking its dtype kind, shape and values.

    ``shape`` may hold ``None`` for a free axis; ``finite`` requires no NaN
    or inf in float entries.
    """
    if key not in arrays:
        raise FileFormatError(f"entry {key!r} is missing")
    value = arrays[key]
    if value.dtype.kind not in kinds:
        raise FileFormatError(
            f"entry {key!r} must hold {' or '.join(_KIND_NAMES[k] for k in kinds)} values. "
            f"Got dtype {value.dtype}")
    if ndim is None and shape is not None:
        ndim = len(shape)
    if ndim is not None and value.ndim != ndim:
        raise FileFormatError(f"entry {key!r} must be {ndim}-D. Got shape {value.shape}")
    if shape is not None and any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise FileFormatError(f"entry {key!r} must have shape {expected}. "
                              f"Got {value.shape}")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise FileFormatError(f"entry {key!r} holds NaN or inf")
    return value


def packed_codes_entry(arrays, key, n_bits, n_rows=None):
    """Packed ±1 codes: uint8, (n_rows, ceil(n_bits / 8)), zero padding bits."""
    width = code_bytes(n_bits)
    codes = arrays.get(key)
    if codes is None:
        raise FileFormatError(f"entry {key!r} is missing")
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != width or (
            n_rows is not None and codes.shape[0] != n_rows):
        raise FileFormatError(
            f"entry {key!r} must be uint8 codes of shape ({'any' if n_rows is None else n_rows}"
            f", {width}) for n_bits={n_bits}. Got {codes.dtype} of shape {codes.shape}")
    if n_bits % 8 and codes.size and np.any(codes[:, -1] & ((1 << (8 - n_bits % 8)) - 1)):
        raise FileFormatError(f"entry {key!r} has nonzero padding bits beyond n_bits={n_bits}")
    return codes


def check_code_state(arrays, prefix, scheme, n_bits=None, k=None):
    """State of an ITQ or k-means code function for ``n_bits`` bits on
    ``k``-dimensional indicator vectors (``None``: whatever the arrays say,
    as long as they agree with each other).  Returns ``(n_bits, k)``."""
    if scheme == "itq":
        from .flexcmh._codes import full_rotation

        mu = array_entry(arrays, prefix + "mu", shape=(k,))
        W = array_entry(arrays, prefix + "W", shape=(mu.shape[0], n_bits))
        if W.shape[1] < 1:
            raise FileFormatError(f"entry {prefix + 'W'!r} of shape {W.shape} has no bit")
        # Long codes fold the rotation into W; files written before that
        # (a full rotation for every length) still load.
        if full_rotation(W.shape[1], mu.shape[0]) or prefix + "R" in arrays:
            array_entry(arrays, prefix + "R", shape=(W.shape[1], W.shape[1]))
        return W.shape[1], mu.shape[0]
    if scheme == "kmeans":
        books = array_entry(arrays, prefix + "codebooks", shape=(None, n_bits, k))
        if books.shape[0] < 1 or books.shape[1] < 1:
            raise FileFormatError(f"entry {prefix + 'codebooks'!r} of shape {books.shape} "
                                  "holds no codebook")
        return books.shape[1], books.shape[2]
    raise FileFormatError(f"unknown code scheme {scheme!r}")


def check_index_state(meta, arrays):
    """``HammingIndex`` state; returns ``(n_bits, n_codes, n_threads)``."""
    n_bits = meta_int(meta, "n_bits", 1, MAX_BITS)
    n_codes = meta_int(meta, "n_codes", 0)
    n_threads = meta_int(meta, "n_threads", -1, allow_none=True)
    if n_threads == 0:
        raise FileFormatError("header meta 'n_threads' must be null, -1 or >= 1. Got 0")
    packed_codes_entry(arrays, "codes", n_bits, n_codes)
    return n_bits, n_codes, n_threads


def _model_shape(meta):
    """``n_bits`` and ``n_features`` (>= 2 modalities) of a model's meta."""
    n_bits = meta_int(meta, "n_bits", 1, MAX_BITS)
    n_features = meta_int_list(meta, "n_features", low=1)
    if len(n_features) < 2:
        raise FileFormatError(f"header meta 'n_features' must list >= 2 modalities. "
                              f"Got {n_features}")
    meta_int(meta, "n_iter", 0)
    return n_bits, n_features


def _sigmas(meta, n_mod):
    """The per-modality RBF widths: ``n_mod`` finite positive numbers."""
    sigmas = meta.get("sigmas")
    if not isinstance(sigmas, list) or len(sigmas) != n_mod:
        raise FileFormatError(f"header meta 'sigmas' must list {n_mod} numbers. "
                              f"Got {sigmas!r:.60}")
    return [finite_number(sigma, f"header meta 'sigmas'[{m}]", positive=True)
            for m, sigma in enumerate(sigmas)]


def check_flexcmh_state(meta, arrays):
    """``FlexCMH`` state (formats 1 and 2): every meta field and array its
    ``_from_state`` reads, with consistent shapes."""
    n_bits, n_features = _model_shape(meta)
    n_mod = len(n_features)
    params = meta_dict(meta, "params")
    scheme = meta_option(params, "code_scheme", ("itq", "kmeans"))
    encoder = meta_option(params, "encoder", ("nnls", "kernel"), default="nnls")
    k = None
    for m, d in enumerate(n_features):
        Z = array_entry(arrays, f"Z_{m}", shape=(d, k))
        k = Z.shape[1]
    check_code_state(arrays, "code_", scheme, n_bits, k)
    array_entry(arrays, "history", ndim=2)
    packed_codes_entry(arrays, "codes", n_bits)
    for m in range(n_mod):
        packed_codes_entry(arrays, f"train_codes_{m}", n_bits)
    array_entry(arrays, "cluster_matching", kinds="iu", ndim=2)
    pair_keys = meta.get("pair_keys")
    if not isinstance(pair_keys, list):
        raise FileFormatError(f"header meta 'pair_keys' must be a list. Got {pair_keys!r:.60}")
    for key in pair_keys:
        if (not isinstance(key, list) or len(key) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_mod
                           for v in key) or key[0] == key[1]):
            raise FileFormatError(f"header meta 'pair_keys' must hold [m, m2] pairs of "
                                  f"distinct modalities < {n_mod}. Got {key!r:.60}")
        array_entry(arrays, f"gamma_{key[0]}_{key[1]}", kinds="iu", ndim=2)
    if encoder == "kernel":
        _sigmas(meta, n_mod)
        for m, d in enumerate(n_features):
            anchors = array_entry(arrays, f"anchors_{m}", shape=(None, d))
            array_entry(arrays, f"encoder_weights_{m}", shape=(anchors.shape[0], k))


def check_preprocess_state(meta, arrays, n_features):
    """FlexCMH's fitted preprocessing (format 2): one known kind per
    modality, and for ``"standard"`` finite column means and positive scales."""
    from ._preprocess import KINDS

    kinds = meta.get("preprocess_kinds", ["none"] * len(n_features))
    if not isinstance(kinds, list) or len(kinds) != len(n_features):
        raise FileFormatError(f"header meta 'preprocess_kinds' must list {len(n_features)} "
                              f"kinds. Got {kinds!r:.60}")
    for m, (kind, d) in enumerate(zip(kinds, n_features)):
        if not isinstance(kind, str) or kind not in KINDS:
            raise FileFormatError(f"header meta 'preprocess_kinds'[{m}] must be one of "
                                  f"{list(KINDS)}. Got {kind!r:.60}")
        if kind == "standard":
            array_entry(arrays, f"pre_{m}_mean", shape=(d,))
            scale = array_entry(arrays, f"pre_{m}_scale", shape=(d,))
            if not (scale > 0).all():
                raise FileFormatError(f"array 'pre_{m}_scale' must be positive.")


def check_csmh_state(meta, arrays):
    """``CSMH`` state (formats 1 and 2): every meta field and array its
    ``_from_state`` reads, with consistent shapes."""
    n_bits, n_features = _model_shape(meta)
    _sigmas(meta, len(n_features))
    meta_dict(meta, "params")
    if "n_threads" in meta:
        meta_int(meta, "n_threads", 1)
    packed_codes_entry(arrays, "codes", n_bits)
    array_entry(arrays, "history", ndim=2)
    for m, d in enumerate(n_features):
        anchors = array_entry(arrays, f"anchors_{m}", shape=(None, d))
        array_entry(arrays, f"weights_{m}", shape=(anchors.shape[0] + 1, n_bits))
        packed_codes_entry(arrays, f"train_codes_{m}", n_bits)


def check_linear_hash_state(meta, arrays, history_terms):
    """State of a peer baseline (``CCAITQ``, ``CMFH``, ``SCM``): a mean and
    a ``(d_m, n_bits)`` projection per modality, packed codes and a history
    with one column per name of ``history_terms``."""
    n_bits, n_features = _model_shape(meta)
    meta_dict(meta, "params")
    packed_codes_entry(arrays, "codes", n_bits)
    array_entry(arrays, "history", shape=(None, len(history_terms)))
    for m, d in enumerate(n_features):
        array_entry(arrays, f"mean_{m}", shape=(d,))
        array_entry(arrays, f"projection_{m}", shape=(d, n_bits))
        packed_codes_entry(arrays, f"train_codes_{m}", n_bits)
