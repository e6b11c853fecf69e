"""Per-stage label matrices: Stage I exact tags, II and III add mapped tags, weights, counting."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from tagfold.pipeline.labels import LabelsConfig, build_labels, label_matrix, main
from tagfold.pipeline.selected import load_selected


@pytest.fixture
def inputs(tmp_path):
    manifest = pa.table({"track_id": ["a", "b", "c", "d"], "path": ["a.wav", "b.wav", "c.wav", "d.wav"],
                         "split": ["train", "train", "valid", "test"]})
    tags = pa.table({"tag_id": pa.array([0, 1, 2, 3, 4, 5, 6, 7], pa.int32()),
                     "tag": ["rock", "Happy ", "hapy", "cheerful", "zzz", "80's", "sad indie rock", "mellow chill"]})
    track_tags = pa.table({"track_id": ["a", "a", "b", "b", "c", "e", "a", "c", "b"],
                           "tag_id": pa.array([0, 4, 2, 3, 1, 0, 5, 6, 7], pa.int32()),
                           "weight": pa.array([100, 50, 10, 80, 100, 100, 30, 60, 90], pa.float32())})
    # A raw tag may map to several targets, in Stage II ('sad indie rock') and in Stage III.
    # Rows without a target (None, or '' as in the thesis's files) map nothing and are counted.
    stage2 = pa.table({"tag_id": pa.array([0, 2, 5, 4, 6, 6, 1], pa.int32()),
                       "tag": ["rock", "hapy", "80's", "zzz", "sad indie rock", "sad indie rock", "Happy "],
                       "target": ["rock", "happy", "80s", None, "sad", "indie rock", None],
                       "rule": ["exact", "typo", "decade", "blocked", "phrase", "phrase", "blocked"]})
    stage3 = pa.table({"tag_id": pa.array([3, 7, 7, 4], pa.int32()),
                       "tag": ["cheerful", "mellow chill", "mellow chill", "zzz"],
                       "target": ["happy", "mellow", "chill", ""], "source": ["embedding"] * 4,
                       "distance": [0.4, 0.3, 0.35, 0.1], "cut": [0.5, 0.5, 0.5, 0.5]})
    paths = {}
    for name, t in (("manifest", manifest), ("tags", tags), ("track_tags", track_tags),
                    ("stage2", stage2), ("stage3", stage3)):
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(t, paths[name])
    paths["out"] = str(tmp_path / "labels")
    return paths


def read(out, stage):
    t = pq.read_table(f"{out}/labels_stage{stage}.parquet")
    return t


def test_stages_add_positives(inputs):
    summary = build_labels(LabelsConfig(**inputs))
    sel = load_selected()
    t1, t2, t3 = (read(inputs["out"], s) for s in (1, 2, 3))
    assert t1.column_names == ["track_id", "split", *sel.tags]
    assert t1.column("track_id").to_pylist() == ["a", "b", "c", "d"]      # manifest order, all tracks
    assert t1.column("split").cast(pa.string()).to_pylist() == ["train", "train", "valid", "test"]
    assert t1.schema.field("rock").type == pa.uint8()
    col = lambda t, tag: t.column(tag).to_pylist()  # noqa: E731
    # Stage I: only raw tags equal to a selected tag ('Happy ' after trimming and lower-casing).
    assert col(t1, "rock") == [1, 0, 0, 0] and col(t1, "happy") == [0, 0, 1, 0] and col(t1, "80s") == [0] * 4
    # Stage II adds the rule mapping: 'hapy' -> happy for b, "80's" -> 80s for a.
    assert col(t2, "happy") == [0, 1, 1, 0] and col(t2, "80s") == [1, 0, 0, 0]
    # Stage III adds the embedding mapping ('cheerful' -> happy, b already had it) and keeps II.
    assert col(t3, "happy") == [0, 1, 1, 0] and col(t3, "80s") == [1, 0, 0, 0] and col(t3, "rock") == [1, 0, 0, 0]
    # Several targets for one raw tag: c's 'sad indie rock' gives both tags from Stage II on, b's
    # 'mellow chill' both of its Stage III targets; no other track or stage gains them.
    for tag, stage1, stage2, stage3 in (("sad", [0] * 4, [0, 0, 1, 0], [0, 0, 1, 0]),
                                        ("indie rock", [0] * 4, [0, 0, 1, 0], [0, 0, 1, 0]),
                                        ("mellow", [0] * 4, [0] * 4, [0, 1, 0, 0]),
                                        ("chill", [0] * 4, [0] * 4, [0, 1, 0, 0])):
        assert [col(t1, tag), col(t2, tag), col(t3, tag)] == [stage1, stage2, stage3], tag
    assert summary["stage2"]["positives"] == summary["stage1"]["positives"] + 4     # hapy, 80's, sad, indie rock
    assert summary["stage3"]["positives"] == summary["stage2"]["positives"] + 2     # mellow, chill
    # Counting: 9 rows read = 8 kept + 1 for track 'e', which has no audio; 'd' has no tags at all.
    assert summary["track_tag_rows_read"] == 9 == summary["track_tag_rows_kept"] + summary["track_tag_rows_no_audio"]
    assert summary["tracks_without_audio"] == 1
    assert summary["stage1"]["tracks_without_positive"] == 2      # b (only 'hapy', 'cheerful') and d
    assert summary["stage3"]["tracks_without_positive"] == 1
    assert summary["mapping_rows_without_target"] == {"stage2": 2, "stage3": 1}
    assert summary["track_tag_rows_below_min_weight"] == 0                          # no --min-weight
    saved = json.loads((pq.read_schema(f"{inputs['out']}/labels_stage2.parquet").metadata[b"tagfold.config"]))
    assert saved["categories"][0] == "genre" and saved["selected_tags"][0] == "rock"


def test_min_weight(inputs):
    s = build_labels(LabelsConfig(**inputs, min_weight=40))
    t2 = read(inputs["out"], 2)
    # b's 'hapy' has weight 10 and a's "80's" weight 30: both dropped, and counted.
    assert t2.column("happy").to_pylist() == [0, 0, 1, 0] and t2.column("80s").to_pylist() == [0] * 4
    assert s["track_tag_rows_below_min_weight"] == 2
    assert s["track_tag_rows_read"] == s["track_tag_rows_kept"] + s["track_tag_rows_no_audio"] \
        + s["track_tag_rows_below_min_weight"]
    # "at least W": a weight equal to W is kept ("80's" has 30); a missing (NaN) weight is dropped.
    tt = pq.read_table(inputs["track_tags"])
    weights = tt.column("weight").to_pylist()
    weights[3] = float("nan")                                   # b's 'cheerful' (80)
    pq.write_table(tt.set_column(2, "weight", pa.array(weights, pa.float32())), inputs["track_tags"])
    s = build_labels(LabelsConfig(**inputs, min_weight=30))
    assert read(inputs["out"], 2).column("80s").to_pylist() == [1, 0, 0, 0]
    assert read(inputs["out"], 3).column("happy").to_pylist() == [0, 0, 1, 0]      # b: 'hapy' 10, 'cheerful' NaN
    assert s["track_tag_rows_below_min_weight"] == 2


def test_unknown_target_names_file_and_row(inputs, tmp_path):
    bad = pa.table({"tag_id": pa.array([3], pa.int32()), "target": ["singer songwriter"]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad.parquet: row 0 \(tag_id 3\): target 'singer songwriter'"):
        build_labels(LabelsConfig(**{**inputs, "stage3": str(tmp_path / "bad.parquet")}))


def test_missing_column_and_duplicate_tracks(inputs, tmp_path):
    pq.write_table(pa.table({"track_id": ["a"]}), tmp_path / "m.parquet")
    with pytest.raises(ValueError, match="missing column.*split"):
        build_labels(LabelsConfig(**{**inputs, "manifest": str(tmp_path / "m.parquet")}))
    pq.write_table(pa.table({"track_id": ["a", "a"], "split": ["train", "test"]}), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="duplicate track_id"):
        build_labels(LabelsConfig(**{**inputs, "manifest": str(tmp_path / "d.parquet")}))


def test_cli(inputs, capsys):
    args = ["--manifest", inputs["manifest"], "--track-tags", inputs["track_tags"], "--tags", inputs["tags"],
            "--stage2", inputs["stage2"], "--stage3", inputs["stage3"], "--out", inputs["out"]]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "read 9 = kept 8 + no audio 1" in err and "Stage III:" in err


# Tag ids: small ones (one gather by tag id) or, with 2**40 among them, a range too wide for
# that (a binary search per link); columns: more than 64, so a mask takes several words.
TAG_IDS = st.one_of(st.integers(-3, 9), st.just(2**40))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), TAG_IDS), max_size=30),
       st.lists(st.tuples(TAG_IDS, st.integers(0, 129)), max_size=20))
def test_label_matrix_matches_plain_loop(track_tag, pairs):
    rows = np.array([r for r, _ in track_tag], np.int64)
    tags = np.array([t for _, t in track_tag], np.int64)
    ptag = np.array([t for t, _ in pairs], np.int64)
    pcol = np.array([c for _, c in pairs], np.int64)
    ref = np.zeros((6, 130), np.uint8)
    for r, t in track_tag:
        for pt, pc in pairs:
            if pt == t:
                ref[r, pc] = 1
    np.testing.assert_array_equal(label_matrix(rows, tags, ptag, pcol, 6, 130), ref)


def test_track_tags_in_many_row_groups_or_not_as_strings(inputs, tmp_path):
    """track_id is read dictionary-encoded, a dictionary per row group: the labels and counts do
    not depend on how the file is cut, nor on the column being strings."""
    build_labels(LabelsConfig(**inputs))
    one_group = [read(inputs["out"], s) for s in (1, 2, 3)]
    tt = pq.read_table(inputs["track_tags"])
    # 'e' (no audio) twice, in two row groups; a link without a track id: no audio, no track
    tt = pa.concat_tables([tt, pa.table({"track_id": ["e", None], "tag_id": pa.array([1, 0], pa.int32()),
                                         "weight": pa.array([5, 5], pa.float32())})])
    pq.write_table(tt, inputs["track_tags"], row_group_size=2)
    assert pq.read_metadata(inputs["track_tags"]).num_row_groups == 6
    s = build_labels(LabelsConfig(**inputs))
    assert [read(inputs["out"], st) for st in (1, 2, 3)] == one_group
    assert (s["track_tag_rows_read"], s["track_tag_rows_kept"], s["track_tag_rows_no_audio"]) == (11, 8, 3)
    assert s["tracks_without_audio"] == 1
    # integer track ids match the manifest's text ones
    pq.write_table(pa.table({"track_id": ["10", "11"], "split": ["train", "test"]}), tmp_path / "m.parquet")
    pq.write_table(pa.table({"track_id": [11, 12, 10], "tag_id": pa.array([0, 0, 1], pa.int32())}),
                   tmp_path / "tt.parquet")
    s = build_labels(LabelsConfig(**{**inputs, "manifest": str(tmp_path / "m.parquet"),
                                     "track_tags": str(tmp_path / "tt.parquet")}))
    assert read(inputs["out"], 1).column("rock").to_pylist() == [0, 1] and s["tracks_without_audio"] == 1
    assert read(inputs["out"], 1).column("happy").to_pylist() == [1, 0]      # tag 1 is 'Happy '


def test_with_the_real_tag_pipeline(tmp_path):
    """`tagfold pipeline` outputs -> `tagfold labels`: schemas agree and stages add positives."""
    from tagfold.cli import main as cli
    (tmp_path / "tags.csv").write_text("track_id,tags\nt1,rock;happy\nt2,hapy;80's rock\nt3,zzzzz\nt9,jazz\n")
    assert cli(["pipeline", "--input", str(tmp_path / "tags.csv"), "--format", "csv",
                "--out", str(tmp_path / "tags"), "--no-plots"]) == 0
    pq.write_table(pa.table({"track_id": ["t1", "t2", "t3"], "split": ["train", "valid", "test"]}),
                   tmp_path / "manifest.parquet")
    t = tmp_path / "tags"
    s = build_labels(LabelsConfig(manifest=str(tmp_path / "manifest.parquet"), track_tags=str(t / "track_tags.parquet"),
                                  tags=str(t / "tags.parquet"), stage2=str(t / "stage2.parquet"),
                                  stage3=str(t / "stage3.parquet"), out=str(tmp_path / "labels")))
    assert s["track_tag_rows_no_audio"] == 1 and s["tracks_without_audio"] == 1     # t9
    happy = [read(tmp_path / "labels", st).column("happy").to_pylist() for st in (1, 2, 3)]
    assert happy == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]          # 'hapy' is folded from Stage II on
    assert s["stage3"]["tracks_without_positive"] == 1          # t3 ('zzzzz') kept, counted
