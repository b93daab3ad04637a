"""Exact Hamming search over packed binary codes.

The search engine of flexcmh_fast, independent of the hashing methods:
pack ±1 codes into bytes, search them exactly on one machine
(:class:`HammingIndex`: linear scan or multi-index hashing over the compiled
kernels of ``src_ext/``) or on a Dask cluster (:class:`ShardedHammingIndex`,
which needs the optional ``dask`` extra when it is built; this package
imports without Dask).

Public API
----------
HammingIndex
    Exact top-k, radius and distance-histogram search.
ShardedHammingIndex
    The same over the row blocks of a dask array, one shard per block.
hamming_distances
    Full distance matrix between two sets of packed codes.
pack_codes, unpack_codes
    ±1 (or 0/1) matrices to packed uint8 codes and back.
check_codes
    Validate a packed code matrix (dtype, shape, zero padding bits).
code_bytes
    Bytes of one packed code of ``n_bits`` bits.
as_words
    Packed codes as the 64-bit words the compiled kernels read.

Private modules: ``_layout`` (bytes, words, storage blocks, query tiles and
merge keys; mirrors ``src_ext/hamming_kernels.h``), ``_packing``,
``_index``, ``_mih`` (multi-index hashing tables), ``_sharded`` and
``_shard_tasks`` (its Dask half, imported on first use).
"""
from ._index import HammingIndex, hamming_distances
from ._layout import as_words, code_bytes
from ._packing import check_codes, pack_codes, unpack_codes
from ._sharded import ShardedHammingIndex

__all__ = [
    "HammingIndex",
    "ShardedHammingIndex",
    "hamming_distances",
    "pack_codes",
    "unpack_codes",
    "check_codes",
    "code_bytes",
    "as_words",
]
