"""Tag ingest: every MSD Last.fm format, every kind of bad input, counts that add up."""
import json
import sqlite3
import sys
import threading

import pyarrow.parquet as pq
import pytest

from tagfold import cli
from tagfold.pipeline.tags import ingest as ing
from tagfold.pipeline.tags.ingest import IngestError, detect_format, ingest, read_tags
from tagfold.pipeline.io import read_config


def balanced(report):
    return (report.read == report.kept + report.merged + report.rejected
            and report.links_read == report.links_kept + report.links_merged + report.links_rejected)


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- formats

def test_real_tag_list_as_lines(shared, real_tags):
    res = read_tags(shared / "lastfm" / "tags.txt")
    rep = res.report
    assert rep.format == "lines"
    assert rep.read == len(real_tags) == 58_702
    assert rep.rejected == 0 and balanced(rep)
    tags = res.tags.column("tag").to_pylist()
    assert len(set(tags)) == len(tags) == rep.kept
    # the real list repeats some tags up to whitespace ('a  b' / 'a b'): those are the merges
    assert sum(res.tags.column("count").to_pylist()) == rep.read
    assert res.tags.column("tag_id").to_pylist() == list(range(rep.kept))
    assert res.track_tags is None


def test_unique_tags_format_and_parquet_round_trip(tmp_path):
    src = write_bytes(tmp_path / "lastfm_unique_tags.txt",
                      "rock\t101071\npop\t69159\nRock \t5\ncafé del mar\t3\n80's\t0\n".encode())
    res = ingest(src, tmp_path / "out")
    assert res.report.format == "unique_tags"
    assert (res.report.read, res.report.kept, res.report.merged, res.report.rejected) == (5, 4, 1, 0)
    table = pq.read_table(tmp_path / "out" / "tags.parquet")
    assert table.schema.equals(ing.TAGS_SCHEMA)
    assert table.to_pylist() == [
        {"tag_id": 0, "tag": "rock", "count": 101076},
        {"tag_id": 1, "tag": "pop", "count": 69159},
        {"tag_id": 2, "tag": "café del mar", "count": 3},
        {"tag_id": 3, "tag": "80's", "count": 0},
    ]
    config = read_config(tmp_path / "out" / "tags.parquet")
    assert config["ingest"]["casefold"] is True and config["report"]["merged"] == 1
    report = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    assert report["report"]["read"] == 5
    assert not (tmp_path / "out" / "track_tags.parquet").exists()


def test_keep_case_and_nfc(tmp_path):
    # 'e' + combining acute is NFC-normalised to 'é' and so merges with the composed form
    src = write_bytes(tmp_path / "t.txt", "Cafe\u0301\t1\ncafé\t2\n".encode())
    res = read_tags(src, casefold=False)
    assert res.tags.column("tag").to_pylist() == ["Café", "café"]
    res = read_tags(src)
    assert res.tags.to_pylist() == [{"tag_id": 0, "tag": "café", "count": 3}]


def test_csv_format_links_and_counts(tmp_path):
    src = write_bytes(tmp_path / "tracks.csv", (
        "track_id,tags\n"
        "TRAAAAW128F429D538,rock;Indie Rock;rock\n"
        "TRAAABD128F429CF47,\"pop;rock, roll\"\n"
        "TRAAADZ128F9348C2E,\n"
    ).encode())
    res = ingest(src, tmp_path / "out")
    rep = res.report
    assert rep.format == "csv" and balanced(rep)
    assert (rep.read, rep.kept, rep.merged, rep.rejected) == (5, 4, 1, 0)
    assert (rep.links_read, rep.links_kept, rep.links_merged) == (5, 4, 1)
    tags = {r["tag"]: r for r in res.tags.to_pylist()}
    assert tags["rock"]["count"] == 1  # repeated on one track: one track carries it
    assert tags["rock, roll"]["count"] == 1
    tt = pq.read_table(tmp_path / "out" / "track_tags.parquet")
    assert tt.schema.equals(ing.TRACK_TAGS_SCHEMA)
    pairs = {(r["track_id"], r["tag_id"]) for r in tt.to_pylist()}
    assert pairs == {("TRAAAAW128F429D538", tags["rock"]["tag_id"]),
                     ("TRAAAAW128F429D538", tags["indie rock"]["tag_id"]),
                     ("TRAAABD128F429CF47", tags["pop"]["tag_id"]),
                     ("TRAAABD128F429CF47", tags["rock, roll"]["tag_id"])}
    assert set(tt.column("weight").to_pylist()) == {1.0}


def test_csv_needs_header(tmp_path):
    src = write_bytes(tmp_path / "t.csv", b"TRA,rock\n")
    with pytest.raises(IngestError, match=r"t\.csv:1: expected the header"):
        read_tags(src)


def make_msd_db(path, tags, tids, links):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE tids (tid TEXT)")
    con.execute("CREATE TABLE tags (tag TEXT)")
    con.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
    con.executemany("INSERT INTO tags VALUES (?)", [(t,) for t in tags])
    con.executemany("INSERT INTO tids VALUES (?)", [(t,) for t in tids])
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", links)
    con.commit()
    con.close()
    return path


def test_sqlite_msd_schema(tmp_path):
    db = make_msd_db(tmp_path / "lastfm_tags.db",
                     ["classic rock", "Classic Rock", "70s", "never used"],
                     ["TRCCCYE12903CFF0E9", "TRCCCFH12903CEBC70"],
                     [(1, 1, 100.0), (1, 2, 40.0), (1, 3, 12.0), (2, 3, 100.0)])
    res = ingest(db, tmp_path / "out")
    rep = res.report
    assert rep.format == "sqlite" and balanced(rep)
    assert (rep.read, rep.kept, rep.merged, rep.rejected) == (4, 3, 1, 0)
    # 'Classic Rock' casefolds onto 'classic rock': the two links of track 1 merge (max weight)
    assert (rep.links_read, rep.links_kept, rep.links_merged, rep.links_rejected) == (4, 3, 1, 0)
    assert res.tags.to_pylist() == [{"tag_id": 0, "tag": "classic rock", "count": 1},
                                    {"tag_id": 1, "tag": "70s", "count": 2},
                                    {"tag_id": 2, "tag": "never used", "count": 0}]
    tt = pq.read_table(tmp_path / "out" / "track_tags.parquet").to_pylist()
    assert tt == [{"track_id": "TRCCCYE12903CFF0E9", "tag_id": 0, "weight": 100.0},
                  {"track_id": "TRCCCYE12903CFF0E9", "tag_id": 1, "weight": 12.0},
                  {"track_id": "TRCCCFH12903CEBC70", "tag_id": 1, "weight": 100.0}]


def test_track_tags_written_part_by_part(tmp_path, monkeypatch):
    """track_tags.parquet is written a row group at a time (the whole table is never made): the
    file holds the same table as read_tags, with the run's metadata."""
    from tagfold.pipeline.io import read_run_id, start_run

    monkeypatch.setattr(ing, "ROW_GROUP_ROWS", 2)
    db = hostile.msd_sqlite(tmp_path / "lastfm_tags.db", n_tracks=5)
    run = start_run(tmp_path / "out")
    res = ingest(db, tmp_path / "out")
    path = tmp_path / "out" / "track_tags.parquet"
    assert pq.read_metadata(path).num_row_groups == 8 and len(res.links) == 15
    assert pq.read_table(path).equals(read_tags(db).track_tags) and res.track_tags.num_rows == 15
    assert read_run_id(path) == run and read_config(path)["report"]["links_kept"] == 15


def test_sqlite_without_expected_tables(tmp_path):
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE tags (tag TEXT)")
    con.commit()
    con.close()
    with pytest.raises(IngestError, match=r"other\.db: SQLite database lacks table\(s\) tids, tid_tag"):
        read_tags(db)


def test_sqlite_bad_rows_named_and_skipped(tmp_path):
    db = make_msd_db(tmp_path / "bad.db", ["rock", "x" * 5000, "pop"], ["TR1", "TR2"],
                     [(1, 1, 50.0), (1, 2, 50.0), (2, 9, 10.0), (2, 3, 10.0)])
    con = sqlite3.connect(db)
    con.execute("UPDATE tags SET tag = ? WHERE rowid = 3", (b"p\xffp",))  # invalid UTF-8 blob
    con.commit()
    con.close()
    with pytest.raises(IngestError, match=r"bad\.db: table tags, rowid 2: table tags: tag of 5,000 characters"):
        read_tags(db)
    rep = read_tags(db, skip_bad=True).report
    assert balanced(rep)
    assert (rep.read, rep.kept, rep.rejected) == (3, 1, 2)
    assert (rep.links_read, rep.links_kept, rep.links_rejected) == (4, 1, 3)
    reasons = " | ".join(r.reason for r in rep.rejects)
    assert "invalid UTF-8 in tag" in reasons and "tag rowid 9 is not in table tags" in reasons


def test_sqlite_bad_track_ids_named_and_their_links_rejected(tmp_path):
    db = make_msd_db(tmp_path / "t.db", ["rock", "pop"], ["TR1", " ", "T\x00R", "TR4", "TR5"],
                     [(1, 1, 50.0), (2, 1, 50.0), (3, 2, 10.0), (4, 2, 20.0), (5, 1, 30.0), (5, 2, 40.0)])
    con = sqlite3.connect(db)
    con.execute("UPDATE tids SET tid = ? WHERE rowid = 4", (b"T\xffR",))  # invalid UTF-8: all tids come as bytes
    con.commit()
    con.close()
    with pytest.raises(IngestError, match=r"t\.db: table tids, rowid 2: table tids: empty track id"):
        read_tags(db)
    res = read_tags(db, skip_bad=True)
    rep = res.report
    assert balanced(rep) and (rep.read, rep.kept, rep.rejected) == (2, 2, 0)
    assert (rep.links_read, rep.links_kept, rep.links_rejected) == (6, 3, 3)
    assert [(r.line, r.reason) for r in rep.rejects] == [
        (2, "table tids: empty track id"), (3, "table tids: NUL byte in track id"),
        (4, "table tids: invalid UTF-8 in tid at byte 1 (invalid start byte)"),
        *((rowid, f"table tid_tag: links to rejected track (tids rowid {rowid})") for rowid in (2, 3, 4))]
    assert res.track_tags.to_pylist() == [{"track_id": "TR1", "tag_id": 0, "weight": 50.0},
                                          {"track_id": "TR5", "tag_id": 0, "weight": 30.0},
                                          {"track_id": "TR5", "tag_id": 1, "weight": 40.0}]


def test_not_a_database(tmp_path):
    src = write_bytes(tmp_path / "x.db", b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(IngestError, match=r"x\.db"):
        read_tags(src)


def test_detect_format(tmp_path, shared):
    assert detect_format(shared / "lastfm" / "tags.txt") == "lines"
    assert detect_format(write_bytes(tmp_path / "u.txt", b"\nrock\t3\n")) == "unique_tags"
    assert detect_format(write_bytes(tmp_path / "a.csv", b"track_id,tags\n")) == "csv"
    db = make_msd_db(tmp_path / "l.bin", [], [], [])
    assert detect_format(db) == "sqlite"


# ---------------------------------------------------------------- bad input

BAD_LINES = [
    (b"p\xe9p\t3", "invalid UTF-8"),
    (b"rock 5", "missing tab"),
    (b"   \t3", "empty tag"),
    (b"x" * 5000 + b"\t1", "tag of 5,000 characters exceeds max_len=255"),
    (b"ro\x00ck\t2", "NUL byte"),
    (b"rock\tmany", "count 'many' is not a non-negative integer"),
    (b"rock\t-4", "is not a non-negative integer"),
]


@pytest.mark.parametrize("bad, reason", BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_bad_line_names_file_and_line(tmp_path, bad, reason):
    src = write_bytes(tmp_path / "lastfm_unique_tags.txt", b"rock\t1\npop\t2\n" + bad + b"\njazz\t3\n")
    with pytest.raises(IngestError) as err:
        read_tags(src, "unique_tags")
    assert f"lastfm_unique_tags.txt:3: " in str(err.value) and reason in str(err.value)
    rep = read_tags(src, "unique_tags", skip_bad=True).report
    assert (rep.read, rep.kept, rep.merged, rep.rejected) == (4, 3, 0, 1)
    assert rep.rejects[0].line == 3 and reason in rep.rejects[0].reason


def test_counts_beyond_int64_are_a_bad_line_or_one_error(tmp_path):
    """tags.parquet stores counts as int64: a larger count is a bad line (rejected with
    --skip-bad), and counts that add up past it are one error naming the tag, not a traceback."""
    huge = str(2 ** 63).encode()
    src = write_bytes(tmp_path / "u.txt", b"rock\t1\npop\t" + huge + b"\njazz\t3\n")
    with pytest.raises(IngestError, match=r"u.txt:2: count '9223372036854775808' exceeds the largest count"):
        read_tags(src, "unique_tags")
    res = read_tags(src, "unique_tags", skip_bad=True)
    assert (res.report.read, res.report.kept, res.report.rejected) == (3, 2, 1) and balanced(res.report)
    half = str(2 ** 62).encode()
    src = write_bytes(tmp_path / "v.txt", b"rock\t" + half + b"\nRock\t" + half + b"\njazz\t3\n")
    with pytest.raises(IngestError, match=r"v.txt: the counts of tag 'rock' add up to more than the largest count"):
        read_tags(src, "unique_tags", skip_bad=True)
    assert read_tags(write_bytes(tmp_path / "w.txt", b"rock\t" + str(2 ** 63 - 1).encode() + b"\n"),
                     "unique_tags").tags.column("count").to_pylist() == [2 ** 63 - 1]


def test_skip_bad_counts_every_reject(tmp_path):
    lines = [b"ok\t1"] + [bad for bad, _ in BAD_LINES] + [b"OK\t2", b"fine\t3"]
    src = write_bytes(tmp_path / "u.txt", b"\n".join(lines) + b"\n")
    res = read_tags(src, "unique_tags", skip_bad=True)
    rep = res.report
    assert (rep.read, rep.kept, rep.merged, rep.rejected) == (10, 2, 1, 7) and balanced(rep)
    assert [r.line for r in rep.rejects] == list(range(2, 9))
    assert res.tags.to_pylist() == [{"tag_id": 0, "tag": "ok", "count": 3},
                                    {"tag_id": 1, "tag": "fine", "count": 3}]


def test_max_len_is_configurable(tmp_path):
    src = write_bytes(tmp_path / "t.txt", "ab\nabcdef\n".encode())
    with pytest.raises(IngestError, match=r"t\.txt:2: tag of 6 characters exceeds max_len=5"):
        read_tags(src, max_len=5)
    assert read_tags(src, max_len=6).report.kept == 2


def test_line_numbers_follow_newlines_only(tmp_path):
    # BOM, CRLF and a U+2028 inside a tag must not shift line numbers (str.splitlines would)
    src = write_bytes(tmp_path / "t.txt", "\ufeffa\r\nb\u2028c\r\n\r\nd\r\n".encode())
    with pytest.raises(IngestError, match=r"t\.txt:3: empty tag"):
        read_tags(src)
    res = read_tags(src, skip_bad=True)
    assert res.tags.column("tag").to_pylist() == ["a", "b c", "d"]


def test_csv_bad_rows(tmp_path):
    src = write_bytes(tmp_path / "t.csv", b"track_id,tags\nTR1,rock;;pop\nTR2\n,jazz\n")
    with pytest.raises(IngestError, match=r"t\.csv:2: empty tag"):
        read_tags(src)
    rep = read_tags(src, skip_bad=True).report
    assert balanced(rep)
    assert (rep.read, rep.kept, rep.rejected) == (5, 2, 3)
    assert [r.line for r in rep.rejects] == [2, 3, 4]


def test_cli_prints_report(tmp_path, capsys):
    src = write_bytes(tmp_path / "u.txt", b"rock\t1\nrock\t2\nbad line\n")
    assert cli.main(["ingest", str(src), "--out", str(tmp_path / "o")]) == 1   # the CLI's error boundary
    assert "u.txt:3: missing tab" in capsys.readouterr().err
    assert cli.main(["ingest", str(src), "--out", str(tmp_path / "o"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "rows read 3, kept 1, merged 1, rejected 1" in out
    assert pq.read_table(tmp_path / "o" / "tags.parquet").to_pylist() == [{"tag_id": 0, "tag": "rock", "count": 3}]


# ---------------------------------------------------------------- hostile input (tests/hostile.py)

import hostile  # noqa: E402


def test_csv_stray_quote_is_named_and_swallows_nothing(tmp_path):
    path, line = hostile.csv_stray_quote(tmp_path)
    with pytest.raises(IngestError, match=rf"stray_quote\.csv:{line}: unbalanced quote"):
        read_tags(path)
    res = read_tags(path, skip_bad=True)
    rep = res.report
    assert balanced(rep) and rep.rejected == 1 and rep.rejects[0].line == line
    # every other track keeps its own two tags; no tag holds a comma or a line break
    tracks = set(res.track_tags.column("track_id").to_pylist())
    assert len(tracks) == 999 and "T2" not in tracks
    assert res.track_tags.num_rows == 2 * 999
    assert not any("," in t or "\n" in t for t in res.tags.column("tag").to_pylist())


def test_csv_field_over_a_line_break_is_a_bad_row(tmp_path):
    path, line = hostile.csv_multiline_field(tmp_path)
    with pytest.raises(IngestError, match=rf"multiline\.csv:{line}: unbalanced quote"):
        read_tags(path)
    rep = read_tags(path, skip_bad=True).report
    # the opening line and the orphaned closing line are each one rejected row
    assert balanced(rep) and [r.line for r in rep.rejects] == [line, line + 1]
    assert (rep.kept, rep.rejected) == (3, 2)


def test_csv_quoted_fields_on_one_line_still_read(tmp_path):
    src = write_bytes(tmp_path / "q.csv", b'track_id,tags\r\n"T1","rock;""quoted"" tag"\r\n\r\nT2,pop\r\n')
    res = read_tags(src)
    assert res.tags.column("tag").to_pylist() == ["rock", '"quoted" tag', "pop"]
    assert res.report.rejected == 0


def test_format_characters_and_compatibility_forms_merge(tmp_path):
    path, expected = hostile.tags_format_characters(tmp_path)
    with pytest.raises(IngestError, match=r"format_chars\.txt:8: empty tag"):
        read_tags(path)
    res = read_tags(path, skip_bad=True)
    rep = res.report
    assert {k: getattr(rep, k) for k in expected} == expected and balanced(rep)
    assert res.tags.to_pylist() == [{"tag_id": 0, "tag": "rock", "count": 7}]


@pytest.mark.parametrize("text, tag", [
    ("ro\u200bck", "rock"), ("\u200b", ""), ("Hip\u00a0 Hop", "hip hop"), ("Stra\u00dfe", "strasse"),
    ("\u2067punk rock\u2069", "punk rock"), ("\uff48\uff41\uff50\uff50\uff59", "happy"), ("Cafe\u0301", "café"),
])
def test_normalize_tag_documented_form(text, tag):
    from tagfold.pipeline.tags.vocab import normalize_tag

    assert normalize_tag(text) == tag and normalize_tag(tag) == tag


def test_sqlite_val_outside_range(tmp_path):
    path, rowids = hostile.sqlite_bad_val(tmp_path / "lastfm_tags.db")
    with pytest.raises(IngestError, match=rf"table tid_tag, rowid {rowids[0]}: table tid_tag: val -50 is outside 0..100"):
        read_tags(path)
    res = read_tags(path, skip_bad=True)
    rep = res.report
    assert balanced(rep) and rep.links_rejected == 3 and rep.links_read == 90
    assert sorted(r.line for r in rep.rejects) == rowids
    w = res.track_tags.column("weight").to_numpy()
    assert w.min() >= 0 and w.max() <= 100


def test_aliases_keep_raw_forms_findable(tmp_path):
    from tagfold.pipeline.tags.lookup import TagLookup, get_normalised

    src = write_bytes(tmp_path / "t.txt", "punk rock\npunk  rock\nPunk Rock\nro\u200bck\nrock\r\n".encode())
    res = ingest(src, tmp_path / "out")
    aliases = pq.read_table(tmp_path / "out" / "aliases.parquet")
    assert aliases.schema.equals(ing.ALIASES_SCHEMA)
    # raw forms equal to their tag (and CRLF line ends) are not repeated
    assert aliases.to_pylist() == [{"alias": "punk  rock", "tag_id": 0}, {"alias": "Punk Rock", "tag_id": 0},
                                   {"alias": "ro\u200bck", "tag_id": 1}]
    lookup = TagLookup.from_dir(tmp_path / "out")
    assert [lookup.find(t) for t in ("punk  rock", "Punk Rock", "PUNK   ROCK", "rock", "ro\u200bck", "jazz")] == \
        [0, 0, 0, 1, 1, None]
    assert get_normalised({"punk rock": {"punk"}}, "Punk  Rock") == {"punk"}
    assert res.tags.num_rows == 2


@pytest.mark.parametrize("gap", [False, True])
def test_sqlite_bulk_and_row_by_row_readers_agree(tmp_path, monkeypatch, gap):
    """The ADBC bulk reader, in one batch or in many, and the sqlite3 row reader give the same
    tables, counts and rejects (in the same order: grouped by problem, not by batch), on a
    database with merged tags, dangling links and rejected weights. Rowids without a gap are
    not read in bulk but counted; with a gap they are read."""
    path, bad_val_rowids = hostile.sqlite_bad_val(tmp_path / "lastfm_tags.db")
    con = sqlite3.connect(path)
    con.execute("INSERT INTO tags VALUES ('ROCK')")          # merges with 'rock'
    con.execute("INSERT INTO tid_tag VALUES (1, 21, 55.0)")  # links to it
    con.execute("INSERT INTO tid_tag VALUES (1, 99, 5.0)")   # dangling tag rowid, in the last batch
    con.execute("INSERT INTO tid_tag VALUES (?, 1, 5.0)", (2**40,))  # dangling tid beyond int32
    if gap:
        con.execute("DELETE FROM tid_tag WHERE rowid = 5")   # before the bad weights at 7 and 11
    con.commit()
    con.close()
    n_links = 92 if gap else 93
    bulk = read_tags(path, skip_bad=True)
    sent = []
    assert ing._links_in_bulk(path, sent.append, threading.Event(), gap) == bulk.report.links_read == n_links
    assert len(sent) == 2 and sent[-1] is None and ("rowid" in sent[0]) == gap  # one batch, then the end
    monkeypatch.setattr(ing, "LINK_BATCH_ROWS", 7)
    sent = []
    assert ing._links_in_bulk(path, sent.append, threading.Event(), gap) == n_links and len(sent) == -(-n_links // 7) + 1
    batched = read_tags(path, skip_bad=True)
    monkeypatch.setattr(ing, "_links_in_bulk", lambda path, put, stop, with_rowid: put(None))
    rows = read_tags(path, skip_bad=True)
    for other in (batched, rows):
        assert bulk.tags.equals(other.tags) and bulk.track_tags.equals(other.track_tags)
        assert bulk.aliases.equals(other.aliases)
        assert bulk.report.to_dict() == other.report.to_dict() and balanced(bulk.report)
    assert bulk.report.links_merged == 0 and bulk.report.links_rejected == 5
    assert [r.line for r in bulk.report.rejects] == [n_links + gap - 1, n_links + gap, *bad_val_rowids]
    assert [r.reason for r in bulk.report.rejects[:2]] == ["table tid_tag: tag rowid 99 is not in table tags",
                                                           f"table tid_tag: tid rowid {2**40} is not in table tids"]


@pytest.mark.parametrize("batch_rows", [ing.LINK_BATCH_ROWS, 1])
def test_sqlite_text_in_a_number_column_is_named(tmp_path, monkeypatch, batch_rows):
    """ADBC refuses such a column (batch_rows 1: after it sent the batches before); the row
    reader then starts over and names the row."""
    monkeypatch.setattr(ing, "LINK_BATCH_ROWS", batch_rows)
    db = make_msd_db(tmp_path / "t.db", ["rock"], ["TR1"], [(1, 1, 50.0), ("x", 1, 10.0)])
    with pytest.raises(IngestError, match=r"table tid_tag, rowid 2: table tid_tag: non-numeric cell"):
        read_tags(db)
    res = read_tags(db, skip_bad=True)
    assert res.report.links_rejected == 1 and res.track_tags.to_pylist() == [
        {"track_id": "TR1", "tag_id": 0, "weight": 50.0}]


# ---------------------------------------------------------------- bulk cleaning = the per-line reference

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tagfold.pipeline.tags.vocab import WHITESPACE, normalize_tag, normalize_tags  # noqa: E402

# What tag text can hold that normalisation cares about: every whitespace str.split() knows,
# CR, NUL and other control characters, format characters (ZWSP, soft hyphen, BOM, bidi,
# a plane-14 tag), cases that casefold differently from lower (ß, final sigma, dotted I, ligature),
# compatibility forms (full width, Roman numeral, ¨ that NFKC turns into space + mark),
# combining marks, Cyrillic, CJK; then any character at all.
_ODD = (WHITESPACE + "\0\x01\x7f\u200b\u00ad\ufeff\u2067\U000E0041AZaz ßΣσςİıﬁＲｏⅫ\u00a8\u0301\u0327"
        "éЖжあ漢\U0001F3B8")
_ANY = st.characters(codec="utf-8")  # any character a UTF-8 file or SQLite text can hold (no lone surrogate)
_TEXT = st.text(st.one_of(st.sampled_from(_ODD), st.characters(codec="utf-8", exclude_characters="\n")), max_size=12)


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bulk")


def per_line(path, **kw):
    """read_tags through the reference reader, a line at a time."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ing, "_read_lines_in_bulk", lambda path, col: False)
        return outcome(path, **kw)


def outcome(path, **kw):
    """Everything read_tags gives (its error's text for a file it refuses)."""
    try:
        res = read_tags(path, "lines", **kw)
    except IngestError as e:
        return str(e)
    assert res.track_tags is None and balanced(res.report)
    return res.tags, res.aliases, res.report.to_dict()


def assert_same(bulk, reference):
    if isinstance(reference, str):
        assert bulk == reference
    else:
        assert isinstance(bulk, tuple)
        assert bulk[0].equals(reference[0]) and bulk[1].equals(reference[1]) and bulk[2] == reference[2]


def test_whitespace_is_what_str_split_splits_on():
    assert sorted(WHITESPACE) == [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_TEXT, st.text(_ANY, max_size=12)), max_size=30), st.booleans())
def test_normalize_tags_is_normalize_tag_for_each(texts, casefold):
    """The bulk normaliser gives normalize_tag's tag for every text, whatever route it takes
    (plain ASCII, casefolded together, or one at a time), line breaks and all."""
    import pyarrow as pa

    assert normalize_tags(pa.array(texts, pa.string()), casefold).to_pylist() == \
        [normalize_tag(t, casefold) for t in texts]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_TEXT, min_size=1, max_size=8), st.lists(st.integers(0, 7), max_size=40),
       st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([255, 3]), st.booleans())
def test_bulk_lines_reader_is_the_per_line_reader(lines_dir, pool, picks, newline, bom, last_newline,
                                                  skip_bad, max_len, casefold):
    """Lines drawn from a small pool (so tags repeat and merge, raw forms repeat as aliases)
    with odd whitespace, CR line ends, NUL, format characters, case, empty and over-long lines:
    the same tags, aliases, counts, report and rejects (or the same error, naming the same
    line) as the per-line reader."""
    lines = [pool[i % len(pool)] for i in picks]
    text = (newline.join(lines) + (newline if last_newline and lines else "")).encode()
    path = write_bytes(lines_dir / "tags.txt", b"\xef\xbb\xbf" * bom + text + b"x" * (not text))
    kw = dict(skip_bad=skip_bad, max_len=max_len, casefold=casefold)
    assert_same(outcome(path, **kw), per_line(path, **kw))


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf", b"\n", b"\r\n", b"a", b"A\r\na\na\r\nA\n", b"a\r\r\nA  b\r\n", b"\r\n\r\n",
    b"ok\nro\x00ck\n\n" + b"x" * 300 + b"\n", b"rock\ncaf\xe9\nro\x00ck\n",  # the last is not UTF-8
], ids=["bom only", "one empty line", "crlf empty", "no newline", "crlf aliases", "cr kept in alias",
        "crlf blank lines", "rejects in order", "invalid utf-8"])
@pytest.mark.parametrize("skip_bad", [False, True])
def test_bulk_lines_reader_edge_cases(tmp_path, data, skip_bad):
    path = write_bytes(tmp_path / "tags.txt", data)
    assert_same(outcome(path, skip_bad=skip_bad), per_line(path, skip_bad=skip_bad))


@pytest.mark.parametrize("casefold", [True, False])
def test_bulk_lines_reader_on_the_real_tag_list(shared, casefold):
    path = shared / "lastfm" / "tags.txt"
    bulk = outcome(path, casefold=casefold)
    assert_same(bulk, per_line(path, casefold=casefold))
    assert len(bulk[1]) > 100  # the real list has raw forms that are aliases ('a  b', case)


def assert_bulk_as_reference(run):
    """run() -> (tags, aliases, report dict, track_tags) or the error text, once with the bulk
    cleaning and once with the per-tag reference in its place: the same result or error."""
    bulk = run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ing._Collector, "clean_all", lambda self, raws: self.clean_each(raws.to_pylist()))
        reference = run()
    if isinstance(reference, str):
        assert bulk == reference
    else:
        assert_same(bulk[:3], reference[:3])
        assert bulk[3].equals(reference[3])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_TEXT, st.text(_ANY, max_size=12)), max_size=12), st.booleans(), st.booleans())
def test_sqlite_tag_column_cleaned_in_bulk_as_row_by_row(tmp_path_factory, tags, skip_bad, casefold):
    """SQLite tags (which may hold line breaks) cleaned in bulk give what cleaning them a row
    at a time gives: tags, aliases, links merged onto them, the report and the first error."""
    db = tmp_path_factory.mktemp("db") / "lastfm_tags.db"
    tags = tags + ["rock"]
    make_msd_db(db, tags, ["TR1", "TR2"], [(1 + i % 2, 1 + i, 50.0) for i in range(len(tags))])

    def run():
        try:
            res = read_tags(db, skip_bad=skip_bad, casefold=casefold)
        except IngestError as e:
            return str(e)
        return res.tags, res.aliases, res.report.to_dict(), res.track_tags

    assert_bulk_as_reference(run)


_ENTRY = st.text(st.one_of(st.sampled_from(_ODD.replace("\n", "")), st.characters(codec="utf-8", exclude_characters='\n";,')),
                 max_size=8)
_CSV_ROW = st.one_of(
    st.tuples(st.sampled_from(["TR1", "TR2", "TR3", " ", "T\0R"]), st.lists(_ENTRY, max_size=4)).map(
        lambda r: f"{r[0]},{';'.join(r[1])}"),
    st.sampled_from(['TR4,"rock', "TR5,a,b", "", "\r", 'TR6,"a;""b"";c"']))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_CSV_ROW, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans(), st.sampled_from([255, 3]))
def test_csv_tags_cleaned_in_bulk_as_row_by_row(lines_dir, rows, newline, skip_bad, max_len):
    """CSV tag entries cleaned in bulk give what cleaning them one by one gives: tags, aliases,
    links, the report, its rejects in line order (rows rejected whole among rejected entries)
    and the first error."""
    path = write_bytes(lines_dir / "tags.csv", newline.join(["track_id,tags", *rows, ""]).encode())

    def run():
        try:
            res = read_tags(path, skip_bad=skip_bad, max_len=max_len)
        except IngestError as e:
            return str(e)
        lines = [r.line for r in res.report.rejects]
        assert balanced(res.report) and lines == sorted(lines)  # reported as read, line by line
        return res.tags, res.aliases, res.report.to_dict(), res.track_tags

    assert_bulk_as_reference(run)


_COUNT = st.one_of(st.sampled_from(["3", "0", "007", "-4", " 7 ", "+2", "1_000", "many", "", "\u0663", "5\r",
                                    "9" * 17, "-" + "9" * 25]), st.integers(0, 10**6).map(str))
_UNIQUE_LINE = st.one_of(st.tuples(_TEXT, _COUNT).map("\t".join), _TEXT)  # the second: mostly no tab


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_UNIQUE_LINE, min_size=1, max_size=8), st.lists(st.integers(0, 7), max_size=30),
       st.booleans(), st.sampled_from([255, 3]), st.booleans())
def test_bulk_unique_tags_reader_is_the_per_line_reader(lines_dir, pool, picks, skip_bad, max_len, casefold):
    """tag<TAB>count lines (tabs inside tags, counts int() reads or refuses, over-long ones,
    missing tabs, repeats that sum): the same tables, report, rejects and first error as the
    per-line reader."""
    path = write_bytes(lines_dir / "unique.txt", "\n".join(pool[i % len(pool)] for i in picks).encode() + b"\nx\t1\n")
    kw = dict(skip_bad=skip_bad, max_len=max_len, casefold=casefold)

    def run():
        try:
            res = read_tags(path, "unique_tags", **kw)
        except IngestError as e:
            return str(e)
        assert balanced(res.report)
        return res.tags, res.aliases, res.report.to_dict()

    bulk = run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ing, "_read_unique_tags_in_bulk", lambda path, col: False)
        reference = run()
    assert_same(bulk, reference)


def test_bulk_unique_tags_reader_leaves_counts_near_int64_to_the_per_line_reader(tmp_path):
    """Counts whose sum could overflow int64 are summed by the per-line reader (Python ints)."""
    path = write_bytes(tmp_path / "u.txt", b"a\t999999999999999999\n" + b"b\t1\n" * 9 + b"A\t5\n")
    col = ing._Collector(path, "unique_tags", ing.IngestConfig())
    assert ing._read_unique_tags_in_bulk(path, col) is False and col.report.read == 0
    assert read_tags(path).tags.to_pylist() == [{"tag_id": 0, "tag": "a", "count": 10**18 + 4},
                                                {"tag_id": 1, "tag": "b", "count": 9}]
