"""Shared fixtures: the location of the real benchmark data beside the
project, and the local Dask cluster of the distributed tests."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def wiki_dir():
    """Folder with the Wiki benchmark files; skips when it is not there."""
    folder = SHARED_DATA / "wiki"
    if not (folder / "wikiData.mat").is_file():
        pytest.skip(f"Wiki data not found at {folder} (real data lives in ../shared/data)")
    return folder


@pytest.fixture(scope="session")
def client():
    """A ``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)``
    client, started once for the distributed tests and closed after them."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
