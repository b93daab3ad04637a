"""Dask, the optional dependency of the scale-out parts: the import with an
error that names the extra to install, the client an operation uses, and
the guarded waits on the cluster.

Importing this module does not import Dask; :mod:`flexcmh_fast.distributed`
and :class:`flexcmh_fast.search.ShardedHammingIndex` call
:func:`require_dask` first.

Every wait on the cluster goes through :func:`wait_guarded` and
:func:`gather_guarded`: a task pinned to a worker that left the cluster (or
any task once no worker is left) would otherwise wait forever.  They wait
``LIVENESS_PERIOD`` seconds at a time and in between ask the caller whether
to give up, with the workers alive at that moment; :func:`await_workers`
waits at most ``WORKER_WAIT`` seconds for a worker to join when none is
left, then raises.
"""
import concurrent.futures
import time

from ._validation import _describe

# Seconds between checks that the workers a wait depends on are still there.
LIVENESS_PERIOD = 0.5
# Seconds an operation that needs a worker waits for one to join when none is
# left (then it raises; docs/scaling_out.md, "Fault tolerance").
WORKER_WAIT = 60.0
# Gathers run on these threads so that the caller can watch the cluster
# while they wait; several at once (concurrent searches, fits), and one a
# caller gave up on does not hold up the next.
_GATHERS = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="flexcmh-gather")


def require_dask(feature):
    """Import Dask (``dask.array`` and ``distributed``), or raise an
    ``ImportError`` saying that ``feature`` needs the ``dask`` extra."""
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs Dask. Install the optional extra: "
            "pip install 'flexcmh_fast[dask]' (dask[array] and distributed)."
        ) from exc


def resolve_client(client):
    """The given client, or the current one; a clear error when there is none."""
    from distributed import Client, get_client

    if client is None:
        try:
            return get_client()
        except ValueError:
            raise ValueError(
                "'client' is None and no dask.distributed Client is running. Connect "
                "one first (e.g. Client('tcp://scheduler:8786') or Client(LocalCluster())) "
                "or pass client=."
            ) from None
    if not isinstance(client, Client):
        raise TypeError(
            "'client' must be a dask.distributed.Client or None. Got "
            f"{_describe(client)} of type {type(client).__name__} instead."
        )
    return client


def alive_workers(client):
    """Addresses of the workers in the cluster now."""
    return set(client.nthreads())


def await_workers(client, no_worker_error):
    """The workers in the cluster, waiting up to ``WORKER_WAIT`` seconds for
    one to join when none is there; then raises ``RuntimeError`` with
    ``no_worker_error(seconds waited)``."""
    deadline = time.monotonic() + WORKER_WAIT
    while True:
        alive = alive_workers(client)
        if alive:
            return alive
        if time.monotonic() >= deadline:
            raise RuntimeError(no_worker_error(WORKER_WAIT))
        time.sleep(LIVENESS_PERIOD)


def forget_traceback(exc):
    """Drop the tracebacks of a caught exception and of those it chains.

    An exception raised through ``distributed``'s ``sync`` (every blocking
    client call) is in a reference cycle with the frames it passed, up to
    the caller's: kept, it would hold the caller's futures, and the model
    being fitted, until a full garbage collection instead of releasing
    them on ``del``.  Call it on every exception caught and not raised.
    """
    while exc is not None:
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def wait_guarded(client, futures, give_up):
    """Wait until no future of ``futures`` is pending (each finished, failed
    or cancelled), or until ``give_up(alive)`` (called with the workers
    alive every ``LIVENESS_PERIOD`` seconds while some are pending, and once
    more when the wait ends with some not finished) returns a true value,
    which is returned (else None).  ``give_up`` may raise."""
    from distributed import wait

    while True:
        try:
            # as_current: `wait` looks for the default client, which the
            # caller's client need not be.
            with client.as_current():
                wait(futures, timeout=LIVENESS_PERIOD)
        except (TimeoutError, concurrent.futures.CancelledError) as exc:
            forget_traceback(exc)  # the statuses below say what happened
        done = all(f.status != "pending" for f in futures)
        if done and all(f.status == "finished" for f in futures):
            return None
        verdict = give_up(alive_workers(client))
        if verdict or done:
            return verdict or None


def gather_guarded(client, futures, give_up):
    """Wait for ``futures`` as :func:`wait_guarded` does, then gather them,
    still guarded: a finished future whose data is lost before it arrives
    is computed again, which may wait on a worker that left.  Returns
    ``(results, None)``, or ``(None, verdict)`` when ``give_up`` returned a
    true verdict (the caller cancels what it no longer needs).  An error
    the gather raises is raised as it is unless ``give_up`` then gives a
    verdict."""
    verdict = wait_guarded(client, futures, give_up)
    if verdict:
        return None, verdict
    job = _GATHERS.submit(client.gather, futures)
    while True:
        try:
            return job.result(timeout=LIVENESS_PERIOD), None
        except concurrent.futures.TimeoutError:
            verdict = give_up(alive_workers(client))
            if verdict:
                return None, verdict
        except Exception as exc:
            verdict = give_up(alive_workers(client))
            if verdict:
                forget_traceback(exc)
                return None, verdict
            raise


def gather_anywhere(client, futures, what):
    """Gather ``futures`` of tasks that may run on any worker (Dask computes
    again what a lost worker held); raises ``RuntimeError`` naming ``what``
    when no worker is left for ``WORKER_WAIT`` seconds, and a task's own
    error as it is."""
    since = [None]

    def give_up(alive):
        for f in futures:
            if f.status == "error":
                f.result()  # raises the task's error
        if alive:
            since[0] = None
            return None
        since[0] = since[0] or time.monotonic()
        if time.monotonic() - since[0] >= WORKER_WAIT:
            client.cancel(futures)
            raise RuntimeError(f"No Dask worker is left to compute {what}; waited "
                               f"{WORKER_WAIT:g} s for one to join.")
        return None

    return gather_guarded(client, futures, give_up)[0]
