"""Benchmark-suite hooks: print the Hamming search ratio table at the end;
the local Dask cluster of the distributed benchmarks."""
import pytest


def pytest_terminal_summary(terminalreporter):
    import sys

    module = sys.modules.get("test_bench_search") or sys.modules.get("bench.test_bench_search")
    if module is None:
        return
    lines = module.summary_lines()
    if lines:
        terminalreporter.section("flexcmh_fast vs faiss IndexBinaryFlat vs numpy")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def client():
    """``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)``:
    two worker processes, one task thread each, the two cores of the machine."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
