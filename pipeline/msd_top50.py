"""The MSD top-50 tagging benchmark, built exactly from the Million Song Dataset files a user has.

    tagfold labels --benchmark msd-top50 --lastfm-db lastfm_tags.db \\
        --msd-ids train=train_x_msd_id.txt valid=valid_x_msd_id.txt test=test_x_msd_id.txt --out DIR

This is the task of Choi et al. 2017's split, on which Pons et al. 2018 and Won et al. 2020
report their MSD figures, not tagfold's thesis task:
- its own 50 tags (`TAGS`, in the benchmark's column order), not the thesis's selected tags;
- a tag counts for a track when its Last.fm value (`tid_tag.val`, 0-100) is above 50;
- tags match exactly, case included: 'Hip-Hop', 'Mellow', 'Progressive rock' and 'House' are the
  benchmark's, 'hip-hop' or 'mellow' are other Last.fm tags and do not count;
- the tracks and their splits are the id lists given (one MSD track id per line), in that order.
No tag cleaning, no Stage I/II/III: those would change the task the published numbers are on.

Reads the MSD `lastfm_tags.db` schema: tids(tid), tags(tag), tid_tag(tid, tag, val), where
tid_tag.tid / tid_tag.tag are rowids of tids / tags. Writes DIR/labels_msd-top50.parquet
(track_id, split, one uint8 column per tag; the layout `tagfold train` reads) and
DIR/labels_msd-top50_summary.json (counts per split, tags absent from the database, tracks
without any positive). `tagfold train --benchmark msd-top50 --data D` reads D/labels/ by default.
"""
from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagfold.pipeline.errors import UserError
from tagfold.pipeline.io import output_lock, start_run, write_parquet, write_text
from tagfold.pipeline.labels_schema import labels_table

NAME = "msd-top50"
LABELS_FILE = f"labels_{NAME}.parquet"
MIN_VALUE = 50          # a tag counts when val > MIN_VALUE
SPLITS = ("train", "valid", "test")

# The benchmark's tags in its column order (the order of the published label matrices).
TAGS = (
    "rock", "pop", "alternative", "indie", "electronic",
    "female vocalists", "dance", "00s", "alternative rock", "jazz",
    "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica",
    "80s", "folk", "90s", "chill", "instrumental", "punk",
    "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop",
    "70s", "party", "country", "easy listening",
    "sexy", "catchy", "funk", "electro", "heavy metal",
    "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)
# Categories (tagfold's names) for the by-category tables: decades number, moods emotion,
# voices, instruments and qualities descriptive, the rest genre.
_NUMERIC = {"00s", "80s", "90s", "70s", "60s"}
_EMOTION = {"Mellow", "sexy", "sad", "happy", "catchy"}
_DESCRIPTIVE = {"female vocalists", "male vocalists", "female vocalist", "guitar", "beautiful", "chill",
                "acoustic", "party"}
CATEGORIES = tuple("number" if t in _NUMERIC else "emotion" if t in _EMOTION else
                   "descriptive" if t in _DESCRIPTIVE else "genre" for t in TAGS)
MSD_TABLES = {"tids": ("tid",), "tags": ("tag",), "tid_tag": ("tid", "tag", "val")}


class BenchmarkInputError(UserError):
    """A database or id list that cannot give the benchmark: the message names file and line."""


@dataclass(frozen=True)
class MsdTop50Config:
    lastfm_db: str
    id_lists: tuple[tuple[str, str], ...]      # (split, file) in the order given
    out: str
    benchmark: str = NAME
    min_value: int = MIN_VALUE
    selected_tags: tuple[str, ...] = TAGS       # what `tagfold train` reads back from the metadata
    categories: tuple[str, ...] = CATEGORIES


def read_id_lists(id_lists) -> tuple[list[str], list[str]]:
    """(track ids, splits) in file order from (split, file) pairs; a bad or repeated id is an error
    naming its file and line."""
    ids, splits, seen = [], [], {}
    for split, path in id_lists:
        if split not in SPLITS:
            raise BenchmarkInputError(f"{path}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        try:
            lines = Path(path).read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise BenchmarkInputError(f"{path}: cannot read the id list ({e})") from None
        for line, tid in enumerate(lines, start=1):
            tid = tid.strip()
            if not tid:
                continue
            if not (tid.startswith("TR") and len(tid) == 18 and tid.isalnum()):
                raise BenchmarkInputError(f"{path}:{line}: {tid!r} is not an MSD track id (TR + 16 letters/digits)")
            if tid in seen:
                raise BenchmarkInputError(f"{path}:{line}: track {tid} is listed twice (first at {seen[tid]})")
            seen[tid] = f"{path}:{line}"
            ids.append(tid)
            splits.append(split)
    if not ids:
        raise BenchmarkInputError("the id lists hold no track id")
    return ids, splits


def _connect(db: str) -> sqlite3.Connection:
    path = Path(db)
    if not path.is_file():
        raise BenchmarkInputError(f"{db}: not found (the MSD Last.fm database, lastfm_tags.db)")
    con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    con.text_factory = bytes     # compare tags byte for byte: exact and case-sensitive
    try:
        have = {r[0].decode() for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, columns in MSD_TABLES.items():
            cols = {r[1].decode() for r in con.execute(f"PRAGMA table_info({table})")} if table in have else set()
            if not set(columns) <= cols:
                raise BenchmarkInputError(f"{db}: expected the MSD lastfm_tags.db schema tids(tid), tags(tag), "
                                          f"tid_tag(tid, tag, val); table {table} is missing or lacks columns")
    except sqlite3.DatabaseError as e:
        con.close()
        raise BenchmarkInputError(f"{db}: not a readable SQLite database ({e})") from None
    except BenchmarkInputError:
        con.close()
        raise
    return con


def positive_pairs(db: str, tags=TAGS, min_value: float = MIN_VALUE) -> tuple[list[str], np.ndarray, list[str]]:
    """(track ids, tag columns, tags absent from the database) of every tid_tag row whose tag is
    exactly one of `tags` and whose val is above `min_value`."""
    column = {t.encode("utf-8"): j for j, t in enumerate(tags)}
    con = _connect(db)
    try:
        tag_col = {rowid: column[tag] for rowid, tag in con.execute("SELECT rowid, tag FROM tags")
                   if isinstance(tag, bytes) and tag in column}
        found = set(tag_col.values())
        absent = [t for j, t in enumerate(tags) if j not in found]
        if not tag_col:
            return [], np.zeros(0, np.int64), absent
        marks = ",".join("?" * len(tag_col))
        # Positives only, plus any value that is not a number so that the error below can name it.
        rows = con.execute(f"SELECT rowid, tid, tag, val FROM tid_tag WHERE tag IN ({marks}) AND "
                           f"(typeof(val) NOT IN ('integer', 'real') OR val > ?)",
                           [*tag_col, min_value]).fetchall()
        names = dict(con.execute("SELECT rowid, tid FROM tids"))    # ~0.5 M tracks in the real database
    except sqlite3.DatabaseError as e:
        raise BenchmarkInputError(f"{db}: cannot read ({e})") from None
    finally:
        con.close()
    track_ids, cols = [], []
    for rowid, tid, tag, val in rows:
        if not isinstance(val, (int, float)):
            shown = val.decode("utf-8", "replace") if isinstance(val, bytes) else val
            raise BenchmarkInputError(f"{db}: table tid_tag, rowid {rowid}: val {shown!r} is not a number")
        if not val > min_value:      # NaN never counts
            continue
        name = names.get(tid)
        if name is None:
            raise BenchmarkInputError(f"{db}: table tid_tag, rowid {rowid}: tid {tid} is not a rowid of table tids")
        track_ids.append(name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
        cols.append(tag_col[tag])
    return track_ids, np.asarray(cols, np.int64), absent


def build(cfg: MsdTop50Config) -> dict:
    """Write the benchmark's label matrix for the listed tracks; returns the summary."""
    ids, splits = read_id_lists(cfg.id_lists)
    pair_tracks, pair_cols, absent = positive_pairs(cfg.lastfm_db, TAGS, cfg.min_value)
    row_of = {t: i for i, t in enumerate(ids)}
    rows = np.array([row_of.get(t, -1) for t in pair_tracks], np.int64)
    listed = rows >= 0
    y = np.zeros((len(ids), len(TAGS)), np.uint8)
    y[rows[listed], pair_cols[listed]] = 1

    out = Path(cfg.out)
    write_parquet(labels_table(ids, splits, y, TAGS), out / LABELS_FILE, cfg)
    split_arr = np.asarray(splits)
    summary = {
        "benchmark": NAME,
        "tracks": len(ids),
        "positive_rows_read": len(pair_tracks),
        "positive_rows_of_unlisted_tracks": int((~listed).sum()),
        "tags_absent_from_database": absent,
        "splits": {s: {"tracks": int((split_arr == s).sum()),
                       "tracks_without_positive": int((y[split_arr == s].sum(axis=1) == 0).sum()),
                       "positives_per_tag": {t: int(v) for t, v in zip(TAGS, y[split_arr == s].sum(axis=0))}}
                   for s in SPLITS if (split_arr == s).any()},
    }
    write_text(json.dumps(summary, indent=2) + "\n", out / f"labels_{NAME}_summary.json")
    return summary


def main(argv: list[str]) -> int:
    from tagfold.pipeline.options import parser

    p = parser("tagfold labels", __doc__.split("\n\n")[0],
               epilog=f"writes OUT/{LABELS_FILE}; tags: {', '.join(TAGS)}")
    p.add_argument("--benchmark", required=True, choices=[NAME], help="the published task to build")
    p.add_argument("--lastfm-db", required=True, help="the MSD Last.fm SQLite database (lastfm_tags.db)")
    p.add_argument("--msd-ids", required=True, nargs="+", metavar="SPLIT=FILE",
                   help="the benchmark's track lists, e.g. train=train_x_msd_id.txt valid=... test=...")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)
    bad = [s for s in a.msd_ids if "=" not in s]
    if bad:
        p.error(f"--msd-ids takes SPLIT=FILE, got {bad[0]!r}")
    cfg = MsdTop50Config(lastfm_db=a.lastfm_db, id_lists=tuple(tuple(s.split("=", 1)) for s in a.msd_ids),
                         out=a.out)
    print(f"labels ({NAME}): reading {a.lastfm_db} ...", file=sys.stderr)
    with output_lock(a.out):     # a BenchmarkInputError is one line from tagfold.cli's error boundary
        start_run(a.out)         # the labels file carries this run's id, as every label command's does
        s = build(cfg)
    per_split = ", ".join(f"{k} {v['tracks']}" for k, v in s["splits"].items())
    print(f"labels ({NAME}): {s['tracks']} tracks ({per_split}); {s['positive_rows_read']} tag rows with val > "
          f"{MIN_VALUE} read, {s['positive_rows_of_unlisted_tracks']} of them for tracks outside the lists",
          file=sys.stderr)
    if s["tags_absent_from_database"]:
        print(f"  warning: {len(s['tags_absent_from_database'])} benchmark tags are not in {a.lastfm_db} "
              f"(exact spelling): {', '.join(s['tags_absent_from_database'])}", file=sys.stderr)
    empty = sum(v["tracks_without_positive"] for v in s["splits"].values())
    if empty:
        print(f"  warning: {empty} listed tracks have no positive tag (the benchmark's lists have none: "
              f"is this the matching database?)", file=sys.stderr)
    print(f"wrote {Path(a.out) / LABELS_FILE}")
    return 0
