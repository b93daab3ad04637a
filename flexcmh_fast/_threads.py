"""Thread-count control for the Numba kernels and BLAS."""
from contextlib import contextmanager, nullcontext

import numba
from numba.core.cpu import ParallelOptions

# The ``parallel`` option of every parallel kernel: only its ``prange`` loops
# run on threads.  Array constructors, reductions and array expressions in
# a kernel stay serial, as written, instead of each being compiled as a
# parallel region of its own (first-call compile time) for work too small
# to gain from threads.  An instance, not a dict: Numba consumes a dict's
# keys at the first compilation, and the next signature would get the
# defaults.
PRANGE_ONLY = ParallelOptions({"prange": True, "comprehension": False, "reduction": False,
                               "inplace_binop": False, "setitem": False, "numpy": False,
                               "stencil": False})

# Multiply-adds from which one dense product runs on every thread of the fit
# although BLAS is otherwise held to one thread (``dense_product_threads``).
LARGE_PRODUCT = 2e8
# The same for a product run between Numba parallel kernels (the data times
# the centroids or indicators, every iteration).  After a call on several
# threads OpenBLAS's workers keep spinning until its thread timeout and take
# cores from the kernels that follow, which then run slower: on two cores a
# second BLAS thread pays for that only on products ten times larger than
# LARGE_PRODUCT (measured in docs/flexcmh.md, "Training speed": "Mid-sized
# products stay on one BLAS thread").
PRODUCT_BETWEEN_KERNELS = 2e9


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
    for the same cores, which can stall a product for many times its own
    cost (``docs/performance.md``, "Scaling").  CSMH's large kernel products
    use BLAS on ``n_threads``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads if blas is None else blas, user_api="blas"), \
            numba_threads(n_threads):
        yield


def dense_product_threads(multiply_adds, threads=None, large=LARGE_PRODUCT):
    """Context for one dense BLAS product of ``multiply_adds`` multiply-adds:
    BLAS on ``threads`` threads (default: the fit's, Numba's current count)
    when the product has at least ``large`` multiply-adds, else unchanged.

    FlexCMH holds BLAS to one thread (:func:`thread_limits`), which is right
    for its many small products but leaves all but one core idle in the
    products of the data with the centroids and indicators at scale
    (``n x d x k`` multiply-adds each); for products that large the cost of
    waking BLAS threads is negligible."""
    threads = numba.get_num_threads() if threads is None else threads
    if threads <= 1 or multiply_adds < large:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def row_spans(n, block_rows):
    """``(start, stop)`` of the blocks of ``block_rows`` rows of ``n`` rows
    (the items of :func:`imap_concurrently` over rows)."""
    return [(s, min(n, s + block_rows)) for s in range(0, n, block_rows)]


@numba.njit(cache=True)
def fixed_blocks(n, most):
    """How a parallel kernel splits ``n`` rows (or tiles): the number of
    blocks (at most ``most``) and the rows per block.  A function of the
    shape only: the blocks' partial results, added in block order, are the
    same whatever the thread count, and the kernel stays cacheable (reading
    the thread count would not).  Numba's cache checks only a kernel's own
    file: after changing this function, clear the cached kernels."""
    n_blocks = max(1, min(n, most))
    return n_blocks, (n + n_blocks - 1) // n_blocks


def imap_concurrently(func, n_items, workers):
    """:func:`map_concurrently` as an iterator: the results are yielded in
    item order as they come, so that the caller can add them up (in item
    order: the same sum whatever the number of workers) without holding all
    of them."""
    workers = min(int(workers), n_items)
    if workers <= 1:
        for i in range(n_items):
            yield func(i, True)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(lambda i: func(i, False), range(n_items))


def map_concurrently(func, n_items, workers):
    """``[func(i, parallel) for i in range(n_items)]``, the calls spread over
    ``workers`` Python threads when that is more than one.

    On threads every call gets ``parallel=False`` and must then run Numba
    kernels only in their serial, GIL-releasing form: Numba's parallel
    kernels must not be launched from several threads at once (the
    ``workqueue`` threading layer aborts the process).  BLAS and LAPACK calls
    release the GIL, so independent per-modality work of a small fit (kernel
    encoders: Gram matrices, Cholesky factorisations) runs on separate cores;
    BLAS stays at the thread count the caller set.  With one worker the calls
    run in order on the calling thread with ``parallel=True``.  Results come
    back in item order; the first exception is re-raised."""
    return list(imap_concurrently(func, n_items, workers))
