"""`tagfold labels --from-csv`: Emotify's genre + emotion-fraction CSV -> one label matrix."""
import csv
import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagfold.pipeline.labels import (EMOTIFY_EMOTIONS, CsvLabelsConfig, build_labels_from_csv,
                                     expected_random_ap, main)
from tagfold.pipeline.audio.manifest import build_manifest_from_folder
from tagfold.pipeline.selected import load_selected


@pytest.fixture(scope="module")
def emotify(shared, tmp_path_factory):
    """The real Emotify CSV and a manifest built from it the way `make emotify` does."""
    tracks = shared / "emotify" / "tracks.csv"
    manifest = tmp_path_factory.mktemp("emotify") / "manifest.parquet"
    pq.write_table(build_manifest_from_folder(tracks.parent, tracks, ratios=(0.6, 0.2, 0.2), split_method="rank"),
                   manifest)
    with open(tracks, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"csv": tracks, "manifest": manifest, "rows": rows}


def build(emotify, out, **kw):
    return build_labels_from_csv(CsvLabelsConfig(manifest=str(emotify["manifest"]), csv=str(emotify["csv"]),
                                                 out=str(out), **kw))


def test_real_emotify_labels(emotify, tmp_path):
    s = build(emotify, tmp_path)
    t = pq.read_table(tmp_path / "labels.parquet")
    rows = emotify["rows"]
    genres = sorted({r["genre"] for r in rows})
    assert t.column_names == ["track_id", "split", *genres, *EMOTIFY_EMOTIONS]
    # Every track kept, in manifest order, with its manifest split.
    m = pq.read_table(emotify["manifest"])
    assert t.column("track_id").to_pylist() == m.column("track_id").to_pylist()
    assert t.column("split").cast(pa.string()).to_pylist() == m.column("split").to_pylist()
    assert s["csv_rows_read"] == len(rows) == s["csv_rows_kept"] + s["csv_rows_without_audio"] == t.num_rows
    # Against a plain per-row recomputation from the CSV.
    by_id = {r["track_id"]: r for r in rows}
    for tid, *values in zip(*(t.column(c).to_pylist() for c in ["track_id", *genres, *EMOTIFY_EMOTIONS])):
        r = by_id[tid]
        assert values[:len(genres)] == [int(r["genre"] == g) for g in genres]
        assert values[len(genres):] == [int(float(r[e]) >= 0.3) for e in EMOTIFY_EMOTIONS]
    y = np.stack([t.column(c).to_numpy() for c in t.column_names[2:]], axis=1)
    assert (y[:, :len(genres)].sum(axis=1) == 1).all()                      # one genre per track
    assert s["positives"] == int(y.sum())
    assert s["tracks_without_emotion"] == int((y[:, len(genres):].sum(axis=1) == 0).sum())
    # Why 0.3 (module docstring): every emotion keeps enough positives and none is a majority.
    emo = y[:, len(genres):]
    assert emo.sum(axis=0).min() >= 10 and emo.mean(axis=0).max() < 0.5
    # Tag list + categories reach the readers: selected_tags.csv and the parquet's saved config.
    sel = load_selected(tmp_path / "selected_tags.csv")
    assert sel.tags == tuple(t.column_names[2:])
    assert sel.categories == ("genre",) * len(genres) + ("emotion",) * len(EMOTIFY_EMOTIONS)
    from tagfold.training.train import read_labels
    *_, tags, cats = read_labels(tmp_path / "labels.parquet")
    assert tags == sel.tags and cats == sel.categories
    assert json.loads((tmp_path / "labels_summary.json").read_text()) == json.loads(json.dumps(s))


def test_threshold_is_inclusive_and_monotone(emotify, tmp_path):
    low = build(emotify, tmp_path / "low", threshold=0.2)
    high = build(emotify, tmp_path / "high", threshold=0.4)
    ylow, yhigh = (np.stack([pq.read_table(tmp_path / d / "labels.parquet").column(e).to_numpy()
                             for e in EMOTIFY_EMOTIONS], axis=1) for d in ("low", "high"))
    assert (yhigh <= ylow).all() and yhigh.sum() < ylow.sum()
    assert low["tracks"] == high["tracks"] == len(emotify["rows"])
    # A fraction exactly at the threshold is positive.
    one = emotify["rows"][0]
    text = ",".join(one) + "\n" + ",".join(one.values()) + "\n"
    (tmp_path / "one.csv").write_text(text)
    pq.write_table(pa.table({"track_id": [one["track_id"]], "split": ["test"]}), tmp_path / "m.parquet")
    cut = float(one["calmness"])
    build_labels_from_csv(CsvLabelsConfig(manifest=str(tmp_path / "m.parquet"), csv=str(tmp_path / "one.csv"),
                                          out=str(tmp_path / "one"), threshold=cut))
    assert pq.read_table(tmp_path / "one" / "labels.parquet").column("calmness").to_pylist() == [1]
    with pytest.raises(ValueError, match="threshold"):
        build(emotify, tmp_path / "bad", threshold=0.0)


@pytest.mark.parametrize("column, value, message", [
    ("sadness", "lots", r"tracks.csv:5: track 'emotify-\d+': sadness = 'lots' is not a number"),
    ("power", "1.5", r"tracks.csv:5: track 'emotify-\d+': power = '1.5' is not a fraction in \[0, 1\]"),
    ("tension", "nan", r"tracks.csv:5: track 'emotify-\d+': tension = 'nan' is not a fraction"),
    ("genre", " ", r"tracks.csv:5: track 'emotify-\d+': empty genre"),
    ("track_id", "emotify-002", r"tracks.csv:5: duplicate track_id 'emotify-002' \(first on line 2\)"),
])
def test_bad_row_names_file_and_line(emotify, tmp_path, column, value, message):
    rows = [dict(r) for r in emotify["rows"]]
    rows[3][column] = value                                 # line 5: header is line 1
    with open(tmp_path / "tracks.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ValueError, match=message):
        build_labels_from_csv(CsvLabelsConfig(manifest=str(emotify["manifest"]), csv=str(tmp_path / "tracks.csv"),
                                              out=str(tmp_path / "out")))
    assert not (tmp_path / "out" / "labels.parquet").exists()


def test_missing_column_short_row_and_unlabelled_track(emotify, tmp_path):
    lines = emotify["csv"].read_text("utf-8").splitlines()
    (tmp_path / "nocol.csv").write_text("\n".join(l.rsplit(",", 1)[0] for l in lines) + "\n")
    with pytest.raises(ValueError, match=r"nocol.csv:1: missing column\(s\) sadness"):
        build_labels_from_csv(CsvLabelsConfig(manifest=str(emotify["manifest"]), csv=str(tmp_path / "nocol.csv"),
                                              out=str(tmp_path / "o")))
    # A blank line (skipped by the CSV reader) must not shift the line number in the message.
    (tmp_path / "short.csv").write_text("\n".join(lines[:2] + [""] + lines[2:3] + [lines[3].rsplit(",", 2)[0]]
                                                  + lines[4:]) + "\n")
    with pytest.raises(ValueError, match=r"short.csv:5: expected 13 fields"):
        build_labels_from_csv(CsvLabelsConfig(manifest=str(emotify["manifest"]), csv=str(tmp_path / "short.csv"),
                                              out=str(tmp_path / "o")))
    # A manifest track without a CSV row is an error naming it; a CSV row without audio is counted.
    (tmp_path / "less.csv").write_text("\n".join(lines[:-1]) + "\n")
    last = lines[-1].split(",")[0]
    with pytest.raises(ValueError, match=f"less.csv: 1 manifest tracks have no row, e.g. track '{last}'"):
        build_labels_from_csv(CsvLabelsConfig(manifest=str(emotify["manifest"]), csv=str(tmp_path / "less.csv"),
                                              out=str(tmp_path / "o")))
    m = pq.read_table(emotify["manifest"])
    pq.write_table(m.slice(0, m.num_rows - 2), tmp_path / "m.parquet")
    s = build_labels_from_csv(CsvLabelsConfig(manifest=str(tmp_path / "m.parquet"), csv=str(emotify["csv"]),
                                              out=str(tmp_path / "o")))
    assert (s["csv_rows_read"], s["csv_rows_kept"], s["csv_rows_without_audio"]) == (len(lines) - 1, m.num_rows - 2, 2)


@pytest.mark.parametrize("n, r", [(1, 1), (5, 2), (7, 3), (8, 1), (9, 4), (6, 6)])
def test_expected_random_ap_matches_enumeration(n, r):
    # Plain reference: AP averaged over every placement of the r positives among n ranks.
    ref = np.mean([np.mean([(k + 1) / (pos + 1) for k, pos in enumerate(c)])
                   for c in itertools.combinations(range(n), r)])
    assert expected_random_ap(n, r) == pytest.approx(ref, rel=1e-9)
    assert np.isnan(expected_random_ap(5, 0))


def test_chance_baseline_in_summary(emotify, tmp_path):
    s = build(emotify, tmp_path)
    test = s["chance"]["test"]
    n = test["tracks"]
    assert n == sum(1 for r in pq.read_table(emotify["manifest"]).column("split").to_pylist() if r == "test")
    per_tag = [expected_random_ap(n, p) for p in test["positives_per_tag"].values() if 0 < p < n]
    assert test["random_macro_pr_auc"] == pytest.approx(np.mean(per_tag))
    # Random PR-AUC is at least the positive rate (more so for rare tags on a small split).
    for tag, p in test["positives_per_tag"].items():
        if 0 < p < n:
            assert test["random_pr_auc"][tag] >= test["positive_rate"][tag] - 1e-4
    assert set(test["random_pr_auc_by_category"]) == {"genre", "emotion"}


def test_cli(emotify, tmp_path, capsys):
    out = tmp_path / "labels"
    assert main(["--manifest", str(emotify["manifest"]), "--from-csv", str(emotify["csv"]), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    n = len(emotify["rows"])
    assert f"CSV rows read {n} = kept {n} + without audio 0" in err and "test:" in err and "ROC-AUC 0.5" in err
    assert (out / "labels.parquet").exists() and (out / "selected_tags.csv").exists()
    with pytest.raises(SystemExit):       # --from-csv replaces the tag-pipeline inputs
        main(["--manifest", str(emotify["manifest"]), "--from-csv", str(emotify["csv"]), "--out", str(out),
              "--stage2", "x.parquet"])
    assert "drop --stage2" in capsys.readouterr().err
    with pytest.raises(SystemExit):       # and without it they stay required
        main(["--manifest", str(emotify["manifest"]), "--out", str(out)])
    assert "--track-tags" in capsys.readouterr().err
    from tagfold import cli   # a missing input is one line from the CLI's error boundary
    assert cli.main(["labels", "--manifest", str(emotify["manifest"]), "--from-csv", str(tmp_path / "nope.csv"),
                     "--out", str(out)]) == 1
    assert "nope.csv: not found" in capsys.readouterr().err
