"""The tag pipeline end to end on real tags, and `tagfold query` over its outputs."""
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tagfold.pipeline.errors import UserError
from tagfold.pipeline.io import RUN_KEY, read_config
from tagfold.pipeline.tags.query import folded_into, format_page
from tagfold.pipeline.tags.run import PipelineConfig, run_pipeline

OUTPUTS = {
    "tags.parquet": ["tag_id", "tag", "count"],
    "categories.parquet": ["tag_id", "tag", "category", "matched", "method", "score"],
    "stage2.parquet": ["tag_id", "tag", "target", "rule"],
    "stage3.parquet": ["tag_id", "tag", "target", "source", "distance", "cut"],
    "fits.parquet": ["target", "mean", "std", "cut", "n", "folded"],
}


def input_tags(real_tags):
    """Every 10th real tag plus the named thesis examples: big enough for stable normal fits."""
    return real_tags[::10] + ["hiphop", "4-amhappy-dancing", "happy", "Punk  Rock"]


@pytest.fixture(scope="module")
def pipeline_out(tmp_path_factory, real_tags):
    src = tmp_path_factory.mktemp("in") / "tags.txt"
    src.write_text("\n".join(input_tags(real_tags)) + "\n")
    out = tmp_path_factory.mktemp("out")
    timings = run_pipeline(out, PipelineConfig(input=str(src)))
    return out, timings


def test_every_output_is_written_with_schema_and_config(pipeline_out, real_tags, check_pipeline_outputs):
    out, timings = pipeline_out
    assert set(timings) == {"ingest", "stage1", "stage2", "vectors", "stage3"}
    for name, columns in OUTPUTS.items():
        assert pq.read_table(out / name).column_names == columns, name
    t = check_pipeline_outputs(out, input_tags(real_tags))
    pairs2 = set(zip(t["stage2"]["tag"], t["stage2"]["target"], strict=True))
    assert {("4-amhappy-dancing", "happy"), ("happy", "happy"), ("'00s", "2000s")} <= pairs2
    config = read_config(out / "stage3.parquet")
    assert config["embed"]["percentile"] == 0.001
    assert config["report"]["tags"] == pq.read_table(out / "tags.parquet").num_rows
    assert (out / "categories.png").stat().st_size > 0 and (out / "stage3_distances.png").stat().st_size > 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_stage_outputs_share_the_ingest_tag_ids(pipeline_out):
    out, _ = pipeline_out
    tags = pq.read_table(out / "tags.parquet").to_pydict()
    by_id = dict(zip(tags["tag_id"], tags["tag"]))
    for name in ("categories.parquet", "stage2.parquet", "stage3.parquet"):
        table = pq.read_table(out / name, columns=["tag_id", "tag"]).to_pydict()
        assert all(by_id[i] == t for i, t in zip(table["tag_id"], table["tag"])), name


def test_query_lists_folded_tags_sorted_and_paged(pipeline_out):
    out, _ = pipeline_out
    stage2 = folded_into(out, "happy", 2)
    tags = stage2["tag"].to_pylist()
    assert {"happy", "4-amhappy-dancing"} <= set(tags)
    assert tags == sorted(tags)
    stage3 = folded_into(out, "happy", 3, sort="distance")
    d = [x for x in stage3["distance"].to_pylist() if x is not None]
    assert d == sorted(d)
    page = format_page(stage2, page=1, page_size=3)
    assert page.count("\n") == 3 and f"page 1/{-(-len(tags) // 3)}" in page
    with pytest.raises(ValueError, match="out of range"):
        format_page(stage2, page=10**6, page_size=3)


def test_query_unknown_tag_lists_the_valid_ones(pipeline_out):
    out, _ = pipeline_out
    with pytest.raises(UserError, match="'hapy' is not a selected tag.*valid tags: rock, pop"):
        folded_into(out, "hapy", 2)
    proc = subprocess.run([sys.executable, "-m", "tagfold.cli", "query", "hapy", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "valid tags" in proc.stderr


def test_query_finds_a_tag_by_raw_or_normalised_form(pipeline_out):
    out, _ = pipeline_out
    tags = pq.read_table(out / "tags.parquet").to_pydict()
    punk_rock = tags["tag_id"][tags["tag"].index("punk rock")]
    assert {"alias": "Punk  Rock", "tag_id": punk_rock} in pq.read_table(out / "aliases.parquet").to_pylist()
    for text in ("Punk  Rock", "punk rock", "PUNK ROCK"):
        proc = subprocess.run([sys.executable, "-m", "tagfold.cli", "query", text, "--out", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert f"is tag {punk_rock} 'punk rock'" in proc.stdout and "Stage II: punk" in proc.stdout
    # a selected tag is found whatever its case
    proc = subprocess.run([sys.executable, "-m", "tagfold.cli", "query", "Happy", "--out", str(out), "--stage", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "'4-amhappy-dancing'" in proc.stdout, proc.stderr


def test_missing_input_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tagfold.cli", "pipeline", "--input", str(tmp_path / "nope.txt"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 1 and "nope.txt" in proc.stderr


def test_side_process_and_in_process_runs_write_the_same_outputs(tmp_path, real_tags):
    """The CLI (a fresh process) computes Stage I / III in a forked side process; a caller with
    side_process=False runs the same calls in order. Every table and plot must be the same."""
    import json

    src = tmp_path / "tags.txt"
    src.write_text("\n".join(real_tags[::20]) + "\n")
    forked, inline = tmp_path / "forked", tmp_path / "inline"
    r = subprocess.run([sys.executable, "-m", "tagfold.cli", "pipeline", "--input", str(src), "--out", str(forked)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "side process" in r.stdout
    assert json.loads((forked / "summary.json").read_text())["peak_rss_mib"]["side_process"] > 0
    run_pipeline(inline, PipelineConfig(input=str(src)), side_process=False)
    assert json.loads((inline / "summary.json").read_text())["peak_rss_mib"]["side_process"] == 0
    for name in [*OUTPUTS, "categories.png", "stage3_distances.png"]:
        if name.endswith(".parquet"):
            a, b = pq.read_table(forked / name), pq.read_table(inline / name)
            # equal tables and configs; each run's own run id is the one difference allowed
            a, b = (t.replace_schema_metadata({k: v for k, v in t.schema.metadata.items() if k != RUN_KEY})
                    for t in (a, b))
            assert a.equals(b, check_metadata=True), name
        else:
            assert (forked / name).read_bytes() == (inline / name).read_bytes(), name
