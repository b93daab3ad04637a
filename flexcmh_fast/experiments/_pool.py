"""Running the protocol's cells, in this process or in a pool of worker
processes, with results in the order of the cells."""

# Worker-process state (set once per worker by _init_worker).
_WORKER = {}


def _init_worker(run_cell, dataset, opts):
    _WORKER.update(run_cell=run_cell, dataset=dataset, opts=opts)


def _worker_cell(cell):
    return _WORKER["run_cell"](_WORKER["dataset"], cell, _WORKER["opts"])


def run_cells(cells, run_cell, dataset, opts, jobs):
    """Yield ``(cell, run_cell(dataset, cell, opts))`` in the order of
    ``cells``; with ``jobs > 1`` the cells run in that many worker processes
    (spawned: a forked child of a process that already ran OpenMP / Numba
    threads is not safe), so ``run_cell`` must be a module-level function."""
    if jobs <= 1:
        for cell in cells:
            yield cell, run_cell(dataset, cell, opts)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(run_cell, dataset, opts)) as pool:
        futures = [pool.submit(_worker_cell, cell) for cell in cells]
        for cell, fut in zip(cells, futures):
            yield cell, fut.result()
