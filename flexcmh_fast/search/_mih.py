"""Multi-index hashing tables behind ``HammingIndex(method="mih" | "auto")``.

Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012) cuts every code
into ``m`` disjoint substrings and keeps one bucket table per substring;
a query probes the buckets of substring values at growing distance from its
own substrings and verifies each code it reaches with a full distance.  By
the pigeonhole principle this finds every code within the radius searched,
so top-k and radius results are exact and identical to the linear scan (the
algorithm is described in ``src_ext/mih_kernels.h``).

Layout of the tables (``_MIHTables``):

* substrings: ``m = ceil(n_bits / (floor(log2(n)) - 1))`` (a bucket holds
  about two codes of uniformly random data), at most ``3 * n_bytes / 4`` and
  at most 24 bits each;
* bucket offsets: ``2**len + 1`` uint32 per substring;
* ids: ``m * n`` uint32 grouped by bucket.

Memory: ``4 * m * n`` bytes of ids (at most 3x the packed codes) plus
``4 * sum(2**len)`` bytes of offsets (at most about ``2 * m * n``): at most 4x
the packed codes from ``2**16`` codes on (a tested bound; measured ratios in
``docs/benchmarks.md``, "Multi-index hashing"); smaller indexes may take
more.  The database codes themselves are the index's own storage.
"""
import math

import numpy as np

from .._ext import load_extension
from ._layout import code_bytes, code_words

_hamming = load_extension("_hamming")

# Largest code length and database size the tables support (ids are uint32,
# the kernel reads at most 4 words a code).
MAX_BITS = 256
MAX_CODES = 2**32 - 1
# Largest substring: a 2**24-entry offset table is 64 MiB.
_MAX_SUB_BITS = 24


def plan_substrings(n_bits, n_codes):
    """Substring layout for ``n_codes`` codes of ``n_bits`` bits.

    Returns
    -------
    ndarray of int32, shape (4, m)
        Rows: bit offset in the uint64 words, length (valid bits), offset of
        the padding gap inside the read bits, length of that gap (0 or the
        number of padding bits).
    """
    n_bytes = code_bytes(n_bits)
    pad = 8 * n_bytes - n_bits
    # Substrings one bit shorter than log2(n): half as many offsets as codes.
    target = min(_MAX_SUB_BITS, max(1, int(math.log2(max(n_codes, 2))) - 1))
    m = min(-(-n_bits // target), max(1, 3 * n_bytes // 4))
    # Balanced split of the valid bit coordinates [0, n_bits).
    cuts = [(n_bits * i) // m for i in range(m + 1)]
    last_byte = 8 * (n_bytes - 1)
    sub = np.zeros((4, m), dtype=np.int32)
    for i, (c0, c1) in enumerate(zip(cuts[:-1], cuts[1:])):
        # Valid bit c sits at word bit c, or c + pad in the last byte (whose
        # low pad bits are the padding).
        sub[0, i] = c0 if c0 < last_byte else c0 + pad
        sub[1, i] = c1 - c0
        if pad and c0 < last_byte < c1:
            sub[2, i], sub[3, i] = last_byte - c0, pad
    return sub


class _MIHTables:
    """Bucket tables of one database (built once, immutable).

    Parameters
    ----------
    words : ndarray of uint64
        The index's word-major block storage (see ``hamming_kernels.h``).
    n_codes, n_bits : int
    n_threads : int
        Threads of the build (one table per thread).
    """

    def __init__(self, words, n_codes, n_bits, n_threads):
        self.n_codes, self.n_bits = n_codes, n_bits
        self.n_words = code_words(n_bits)
        self.sub = plan_substrings(n_bits, n_codes)
        m = self.sub.shape[1]
        sizes = (np.int64(1) << self.sub[1].astype(np.int64)) + 1
        self.base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.offsets = np.zeros(int(sizes.sum()), dtype=np.uint32)
        self.ids = np.empty((m, n_codes), dtype=np.uint32)
        # Bits of each substring (padding included: it is zero in every XOR).
        self.masks = np.zeros((m, self.n_words), dtype=np.uint64)
        for i in range(m):
            for bit in range(self.sub[0, i], self.sub[0, i] + self.sub[1, i] + self.sub[3, i]):
                self.masks[i, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
        _hamming.mih_build(words, n_codes, self.n_words, self.sub, self.base, self.offsets,
                           self.ids, n_threads)

    @property
    def n_substrings(self):
        return self.sub.shape[1]

    @property
    def nbytes(self):
        """Memory of the tables in bytes."""
        return self.offsets.nbytes + self.ids.nbytes + self.masks.nbytes

    def topk(self, words, q, k, budget, n_threads):
        """(distances, ids, work); ``work[j] == -1``: query j over budget, row unset."""
        return _hamming.mih_topk(words, self.n_codes, q, self.n_bits, k, self.sub, self.base,
                                 self.offsets, self.ids, self.masks, budget, n_threads)

    def range_search(self, words, q, radius, budget, n_threads):
        """(lims, distances, ids, work); over-budget queries have no results."""
        return _hamming.mih_range(words, self.n_codes, q, radius, self.sub, self.base,
                                  self.offsets, self.ids, self.masks, budget, n_threads)
