"""Checks of saved packed codes and of a saved ``HammingIndex`` (the search
engine's part of the file format checks, :mod:`flexcmh_fast._state_checks`)."""
import numpy as np

from .._persist import FileFormatError
from .._state_checks import meta_int
from .._validation import MAX_BITS
from ._layout import code_bytes


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


def check_index_state(meta, arrays):
    """``HammingIndex`` state; returns ``(n_bits, n_codes, n_threads)``."""
    n_bits = meta_int(meta, "n_bits", 1, MAX_BITS)
    n_codes = meta_int(meta, "n_codes", 0)
    n_threads = meta_int(meta, "n_threads", -1, allow_none=True)
    if n_threads == 0:
        raise FileFormatError("header meta 'n_threads' must be null, -1 or >= 1. Got 0")
    packed_codes_entry(arrays, "codes", n_bits, n_codes)
    return n_bits, n_codes, n_threads
