"""Shared fixtures: the real data in ../shared/data (never copied into the project)."""
from pathlib import Path

import pytest

from tagfold.pipeline.paths import shared_data


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_data()


@pytest.fixture(scope="session")
def real_tags(shared) -> list[str]:
    """The 58,702 real Last.fm tags, in file order."""
    return (shared / "lastfm" / "tags.txt").read_text("utf-8").splitlines()

# Prints the "kernel vs reference (same run)" ratio table that benchmarks record.
from ratios import pytest_terminal_summary  # noqa: E402,F401
