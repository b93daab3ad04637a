"""Thread-count control for the Numba kernels."""
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
