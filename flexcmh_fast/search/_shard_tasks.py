"""The Dask half of :class:`~flexcmh_fast.search.ShardedHammingIndex`: the
tasks run on the workers, Dask's size of a shard, and the guarded batches.

Imported by ``ShardedHammingIndex`` on first use (so the search package
imports without Dask) and by every worker that unpickles one of these tasks,
which registers :func:`_sizeof_index` there too.

Faults.  The shards are ordinary futures with lineage: a shard lost with its
worker is computed again (its codes read, encoded, indexed) on the workers
left.  A batch pins every shard search to a worker holding the shard; when a
worker the batch waits on leaves, the batch is cancelled and sent again
(searches only read, so the result is the same), at most ``MAX_BATCHES``
times; when no worker is left it fails after ``_dask.WORKER_WAIT`` seconds
(:mod:`flexcmh_fast._dask`).
"""
import dask
import dask.array as da
import numpy as np
from dask.sizeof import sizeof

from .. import _dask
from ._index import HammingIndex
from ._layout import code_words

# Times a batch is sent before a search gives up (workers keep leaving).
MAX_BATCHES = 5


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
    sizes = _dask.gather_anywhere(client, client.map(len, shards, pure=False),
                                  "the shards of a ShardedHammingIndex")
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


def run_batch(client, shards, shard_func, queries, shard_args, merge_func, merge_args,
              split_every):
    """``shard_func(shard_i, queries, *shard_args[i])`` on every shard, pinned
    to a worker holding the shard, tree-merged with ``merge_func(*merge_args,
    *parts)`` (fan-in ``split_every``); the merged result, gathered."""
    lost = set()
    for _ in range(MAX_BATCHES):
        alive = _dask.await_workers(client, lambda waited: (
            f"No Dask worker is left to search the {len(shards)} shards of this "
            f"ShardedHammingIndex (worker(s) {sorted(lost)} left the cluster); waited "
            f"{waited:g} s for one to join."))
        try:
            root, pins = submit_batch(client, shards, shard_func, queries, shard_args,
                                      merge_func, merge_args, split_every, alive)
        except OSError as exc:  # a worker left while the queries were sent to it
            _dask.forget_traceback(exc)
            continue

        def give_up(alive, root=root, pins=pins):
            gone = {w for pin in pins for w in pin or () if w not in alive}
            lost.update(gone)
            # No worker left: the next batch waits a bounded time for one.
            return gone or not alive or root.status in ("cancelled", "lost")

        out, verdict = _dask.gather_guarded(client, [root], give_up)
        if not verdict:
            return out[0]
        client.cancel([root])
    raise RuntimeError(
        f"A search of this ShardedHammingIndex was sent {MAX_BATCHES} times and each time a "
        f"worker it waited on left the cluster (worker(s) {sorted(lost)}).")


def submit_batch(client, shards, shard_func, queries, shard_args, merge_func, merge_args,
                 split_every, alive):
    """Submit one batch (see :func:`run_batch`); returns the root future and
    the workers each shard search is pinned to (None: the shard is being
    computed again and has no holder yet)."""
    # Sent once, to one worker; the workers running shard searches fetch them
    # from there (a broadcast to every worker never completes when one of
    # them leaves while the copies are made).  hash=False: a content-hashed
    # key would be shared with the previous identical batch, whose release
    # may still be in flight (lost key).
    q = client.scatter(queries, hash=False)
    # Pin each shard task to a worker holding the shard: otherwise the
    # scheduler may balance load by copying a whole shard to another worker
    # (and keep both copies).  Looked up per batch because a shard lost with
    # its worker is computed again elsewhere; while it is, it has no holder
    # and the task is left unrestricted.
    holders = client.who_has(shards)
    pins = [[w for w in holders.get(shard.key, ()) if w in alive] or None for shard in shards]
    parts = [client.submit(shard_func, shard, q, *args, workers=pin,
                           allow_other_workers=False)
             for shard, args, pin in zip(shards, shard_args, pins)]
    while len(parts) > 1:
        parts = [client.submit(merge_func, *merge_args, *parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return parts[0], pins
