"""The Dask half of :class:`~flexcmh_fast.search.ShardedHammingIndex`: the
tasks run on the workers and Dask's size of a shard.

Imported by ``ShardedHammingIndex`` on first use (so the search package
imports without Dask) and by every worker that unpickles one of these tasks,
which registers :func:`_sizeof_index` there too.
"""
import dask
import dask.array as da
import numpy as np
from dask.sizeof import sizeof

from ._index import HammingIndex
from ._layout import code_words


def is_dask_array(value):
    return isinstance(value, da.Array)


@sizeof.register(HammingIndex)
def _sizeof_index(index):
    # Dask's default for unknown objects is sys.getsizeof (a few bytes), which
    # would make the scheduler think shards are free to move and the worker
    # memory manager blind to them.
    return len(index) * 8 * code_words(index.n_bits) + index.mih_nbytes


def build_shard(block, n_bits, n_threads, method):
    return HammingIndex(np.ascontiguousarray(block), n_bits=n_bits, method=method,
                        n_threads=n_threads)


def build_shards(client, codes, n_bits, n_threads, method):
    """One HammingIndex per row block of the dask array ``codes``, each built
    on the worker that holds the block.  Returns (futures, sizes) of the
    non-empty shards, in row order."""
    if codes.numblocks[1] != 1:
        codes = codes.rechunk({1: -1})
    blocks = codes.to_delayed().ravel().tolist()
    # pure=False: fresh keys, so a new index never shares (or races with the
    # release of) the shard futures of an earlier index over the same codes.
    build = [dask.delayed(build_shard, pure=False)(b, n_bits, n_threads, method)
             for b in blocks]
    shards = client.compute(build)
    sizes = client.gather(client.map(len, shards, pure=False))
    # Empty shards would only add tasks; drop them (their futures are released).
    kept = [(s, int(n)) for s, n in zip(shards, sizes) if n > 0]
    return [s for s, _ in kept], tuple(n for _, n in kept)


def shard_search(index, queries, k, offset):
    # The shard caps k at its size: its results have no padding to skip.
    dist, ids = index.search(queries, k)
    return dist, ids + offset


def shard_range(index, queries, radius, offset):
    lims, dist, ids = index.range_search(queries, radius)
    return lims, dist, ids + offset


def shard_histogram(index, queries):
    return index.distance_histogram(queries)
