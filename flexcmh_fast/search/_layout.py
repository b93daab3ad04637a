"""Memory layout of packed codes, kept in one place.

* A code of ``n_bits`` bits is ``code_bytes(n_bits)`` bytes (``np.packbits``
  order, padding bits zero, see :mod:`._packing`).
* The compiled kernels read a code as ``code_words(n_bits)`` 64-bit words
  (:func:`as_words`), and store a database in blocks of ``BLOCK_CODES``
  codes, word-major (``src_ext/hamming_kernels.h``).
* Merging the results of several searches compares (distance, id) pairs as
  one uint64 key: the distance in the high bits, the id in the low
  ``KEY_ID_BITS`` bits (:func:`merge_keys`).

The constants mirror the macros of ``src_ext/hamming_kernels.h``
(``HM_BLOCK``, ``HM_QT``, ``HM_KEY_SHIFT``); ``flexcmh_fast._hamming``
exports the compiled values and the tests check that both agree.
"""
import numpy as np

_BYTE_BITS = 8
_WORD_BYTES = 8
# Codes per storage block of the search kernels (HM_BLOCK).
BLOCK_CODES = 8
# Queries per register tile of the search kernels (HM_QT): query batches cut
# at multiples of it leave no tile half full.
QUERY_TILE = 8
# Low bits of a merge key that hold the id (HM_KEY_SHIFT): the distance
# (at most 4096, 13 bits) sits above them.
KEY_ID_BITS = 51
_KEY_ID_MASK = np.uint64((1 << KEY_ID_BITS) - 1)


def code_bytes(n_bits):
    """Bytes of one packed code of ``n_bits`` bits: ``ceil(n_bits / 8)``."""
    return -(-n_bits // _BYTE_BITS)


def code_words(n_bits):
    """64-bit words of one code of ``n_bits`` bits: ``ceil(n_bits / 64)``."""
    return -(-n_bits // (_WORD_BYTES * _BYTE_BITS))


def as_words(codes):
    """Packed uint8 codes as the compiled kernels read them: 64-bit words.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, n_bytes)
        Packed codes (or packed bit masks), C-contiguous.

    Returns
    -------
    ndarray of uint64, shape (n, max(1, ceil(n_bytes / 8)))
        C-contiguous; the last word of every row zero-padded.  A view of
        ``codes`` when no padding is needed and the data is word-aligned,
        otherwise a copy.

    Notes
    -----
    The bytes are reinterpreted in native byte order: a Hamming distance is a
    popcount of XOR, which does not depend on where each bit lands as long
    as both sides use the same mapping.
    """
    n, width = codes.shape
    n_words = max(1, -(-width // _WORD_BYTES))
    if (width == _WORD_BYTES * n_words and codes.flags.c_contiguous
            and codes.ctypes.data % np.dtype(np.uint64).alignment == 0):
        return codes.view(np.uint64)
    out = np.zeros((n, _WORD_BYTES * n_words), dtype=np.uint8)
    out[:, :width] = codes
    return out.view(np.uint64)


def merge_keys(distances, ids):
    """(distance, id) pairs as uint64 keys that sort by distance, then id.

    ``ids`` must be below ``2**KEY_ID_BITS``.
    """
    return (distances.astype(np.uint64) << np.uint64(KEY_ID_BITS)) | ids.astype(np.uint64)


def split_keys(keys):
    """Inverse of :func:`merge_keys`: (distances as int32, ids as int64)."""
    return ((keys >> np.uint64(KEY_ID_BITS)).astype(np.int32),
            (keys & _KEY_ID_MASK).astype(np.int64))
