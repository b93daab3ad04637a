"""Thread-count control for the Numba kernels and BLAS."""
from contextlib import contextmanager

import numba


@contextmanager
def numba_threads(n_threads):
    """Run a block with Numba's parallel regions on ``n_threads`` threads
    (capped at the pool size), restoring the previous count afterwards."""
    old = numba.get_num_threads()
    numba.set_num_threads(min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(old)


@contextmanager
def thread_limits(n_threads, blas=None):
    """Numba on ``n_threads`` threads and BLAS on ``blas`` threads (default:
    also ``n_threads``).

    FlexCMH passes ``blas=1``: its BLAS products are small, and BLAS worker
    threads woken right after a Numba parallel region contend with Numba's
    for the same cores (products like ``H.T @ H`` measured up to 100x slower,
    ``docs/performance.md``).  CSMH's large kernel products use BLAS on
    ``n_threads``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads if blas is None else blas, user_api="blas"), \
            numba_threads(n_threads):
        yield
