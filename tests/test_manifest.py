import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from tagfold.pipeline.audio.manifest import SCHEMA, build_manifest_from_folder, build_manifest_msd, main
from tagfold.pipeline.audio.splits import assign_splits


def test_splits_deterministic_ratio_and_order_free():
    ids = [f"tr{i}" for i in range(5000)]
    a = assign_splits(ids, ratios=(0.7, 0.2, 0.1), seed=3)
    shuffled = list(reversed(ids))
    b = dict(zip(shuffled, assign_splits(shuffled, ratios=(0.7, 0.2, 0.1), seed=3)))
    assert all(b[t] == s for t, s in zip(ids, a))  # never depends on listing order
    frac = {s: np.mean(a == s) for s in ("train", "valid", "test")}
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["valid"] - 0.2) < 0.03
    assert (assign_splits(ids, seed=4) != assign_splits(ids, seed=3)).any()


def test_artist_aware_split_keeps_artist_together():
    ids = [f"tr{i}" for i in range(600)]
    artists = [f"artist{i % 40}" for i in range(600)]
    s = assign_splits(ids, artists)
    for a in set(artists):
        assert len({s[i] for i in range(600) if artists[i] == a}) == 1
    with pytest.raises(ValueError, match="sum"):
        assign_splits(ids, ratios=(0.5, 0.1, 0.1))


def test_emotify_manifest(shared, tmp_path):
    csv_path = shared / "emotify" / "tracks.csv"
    t = build_manifest_from_folder(shared / "emotify" / "audio", csv_path)
    assert t.schema.equals(SCHEMA) and t.num_rows == 196
    row = t.slice(0, 1).to_pylist()[0]
    assert row["track_id"] == "emotify-002" and row["path"] == "audio/emotify-002.mp3"
    assert row["sample_rate"] == 22050 and row["channels"] == 1 and 29 < row["duration"] < 31
    assert set(t.column("split").to_pylist()) == {"train", "valid", "test"}
    out = tmp_path / "m.parquet"
    assert main(["--csv", str(csv_path), "--out", str(out)]) == 0
    assert pq.read_table(out).column("track_id").to_pylist() == t.column("track_id").to_pylist()


def test_msd_layout(shared, tmp_path):
    ids = (shared / "msd_top50" / "valid_x_msd_id.txt").read_text().split()[:3]
    lst = tmp_path / "ids.txt"
    lst.write_text("\n".join(ids) + "\n")
    src = shared / "emotify" / "audio" / "emotify-002.mp3"
    p = tmp_path / ids[0][2] / ids[0][3] / ids[0][4] / f"{ids[0]}.clip.mp3"
    p.parent.mkdir(parents=True)
    p.write_bytes(src.read_bytes())
    t = build_manifest_msd(tmp_path, {"valid": lst})
    assert t.column("track_id").to_pylist() == ids and set(t.column("split").to_pylist()) == {"valid"}
    assert t.column("sample_rate").to_pylist()[0] == 22050
    assert math.isnan(t.column("duration").to_pylist()[1])  # absent preview: listed, prep rejects it
    lst.write_text("not-an-id\n")
    with pytest.raises(ValueError, match="ids.txt:1"):
        build_manifest_msd(tmp_path, {"valid": lst})


def test_paths_must_stay_inside_root(shared, tmp_path):
    from tagfold.pipeline.audio.manifest import OutsideRoot, make_table
    root = shared / "emotify"
    inside = make_table(["a"], ["audio/emotify-002.mp3"], None, root)
    assert inside.column("sample_rate").to_pylist() == [22050]
    for stray in ("../emotify/../lastfm/tags.txt", str(shared / "lastfm" / "tags.txt")):
        with pytest.raises(OutsideRoot, match=r"track 'b'.*outside the data root"):
            make_table(["a", "b"], ["audio/emotify-002.mp3", stray], None, root)
    allowed = make_table(["b"], [str(shared / "lastfm" / "tags.txt")], None, root, allow_outside_root=True)
    assert allowed.column("sample_rate").to_pylist() == [0]  # listed; prep rejects it with a reason
    with pytest.raises(ValueError, match="duplicate track_id 'a'"):
        make_table(["a", "a"], ["audio/emotify-002.mp3"] * 2, None, root)


def test_folder_csv_without_file_column_and_artists(shared, tmp_path):
    """Rows found as <audio_dir>/<track_id>.*; artist-aware splits keep an artist in one split."""
    audio = shared / "emotify" / "audio"
    ids = [f"emotify-{i:03d}" for i in (2, 3, 4, 5, 6, 7, 12, 14, 18, 22)]
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("track_id,band\n" + "".join(f"{t},band{i % 3}\n" for i, t in enumerate(ids)))
    t = build_manifest_from_folder(audio, csv_path, artist_column="band", allow_outside_root=True)
    assert t.column("track_id").to_pylist() == ids
    assert all(p.endswith(f"{i}.mp3") for p, i in zip(t.column("path").to_pylist(), ids))
    by_band = {}
    for a, s in zip(t.column("artist").to_pylist(), t.column("split").to_pylist()):
        by_band.setdefault(a, set()).add(s)
    assert set(by_band) == {"band0", "band1", "band2"} and all(len(v) == 1 for v in by_band.values())
    with pytest.raises(ValueError, match="outside the data root"):
        build_manifest_from_folder(audio, csv_path)  # the CSV's folder (tmp) is the root


def test_rank_splits_are_exact_and_keep_small_sets_usable():
    ids = [f"demo-{i:06d}" for i in range(24)]
    artists = [f"a{i // 5}" for i in range(24)]
    s = assign_splits(ids, artists, method="rank")
    assert {x: int((s == x).sum()) for x in ("train", "valid", "test")} == {"train": 15, "valid": 5, "test": 4}
    for a in set(artists):
        assert len({s[i] for i in range(24) if artists[i] == a}) == 1
    big = [f"t{i}" for i in range(10000)]
    r = assign_splits(big, method="rank", seed=1)
    assert [int((r == x).sum()) for x in ("train", "valid", "test")] == [8000, 1000, 1000]
    shuffled = big[::-1]
    assert dict(zip(shuffled, assign_splits(shuffled, method="rank", seed=1))) == dict(zip(big, r))
    assert list(assign_splits(["a", "b"], method="rank")) in (["train", "valid"], ["valid", "train"])
    assert list(assign_splits(["x"] * 0, method="rank")) == []
