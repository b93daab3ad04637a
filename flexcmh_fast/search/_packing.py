"""Packed binary codes: conversion between sign matrices and packed bytes.

Layout: a code of ``n_bits`` bits takes ``ceil(n_bits / 8)``
bytes (:func:`~._layout.code_bytes`), bit ``j`` of the code is bit
``7 - j % 8`` of byte ``j // 8`` (most significant bit first,
``np.packbits`` order), and padding bits are zero.
"""
import numpy as np

from .._validation import _describe, check_n_bits
from ._layout import code_bytes


def pack_codes(signs):
    """Pack a ±1 (or 0/1, or boolean) matrix into bytes.

    Parameters
    ----------
    signs : array-like of shape (n_codes, n_bits)
        Entries in {-1, +1} or in {0, 1} (or booleans).  A positive entry is a
        set bit.  Mixing -1 and 0 is ambiguous and rejected.

    Returns
    -------
    packed : ndarray of uint8, shape (n_codes, ceil(n_bits / 8))
        C-contiguous, most significant bit first, padding bits zero.

    Raises
    ------
    ValueError
        Not 2-D, more than 4096 columns, NaN, or values outside {-1, 1}/{0, 1}.
    """
    arr = np.asarray(signs)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"'signs' must be a numeric or boolean matrix. Got dtype {arr.dtype} instead."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"'signs' must be 2-D (n_codes, n_bits). Got {_describe(arr)} instead."
        )
    check_n_bits(arr.shape[1], "signs.shape[1]")
    if arr.dtype.kind != "b":
        if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            raise ValueError("'signs' must not contain NaN or inf.")
        values = np.unique(arr)
        if not (set(values.tolist()) <= {-1, 1} or set(values.tolist()) <= {0, 1}):
            shown = values[:6].tolist()
            raise ValueError(
                "'signs' must hold values in {-1, 1} or in {0, 1}. "
                f"Got values {shown}{'...' if values.size > 6 else ''} instead."
            )
    return np.ascontiguousarray(np.packbits(arr > 0, axis=1))


def unpack_codes(packed, n_bits, signed=True):
    """Unpack packed codes into a ±1 (``signed=True``) or 0/1 int8 matrix.

    Parameters
    ----------
    packed : ndarray of uint8, shape (n_codes, ceil(n_bits / 8))
    n_bits : int in [1, 4096]
    signed : bool, default=True
        ``True`` gives -1/+1, ``False`` gives 0/1.

    Returns
    -------
    ndarray of int8, shape (n_codes, n_bits)
    """
    n_bits = check_n_bits(n_bits)
    packed = check_codes(packed, "packed", n_bits, require_contiguous=False)
    bits = np.unpackbits(packed, axis=1, count=n_bits).astype(np.int8)
    if signed:
        bits = 2 * bits - 1
    return bits


def check_codes(codes, name, n_bits, require_contiguous=True):
    """Validate a packed code matrix for ``n_bits``-bit codes.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n_codes, ceil(n_bits / 8))
        Must be 2-D, C-contiguous (unless ``require_contiguous=False``) and
        have zero padding bits: nonzero padding would silently change
        Hamming distances.
    name : str
        Name of the argument in error messages.
    n_bits : int
        Code length in bits (already validated).
    require_contiguous : bool, default=True

    Returns
    -------
    ndarray
        ``codes`` unchanged (no copy).

    Raises
    ------
    TypeError
        Not an ndarray, or not uint8.
    ValueError
        Wrong shape, a strided view, or nonzero padding bits.
    """
    width = code_bytes(n_bits)
    if not isinstance(codes, np.ndarray):
        raise TypeError(
            f"'{name}' must be a numpy ndarray of uint8 packed codes, shape (n, {width}). "
            f"Got {_describe(codes)} of type {type(codes).__name__} instead."
        )
    if codes.dtype != np.uint8:
        raise TypeError(
            f"'{name}' must have dtype uint8 (packed codes, see pack_codes). "
            f"Got dtype {codes.dtype} instead."
        )
    if codes.ndim != 2:
        raise ValueError(
            f"'{name}' must be 2-D with shape (n, {width}) for {n_bits}-bit codes. "
            f"Got shape {codes.shape} instead."
        )
    if codes.shape[1] != width:
        raise ValueError(
            f"'{name}' must have {width} bytes per code for n_bits={n_bits}. "
            f"Got shape {codes.shape} instead."
        )
    if require_contiguous and not codes.flags.c_contiguous:
        raise ValueError(
            f"'{name}' must be C-contiguous; got a strided view. "
            "Pass np.ascontiguousarray(codes)."
        )
    pad = width * 8 - n_bits
    if pad and codes.shape[0]:
        mask = np.uint8((1 << pad) - 1)
        if np.any(codes[:, -1] & mask):
            raise ValueError(
                f"'{name}' has nonzero padding bits: the last {pad} bit(s) of each "
                f"code must be zero for n_bits={n_bits} (pack with pack_codes)."
            )
    return codes
