"""Shared fixtures: the location of the real benchmark data beside the project."""
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
