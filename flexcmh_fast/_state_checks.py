"""Checks of a loaded object's state (header ``meta`` and stored arrays):
the helpers every saved object's check is written with.

A file that passed the archive checks of ``_persist.read_state`` may still
have been edited by hand or written by another program: every field an
object's ``_from_state`` relies on is checked before it is used, and every
failure raises :class:`~flexcmh_fast._persist.FileFormatError` saying which
entry is wrong and what was expected (``flexcmh_fast.load`` adds the file
name).  Each method's own check lives in its package (``flexcmh/_state.py``,
``csmh/_state.py``, ``baselines/_state.py``), the checks of packed codes and
of a ``HammingIndex`` in ``search/_saved.py``; this module imports neither.
"""
import numbers

import numpy as np

from ._persist import FileFormatError
from ._validation import MAX_BITS

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


def model_shape(meta):
    """``n_bits`` and ``n_features`` (>= 2 modalities) of a model's meta."""
    n_bits = meta_int(meta, "n_bits", 1, MAX_BITS)
    n_features = meta_int_list(meta, "n_features", low=1)
    if len(n_features) < 2:
        raise FileFormatError(f"header meta 'n_features' must list >= 2 modalities. "
                              f"Got {n_features}")
    meta_int(meta, "n_iter", 0)
    return n_bits, n_features


def meta_sigmas(meta, n_mod):
    """The per-modality RBF widths: ``n_mod`` finite positive numbers."""
    sigmas = meta.get("sigmas")
    if not isinstance(sigmas, list) or len(sigmas) != n_mod:
        raise FileFormatError(f"header meta 'sigmas' must list {n_mod} numbers. "
                              f"Got {sigmas!r:.60}")
    return [finite_number(sigma, f"header meta 'sigmas'[{m}]", positive=True)
            for m, sigma in enumerate(sigmas)]
