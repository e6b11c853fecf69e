"""Fixtures shared by tests/ and benchmarks/: the real data in ../shared/data (never copied
into the project), and a one-thread torch setting for the training tests."""
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


@pytest.fixture
def one_torch_thread():
    """The CI box has 2 shared cores; two intra-op torch threads there run ~10x slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
