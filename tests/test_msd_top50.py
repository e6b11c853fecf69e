"""The MSD top-50 benchmark preset: its tag list against the benchmark's, its label matrices
against the published valid/test matrices when the same tags and values are fed in through a
real-schema lastfm_tags.db, its refusals, and a short training run of the preset end to end."""
import ast
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tagfold import cli
from tagfold.pipeline import msd_top50
from tagfold.pipeline.io import read_config
from tagfold.pipeline.labels_schema import read_labels
from tagfold.training import checkpoint as ckpt

DISTRACTORS = {   # Last.fm tags that differ from a benchmark tag only in case or spacing
    "rock": ["Rock", "ROCK", "rock "], "Hip-Hop": ["hip-hop", "Hip-hop", "hip hop"], "Mellow": ["mellow"],
    "House": ["house"], "Progressive rock": ["progressive rock", "Progressive Rock"], "pop": ["Pop"],
    "female vocalists": ["Female Vocalists"], "00s": ["00S"],
}


def benchmark_tags(shared) -> list[str]:
    """TAGS from ../shared/data/msd_top50/tags.py, read without executing it."""
    tree = ast.parse((shared / "msd_top50" / "tags.py").read_text("utf-8"))
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == "TAGS")


def test_tags_are_the_benchmarks_in_its_order(shared):
    assert list(msd_top50.TAGS) == benchmark_tags(shared)
    assert len(set(msd_top50.TAGS)) == 50 and len(msd_top50.CATEGORIES) == 50


def write_db(path, tracks: list[str], y: np.ndarray, seed=0, extra_tracks=()):
    """A lastfm_tags.db with the MSD schema whose values give exactly `y` for `tracks` under the
    benchmark's rule: positives have val 51..100; about a third of the negatives appear with val
    0..50 (50 included); case and spacing variants of the tags appear with val 100 where the
    benchmark tag is negative; other tags and unlisted tracks add noise. Rows are shuffled and
    rowids do not follow the column order."""
    rng = np.random.default_rng(seed)
    tags = list(msd_top50.TAGS) + [v for vs in DISTRACTORS.values() for v in vs] + ["seen live", "favorites"]
    tag_order = rng.permutation(len(tags))                       # rowid of tags[i] is rank + 1
    tag_rowid = {tags[i]: int(r) + 1 for r, i in enumerate(tag_order)}
    all_tracks = list(tracks) + list(extra_tracks)
    track_rowid = {t: i + 1 for i, t in enumerate(rng.permutation(all_tracks))}
    rows = []
    for t, labels in zip(tracks, y):
        for j, tag in enumerate(msd_top50.TAGS):
            if labels[j]:
                rows.append((track_rowid[t], tag_rowid[tag], float(rng.integers(51, 101))))
            elif rng.random() < 0.33:
                rows.append((track_rowid[t], tag_rowid[tag], float(rng.choice([0, 1, 25, 49, 50]))))
            if not labels[j] and tag in DISTRACTORS and rng.random() < 0.5:
                rows.append((track_rowid[t], tag_rowid[str(rng.choice(DISTRACTORS[tag]))], 100.0))
        rows.append((track_rowid[t], tag_rowid["seen live"], float(rng.integers(0, 101))))
    for t in extra_tracks:          # tagged, but in none of the lists
        rows += [(track_rowid[t], tag_rowid[tag], 100.0) for tag in ("rock", "jazz")]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                      "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);")
    con.executemany("INSERT INTO tids (rowid, tid) VALUES (?, ?)", [(r, t) for t, r in track_rowid.items()])
    con.executemany("INSERT INTO tags (rowid, tag) VALUES (?, ?)", [(r, t) for t, r in tag_rowid.items()])
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


def sample_rows(y: np.ndarray, n: int, rng) -> np.ndarray:
    """n row indices: a few positives of every tag (rare tags included), the rest at random."""
    picked = {int(i) for j in range(y.shape[1]) for i in rng.choice(np.flatnonzero(y[:, j]), 3, replace=False)}
    rest = rng.permutation(np.setdiff1d(np.arange(len(y)), sorted(picked)))[: n - len(picked)]
    return np.array(sorted(picked | set(rest.tolist())))


@pytest.fixture(scope="module")
def published(shared, tmp_path_factory):
    """Real-schema database and id lists for ~300 valid and ~300 test tracks of the published
    matrices, plus 20 train tracks with random tags; returns (folder, {split: (ids, y)})."""
    d, rng = tmp_path_factory.mktemp("msd"), np.random.default_rng(1)
    data = {}
    for split in ("valid", "test"):
        ids = np.array((shared / "msd_top50" / f"{split}_x_msd_id.txt").read_text().split())
        y = np.load(shared / "msd_top50" / f"{split}_y.npy")
        rows = sample_rows(y, 300, rng)
        data[split] = (ids[rows].tolist(), y[rows].astype(np.uint8))
    train_ids = [f"TRTRAIN{i:011d}" for i in range(20)]
    data["train"] = (train_ids, (rng.random((20, 50)) < 0.1).astype(np.uint8))
    tracks = [t for ids, _ in data.values() for t in ids]
    write_db(d / "lastfm_tags.db", tracks, np.concatenate([y for _, y in data.values()]),
             extra_tracks=[f"TRUNLISTED{i:08d}" for i in range(5)])
    for split, (ids, _) in data.items():
        (d / f"{split}_ids.txt").write_text("\n".join(ids) + "\n")
    return d, data


def id_args(d):
    return ["--msd-ids", *(f"{s}={d / f'{s}_ids.txt'}" for s in ("train", "valid", "test"))]


def test_labels_equal_the_published_matrices(published, tmp_path, capsys):
    d, data = published
    code = cli.main(["labels", "--benchmark", "msd-top50", "--lastfm-db", str(d / "lastfm_tags.db"),
                     *id_args(d), "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    ids, splits, y, tags, cats = read_labels(tmp_path / msd_top50.LABELS_FILE)
    assert tags == msd_top50.TAGS and cats == msd_top50.CATEGORIES
    for split, (want_ids, want_y) in data.items():
        rows = np.flatnonzero(splits == split)
        assert [ids[i] for i in rows] == want_ids
        np.testing.assert_array_equal(y[rows], want_y, err_msg=split)
    assert read_config(tmp_path / msd_top50.LABELS_FILE)["benchmark"] == "msd-top50"
    # the file carries the run that wrote it, the folder's run
    from tagfold.pipeline.io import folder_run_id, read_run_id
    assert read_run_id(tmp_path / msd_top50.LABELS_FILE) == folder_run_id(tmp_path) is not None
    summary = json.loads((tmp_path / "labels_msd-top50_summary.json").read_text())
    assert summary["positive_rows_of_unlisted_tracks"] == 10 and summary["tags_absent_from_database"] == []
    assert summary["splits"]["valid"]["tracks_without_positive"] == 0


def test_lowercasing_or_a_lower_threshold_would_differ(published, tmp_path):
    """The fixture tells the rule apart: val >= 50 or case-insensitive matching change the matrix."""
    d, data = published
    ids = data["valid"][0]
    tracks, cols, _ = msd_top50.positive_pairs(str(d / "lastfm_tags.db"), min_value=49.5)
    loose = np.zeros((len(ids), 50), np.uint8)
    row = {t: i for i, t in enumerate(ids)}
    for t, c in zip(tracks, cols):
        if t in row:
            loose[row[t], c] = 1
    assert (loose != data["valid"][1]).any()
    con = sqlite3.connect(d / "lastfm_tags.db")
    variants = con.execute("SELECT count(*) FROM tid_tag JOIN tags ON tags.rowid = tid_tag.tag "
                           "WHERE tags.tag IN ('Rock', 'hip-hop', 'mellow', 'house') AND val > 50").fetchone()[0]
    con.close()
    assert variants > 20


def test_bad_inputs_are_one_line(published, tmp_path, capsys):
    d, _ = published
    bad = tmp_path / "bad_ids.txt"
    bad.write_text("TRAAAAW128F429D538\nnot-an-id\n")
    dup = tmp_path / "dup_ids.txt"
    dup.write_text("TRAAAAW128F429D538\n\nTRAAAAW128F429D538\n")
    wrong = tmp_path / "other.db"
    sqlite3.connect(wrong).execute("CREATE TABLE songs (id TEXT)").connection.commit()
    text_val = tmp_path / "text_val.db"
    write_db(text_val, ["TRAAAAW128F429D538"], np.eye(1, 50, dtype=np.uint8))
    con = sqlite3.connect(text_val)
    con.execute("UPDATE tid_tag SET val = 'high' WHERE rowid = (SELECT min(rowid) FROM tid_tag)")
    con.commit()
    con.close()
    db = str(d / "lastfm_tags.db")
    cases = [
        (["--lastfm-db", db, "--msd-ids", f"valid={bad}"], f"{bad}:2: 'not-an-id' is not an MSD track id"),
        (["--lastfm-db", db, "--msd-ids", f"valid={dup}"], f"{dup}:3: track TRAAAAW128F429D538 is listed twice"),
        (["--lastfm-db", db, "--msd-ids", f"dev={dup}"], "split must be one of train, valid, test"),
        (["--lastfm-db", str(tmp_path / "missing.db"), *id_args(d)], "missing.db: not found"),
        (["--lastfm-db", str(wrong), *id_args(d)], "expected the MSD lastfm_tags.db schema"),
        (["--lastfm-db", str(text_val), "--msd-ids", f"valid={d / 'valid_ids.txt'}"], "is not a number"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        code = cli.main(["labels", "--benchmark", "msd-top50", *args, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        last = err.splitlines()[-1]     # after at most the "reading ..." progress line
        assert code == 1 and last.startswith("tagfold labels: ") and message in last, err
        assert "Traceback" not in err and len(err.splitlines()) <= 2, err
        assert not (out / msd_top50.LABELS_FILE).exists()


def test_labels_help_names_the_benchmark(capsys):
    with pytest.raises(SystemExit):
        cli.main(["labels", "--help"])
    assert "--benchmark" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the preset end to end

@pytest.mark.usefixtures("one_torch_thread")
def test_preset_trains_end_to_end_on_a_real_schema_fixture(tmp_path, capsys):
    """labels --benchmark -> manifest (MSD layout) -> prep-audio -> train --benchmark msd-top50
    --preset won2020 (scaled: 10 epochs, tiny width and crops) -> evaluate, through the CLI."""
    rng = np.random.default_rng(0)
    splits = {"train": 12, "valid": 4, "test": 4}
    ids = {s: [f"TR{s[:2].upper()}{i:014d}" for i in range(n)] for s, n in splits.items()}
    tracks = [t for s in splits for t in ids[s]]
    y = np.zeros((len(tracks), 50), np.uint8)
    y[np.arange(len(tracks)), rng.integers(0, 3, len(tracks))] = 1     # rock, pop or alternative
    write_db(tmp_path / "lastfm_tags.db", tracks, y)
    root = tmp_path / "previews"
    t = np.arange(16000) / 16000
    for track, labels in zip(tracks, y):       # 1 s of a tone per tag, MSD's 7digital layout
        path = root / track[2] / track[3] / track[4] / f"{track}.clip.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = sum(np.sin(2 * np.pi * (300 + 500 * j) * t) for j in np.flatnonzero(labels))
        sf.write(path, (0.3 * tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000, format="MP3")
    for s in splits:
        (tmp_path / f"{s}.txt").write_text("\n".join(ids[s]) + "\n")
    lists = [f"{s}={tmp_path / f'{s}.txt'}" for s in splits]
    data = tmp_path / "data"
    steps = [
        ["manifest", "--msd-root", str(root), "--msd-ids", *lists, "--out", str(data / "manifest.parquet")],
        ["prep-audio", "--manifest", str(data / "manifest.parquet"), "--out", str(data / "prep"), "--workers", "1"],
        ["labels", "--benchmark", "msd-top50", "--lastfm-db", str(tmp_path / "lastfm_tags.db"), "--msd-ids", *lists,
         "--out", str(data / "labels")],
        ["train", "--benchmark", "msd-top50", "--preset", "won2020", "--data", str(data), "--epochs", "10",
         "--width", "0.0625", "--crop-samples", "8000", "--batch-size", "4", "--val-chunks", "3", "--device", "cpu",
         "--num-workers", "0", "--out", str(tmp_path / "run")],
        ["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--n-chunks", "3", "--out",
         str(tmp_path / "eval")],
    ]
    for step in steps:
        assert cli.main(step) == 0, (step[0], capsys.readouterr().err[-2000:])
    state = ckpt.load(tmp_path / "run" / "epoch-0010.pt")
    cfg = state["config"]
    assert (cfg["benchmark"], cfg["model"], cfg["schedule"], cfg["select"], cfg["val_chunks"]) == (
        "msd-top50", "shortchunk_resnet", "won2020", "loss", 3)
    assert [r["lr"] for r in state["history"]] == [1e-4] * 4 + [1e-3, 1e-4] + [1e-5] * 4
    assert state["tags"] == list(msd_top50.TAGS)
    losses = [r["valid_loss"] for r in state["history"]]
    assert ckpt.load(tmp_path / "run" / "best.pt")["epoch"] == 1 + int(np.argmin(losses))
    # evaluate names the run by the benchmark it was trained on, not by a stage
    overall = (tmp_path / "eval" / "overall.md").read_text()
    assert "| shortchunk_resnet | msd-top50 | own |" in overall and "Stage" not in overall
    assert (tmp_path / "eval" / "predictions_msd-top50_shortchunk_resnet.parquet").exists()
    table = pq.read_table(data / "labels" / msd_top50.LABELS_FILE)
    assert table.num_rows == len(tracks) and table.column_names[2:] == list(msd_top50.TAGS)


def test_training_on_the_benchmark_refuses_other_labels(tmp_path):
    """--benchmark msd-top50 reads only labels made by `tagfold labels --benchmark msd-top50`."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_train import SynthLoaders, tiny_config
    from tagfold.pipeline.errors import UserError
    from tagfold.training.train import fit

    cfg = tiny_config(tmp_path, benchmark="msd-top50")
    with pytest.raises(UserError, match="not the msd-top50 labels .made for no benchmark.; make them with "
                                        "`tagfold labels --benchmark msd-top50`"):
        fit(cfg, SynthLoaders(cfg.labels), quiet=True)
