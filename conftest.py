"""Fixtures shared by tests/ and benchmarks/: the real data in ../shared/data (never copied
into the project), and a one-thread torch setting for the training tests."""
from pathlib import Path

import pytest

from tagfold.pipeline.paths import shared_data


def pytest_runtest_setup(item):
    """GPU cases are collected on every machine and skipped, with the reason, where CUDA is
    missing: a CPU run lists them as skipped, a GPU run shows they ran."""
    if item.get_closest_marker("gpu"):
        import torch
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU (none on this machine); runs on a GPU machine")


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


def _check_pipeline_outputs(out: Path, lines) -> dict:
    """Checks a `tagfold pipeline` output folder against its input lines and itself; returns the
    tables (as dicts of columns) for further checks.
    - tags: one row per distinct normalised input line (normalize_tag, tested on its own) with its
      count, ids 0..n-1;
    - categories: one row per tag, same ids and order;
    - stage2: targets among the selected tags; stage3: exactly Stage II's pairs (source stage2)
      plus embedding folds of tags Stage II left unmapped;
    - fits: one row per selected tag, in order, whose fold count is its embedding rows."""
    from collections import Counter

    import pyarrow.parquet as pq

    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.tags.vocab import normalize_tag

    t = {name: pq.read_table(Path(out) / f"{name}.parquet").to_pydict()
         for name in ("tags", "categories", "stage2", "stage3", "fits")}
    expected = Counter(normalize_tag(line) for line in lines)
    assert dict(zip(t["tags"]["tag"], t["tags"]["count"], strict=True)) == expected
    assert t["tags"]["tag_id"] == list(range(len(expected)))
    assert t["categories"]["tag_id"] == t["tags"]["tag_id"] and t["categories"]["tag"] == t["tags"]["tag"]
    selected = load_selected().tags
    pairs2 = set(zip(t["stage2"]["tag"], t["stage2"]["target"], strict=True))
    assert {g for _, g in pairs2} <= set(selected)
    rows3 = list(zip(t["stage3"]["tag"], t["stage3"]["target"], t["stage3"]["source"], strict=True))
    assert {(tag, g) for tag, g, src in rows3 if src == "stage2"} == pairs2
    folded = [(tag, g) for tag, g, src in rows3 if src == "embedding"]
    assert len(folded) + sum(src == "stage2" for _, _, src in rows3) == len(rows3)
    assert {g for _, g in folded} <= set(selected) and not {tag for tag, _ in folded} & {tag for tag, _ in pairs2}
    assert t["fits"]["target"] == list(selected)
    per_target = Counter(g for _, g in folded)
    assert t["fits"]["folded"] == [per_target[g] for g in selected]
    return t


@pytest.fixture(scope="session")
def check_pipeline_outputs():
    """The function above: tests and benchmarks check pipeline outputs the same way."""
    return _check_pipeline_outputs
