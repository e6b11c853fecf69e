"""Tag ingest: the Million Song Dataset's Last.fm tag files -> tags.parquet (+ track_tags.parquet).

Formats (`fmt`, or 'auto'):
- ``unique_tags``: `lastfm_unique_tags.txt`, one `tag<TAB>count` per line (split at the last tab,
  count a non-negative integer).
- ``sqlite``: `lastfm_tags.db`, tables `tids(tid)`, `tags(tag)`, `tid_tag(tid, tag, val)` where
  tid_tag.tid / tid_tag.tag are rowids into tids / tags and val (0-100) is Last.fm's tag weight.
  A tag's count is the number of tracks carrying it; every link becomes a track_tags row.
- ``lines``: one tag per line; a tag's count is the number of lines holding it.
- ``csv``: header `track_id,tags`, then one track per row with its tags joined by ';'
  (standard CSV quoting). An empty tags field is a track without tags; each other entry must
  be a valid tag. Count = number of tracks carrying the tag; track_tags weight = 1.0.
'auto' picks sqlite from the file's magic bytes, csv from a .csv suffix, otherwise unique_tags
when the first non-empty line has a tab, else lines.

Tag text is kept as given except: NFC normalisation, surrounding whitespace stripped, inner
whitespace runs collapsed to one space and (by default, `casefold=True`) casefolding. MSD tags
are already lowercase, so this only merges variants such as 'Rock' / 'rock'.

Bad input raises `IngestError` naming the file and line (for SQLite: table and rowid), or with
`skip_bad` is skipped and counted: invalid UTF-8, missing tab, bad count, empty tag, NUL byte,
a tag longer than `max_len` code points, a SQLite file without the expected tables. Duplicate
tags (after normalisation) are not errors: their counts are summed and they are counted as
merged. Every run reports read = kept + merged + rejected (rows: lines, CSV tag entries, or
rows of the SQLite `tags` table), and the same for track links when the input has them.
tag_id is the order of first appearance.
"""
from __future__ import annotations

import argparse
import csv
import io
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from tagfold.pipeline.tags.vocab import normalize_tag

FORMATS = ("auto", "unique_tags", "sqlite", "lines", "csv")
SQLITE_MAGIC = b"SQLite format 3\x00"
MSD_TABLES = {"tids": ("tid",), "tags": ("tag",), "tid_tag": ("tid", "tag", "val")}
# Reject details kept in memory / in the report; the counts are always exact.
MAX_REJECT_DETAILS = 10_000

TAGS_SCHEMA = pa.schema([("tag_id", pa.int32()), ("tag", pa.string()), ("count", pa.int64())])
TRACK_TAGS_SCHEMA = pa.schema([("track_id", pa.string()), ("tag_id", pa.int32()), ("weight", pa.float32())])


class IngestError(ValueError):
    """Bad tag input; the message names the file and line (or table and rowid)."""


@dataclass(frozen=True)
class IngestConfig:
    format: str = "auto"
    skip_bad: bool = False
    max_len: int = 255
    casefold: bool = True
    csv_tag_separator: str = ";"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.max_len < 1:
            raise ValueError(f"max_len={self.max_len}: expected a positive number of characters")


class Reject(NamedTuple):
    line: int  # 1-based line; for SQLite the rowid in the table named in `reason`
    reason: str


@dataclass
class IngestReport:
    source: str
    format: str
    read: int = 0
    kept: int = 0
    merged: int = 0
    rejected: int = 0
    links_read: int = 0
    links_kept: int = 0
    links_merged: int = 0
    links_rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.source} ({self.format}): rows read {self.read:,}, kept {self.kept:,}, "
                f"merged {self.merged:,}, rejected {self.rejected:,}")
        if self.links_read:
            text += (f"; track links read {self.links_read:,}, kept {self.links_kept:,}, "
                     f"merged {self.links_merged:,}, rejected {self.links_rejected:,}")
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rejects"] = [list(r) for r in self.rejects]
        return d


@dataclass
class IngestResult:
    tags: pa.Table
    track_tags: pa.Table | None
    report: IngestReport
    config: IngestConfig


class _Collector:
    """Accumulates tags (first-appearance ids, summed counts) and applies the bad-input policy."""

    def __init__(self, path: Path, fmt: str, config: IngestConfig):
        self.path, self.config = path, config
        self.report = IngestReport(str(path), fmt)
        self.ids: dict[str, int] = {}
        self.counts: list[int] = []

    def note(self, line: int, reason: str, where: str | None = None) -> None:
        """Raise for a bad row, or with skip_bad keep its details (the caller counts it)."""
        where = where or f"{self.path}:{line}"
        if not self.config.skip_bad:
            raise IngestError(f"{where}: {reason} (pass skip_bad / --skip-bad to skip and count such rows)")
        if len(self.report.rejects) < MAX_REJECT_DETAILS:
            self.report.rejects.append(Reject(line, reason))

    def bad(self, line: int, reason: str, where: str | None = None, link: bool = False) -> None:
        self.note(line, reason, where)
        if link:
            self.report.links_rejected += 1
        else:
            self.report.rejected += 1

    def clean(self, raw: str) -> tuple[str | None, str]:
        """(normalised tag, '') or (None, why it is rejected)."""
        if "\0" in raw:
            return None, "NUL byte in tag"
        tag = normalize_tag(raw, self.config.casefold)
        if not tag:
            return None, "empty tag"
        if len(tag) > self.config.max_len:
            return None, f"tag of {len(tag):,} characters exceeds max_len={self.config.max_len}"
        return tag, ""

    def add(self, tag: str, count: int) -> int:
        tag_id = self.ids.get(tag)
        if tag_id is None:
            tag_id = self.ids[tag] = len(self.counts)
            self.counts.append(count)
            self.report.kept += 1
        else:
            self.counts[tag_id] += count
            self.report.merged += 1
        return tag_id

    def tags_table(self) -> pa.Table:
        return pa.table({
            "tag_id": pa.array(np.arange(len(self.counts), dtype=np.int32)),
            "tag": pa.array(list(self.ids), pa.string()),
            "count": pa.array(self.counts, pa.int64()),
        }, schema=TAGS_SCHEMA)


# ---------------------------------------------------------------- text formats

def _text_lines(path: Path, col: _Collector) -> list[str | None]:
    """The file's lines (split on '\\n' only, so line numbers match editors); None for a line
    that is not valid UTF-8 (already reported)."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        lines: list[str | None] = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        # Slow path only for broken files: find every bad line to name it.
        lines = []
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                col.report.read += 1
                col.bad(lineno, f"invalid UTF-8 at byte {e.start} of the line ({e.reason})")
                lines.append(None)
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return lines


def _read_unique_tags(path: Path, col: _Collector) -> None:
    for lineno, line in enumerate(_text_lines(path, col), start=1):
        if line is None:
            continue
        col.report.read += 1
        raw, tab, count_text = line.rpartition("\t")
        if not tab:
            col.bad(lineno, "missing tab: expected 'tag<TAB>count'")
            continue
        try:
            count = int(count_text)
        except ValueError:
            count = -1
        if count < 0:
            col.bad(lineno, f"count {count_text.strip()[:40]!r} is not a non-negative integer")
            continue
        tag, why = col.clean(raw)
        if tag is None:
            col.bad(lineno, why)
            continue
        col.add(tag, count)


def _read_lines(path: Path, col: _Collector) -> None:
    for lineno, line in enumerate(_text_lines(path, col), start=1):
        if line is None:
            continue
        col.report.read += 1
        tag, why = col.clean(line)
        if tag is None:
            col.bad(lineno, why)
            continue
        col.add(tag, 1)


class _Links:
    """(track, tag_id, weight) triples -> track_tags table, duplicate pairs merged (max weight)."""

    def __init__(self, report: IngestReport):
        self.report = report
        self.track_index: dict[str, int] = {}
        self.track: list[int] = []
        self.tag: list[int] = []
        self.weight: list[float] = []

    def table(self, track_ids: list[str] | None = None,
              track=None, tag=None, weight=None) -> pa.Table:
        track = np.asarray(self.track if track is None else track, dtype=np.int64)
        tag = np.asarray(self.tag if tag is None else tag, dtype=np.int64)
        weight = np.asarray(self.weight if weight is None else weight, dtype=np.float32)
        if track_ids is None:
            track_ids = list(self.track_index)
        n_tags = int(tag.max()) + 1 if len(tag) else 1
        key = track * n_tags + tag
        order = np.argsort(key, kind="stable")
        key, weight = key[order], weight[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(first)
        best = np.maximum.reduceat(weight, starts) if len(starts) else weight[:0]
        self.report.links_kept = len(starts)
        self.report.links_merged = len(key) - len(starts)
        ukey = key[starts]
        track_col = pa.array(np.asarray(track_ids, dtype=object)[ukey // n_tags].tolist()
                             if len(ukey) else [], pa.string())
        return pa.table({"track_id": track_col,
                         "tag_id": pa.array((ukey % n_tags).astype(np.int32)),
                         "weight": pa.array(best.astype(np.float32))}, schema=TRACK_TAGS_SCHEMA)


def _read_csv(path: Path, col: _Collector) -> pa.Table:
    links = _Links(col.report)
    sep = col.config.csv_tag_separator
    lines = _text_lines(path, col)
    # Broken lines were reported by _text_lines; give csv the rest without shifting line numbers.
    text = "\n".join("" if line is None else line for line in lines)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != ["track_id", "tags"]:
        raise IngestError(f"{path}:1: expected the header 'track_id,tags', got {header!r}")
    for row in reader:
        lineno = reader.line_num
        if lines[lineno - 1] is None or row == []:
            continue  # invalid UTF-8 (counted) / blank line (no data)
        if len(row) != 2:
            col.report.read += 1
            col.bad(lineno, f"expected 2 fields 'track_id,tags', got {len(row)}")
            continue
        track_id, field_text = row[0].strip(), row[1]
        if not track_id or "\0" in track_id:
            col.report.read += 1
            col.bad(lineno, "empty track_id" if not track_id else "NUL byte in track_id")
            continue
        if not field_text.strip():
            continue  # a track without tags
        track = links.track_index.setdefault(track_id, len(links.track_index))
        for entry in field_text.split(sep):
            col.report.read += 1
            col.report.links_read += 1
            tag, why = col.clean(entry)
            if tag is None:
                col.bad(lineno, why)
                col.report.links_rejected += 1
                continue
            tag_id = col.add(tag, 0)
            links.track.append(track)
            links.tag.append(tag_id)
            links.weight.append(1.0)
    table = links.table()
    # count = number of tracks carrying the tag (after merging a tag repeated on one track)
    col.counts = np.bincount(table["tag_id"].to_numpy(), minlength=len(col.counts)).tolist()
    return table


# ---------------------------------------------------------------- SQLite (lastfm_tags.db)

def _read_sqlite(path: Path, col: _Collector) -> pa.Table | None:
    try:
        con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise IngestError(f"{path}: cannot open as SQLite ({e})") from None
    con.text_factory = bytes  # decode ourselves, to name the row holding invalid UTF-8
    try:
        try:
            names = {r[0].decode() for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise IngestError(f"{path}: not a SQLite database ({e})") from None
        missing = [t for t in MSD_TABLES if t not in names]
        if missing:
            raise IngestError(
                f"{path}: SQLite database lacks table(s) {', '.join(missing)}; expected the MSD "
                "lastfm_tags.db schema tids(tid), tags(tag), tid_tag(tid, tag, val)")
        for table, columns in MSD_TABLES.items():
            have = {r[1].decode() for r in con.execute(f"PRAGMA table_info({table})")}
            lacking = [c for c in columns if c not in have]
            if lacking:
                raise IngestError(f"{path}: table {table} lacks column(s) {', '.join(lacking)}; "
                                  f"expected {table}({', '.join(columns)})")
        return _read_sqlite_rows(path, con, col)
    finally:
        con.close()


def _decode_cell(value, what: str) -> tuple[str | None, str]:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), ""
        except UnicodeDecodeError as e:
            return None, f"invalid UTF-8 in {what} at byte {e.start} ({e.reason})"
    return None, f"{what} is {type(value).__name__ if value is not None else 'NULL'}, expected text"


def _read_sqlite_rows(path: Path, con: sqlite3.Connection, col: _Collector) -> pa.Table | None:
    from tqdm import tqdm

    # tags: rowid -> tag_id (or -1 when rejected)
    tag_rowids, tag_ids = [], []
    for rowid, value in con.execute("SELECT rowid, tag FROM tags ORDER BY rowid"):
        col.report.read += 1
        where = f"{path}: table tags, rowid {rowid}"
        text, why = _decode_cell(value, "tag")
        tag = None
        if text is not None:
            tag, why = col.clean(text)
        tag_rowids.append(rowid)
        if tag is None:
            col.bad(rowid, f"table tags: {why}", where)
            tag_ids.append(-1)
        else:
            tag_ids.append(col.add(tag, 0))
    tid_rowids, track_ids = [], []
    for rowid, value in con.execute("SELECT rowid, tid FROM tids ORDER BY rowid"):
        text, why = _decode_cell(value, "tid")
        if text is not None and (not text.strip() or "\0" in text):
            text, why = None, "empty track id" if not text.strip() else "NUL byte in track id"
        if text is None:
            # Not a tag row, so not in read/kept; each of its links is rejected (and counted) below.
            col.note(rowid, f"table tids: {why}", f"{path}: table tids, rowid {rowid}")
        tid_rowids.append(rowid)
        track_ids.append(text)

    n_links = con.execute("SELECT count(*) FROM tid_tag").fetchone()[0]
    dtype = [("rowid", "i8"), ("tid", "i8"), ("tag", "i8"), ("val", "f8")]
    parts = []
    cur = con.execute("SELECT rowid, tid, tag, val FROM tid_tag ORDER BY rowid")
    with tqdm(total=n_links, desc="tid_tag rows", unit="row", file=sys.stderr,
              disable=n_links < 1_000_000) as bar:
        while rows := cur.fetchmany(200_000):
            try:
                parts.append(np.array(rows, dtype=dtype))
            except (TypeError, ValueError):
                parts.append(_checked_link_rows(path, rows, col, dtype))
            bar.update(len(rows))
    links = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    col.report.links_read = n_links
    if n_links == 0:
        return None

    def lookup(rowids, targets, values):
        rowids = np.asarray(rowids, dtype=np.int64)
        pos = np.searchsorted(rowids, values)
        pos = np.minimum(pos, max(len(rowids) - 1, 0))
        found = (rowids[pos] == values) if len(rowids) else np.zeros(len(values), bool)
        return np.where(found, np.asarray(targets, dtype=np.int64)[pos] if len(rowids) else -1, -2)

    tag_of = lookup(tag_rowids, tag_ids, links["tag"])          # -2 dangling, -1 rejected tag
    bad_tid = np.array([t is None for t in track_ids], dtype=bool)
    track_of = lookup(tid_rowids, np.arange(len(tid_rowids)), links["tid"])
    track_bad = np.zeros(len(links), dtype=bool)
    ok_track = track_of >= 0
    track_bad[ok_track] = bad_tid[track_of[ok_track]]
    bad_val = ~np.isfinite(links["val"])
    problems = [
        (tag_of == -2, lambda i: f"table tid_tag: tag rowid {links['tag'][i]} is not in table tags"),
        (track_of == -2, lambda i: f"table tid_tag: tid rowid {links['tid'][i]} is not in table tids"),
        (tag_of == -1, lambda i: f"table tid_tag: links to rejected tag (tags rowid {links['tag'][i]})"),
        (track_bad, lambda i: f"table tid_tag: links to rejected track (tids rowid {links['tid'][i]})"),
        (bad_val, lambda i: "table tid_tag: val is not a finite number"),
    ]
    rejected = np.zeros(len(links), dtype=bool)
    for mask, why in problems:
        for i in np.flatnonzero(mask & ~rejected):
            col.bad(int(links["rowid"][i]), why(i), f"{path}: table tid_tag, rowid {links['rowid'][i]}", link=True)
        rejected |= mask
    keep = ~rejected
    out = _Links(col.report).table([t if t is not None else "" for t in track_ids],
                                   track_of[keep], tag_of[keep], links["val"][keep])
    col.counts = np.bincount(out["tag_id"].to_numpy(), minlength=len(col.counts)).tolist()
    return out


def _checked_link_rows(path: Path, rows, col: _Collector, dtype) -> np.ndarray:
    """Row-by-row conversion for a chunk holding a non-numeric cell, to name that row."""
    good = []
    for rowid, tid, tag, val in rows:
        if val is None:
            val = float("nan")  # reported as a bad val with the other link checks
        if not all(isinstance(x, int) for x in (tid, tag)) or not isinstance(val, (int, float)):
            col.bad(rowid, f"table tid_tag: non-numeric cell (tid={tid!r}, tag={tag!r}, val={val!r})",
                    f"{path}: table tid_tag, rowid {rowid}", link=True)
            continue
        good.append((rowid, tid, tag, float(val)))
    return np.array(good, dtype=dtype)


# ---------------------------------------------------------------- entry points

def detect_format(path: str | Path) -> str:
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if path.suffix.lower() == ".csv":
        return "csv"
    for line in head.split(b"\n"):
        if line.strip():
            return "unique_tags" if b"\t" in line else "lines"
    return "lines"


def read_tags(path: str | Path, fmt: str = "auto", *, skip_bad: bool = False, max_len: int = 255,
              casefold: bool = True) -> IngestResult:
    """Read one tag file (see the module docstring for formats and rules)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        # an empty file is a failed download or copy far more often than a real empty list
        raise IngestError(f"{path}: empty file (0 bytes); expected tags in one of the formats {', '.join(FORMATS[1:])}")
    resolved = detect_format(path) if fmt == "auto" else fmt
    config = IngestConfig(fmt, skip_bad, max_len, casefold)
    col = _Collector(path, resolved, config)
    track_tags = None
    if resolved == "unique_tags":
        _read_unique_tags(path, col)
    elif resolved == "lines":
        _read_lines(path, col)
    elif resolved == "csv":
        track_tags = _read_csv(path, col)
    else:
        track_tags = _read_sqlite(path, col)
    report = col.report
    assert report.read == report.kept + report.merged + report.rejected, report
    assert report.links_read == report.links_kept + report.links_merged + report.links_rejected, report
    return IngestResult(col.tags_table(), track_tags, report, config)


def ingest(path: str | Path, out_dir: str | Path, fmt: str = "auto", *, skip_bad: bool = False,
           max_len: int = 255, casefold: bool = True) -> IngestResult:
    """read_tags, then write tags.parquet, track_tags.parquet (when the input links tracks) and
    ingest_report.json into out_dir, each atomically, with the config and counts saved."""
    import json

    from tagfold.pipeline.io import write_parquet, write_text

    result = read_tags(path, fmt, skip_bad=skip_bad, max_len=max_len, casefold=casefold)
    out_dir = Path(out_dir)
    counts = {k: v for k, v in result.report.to_dict().items() if k != "rejects"}
    meta = {"ingest": asdict(result.config), "report": counts}
    write_parquet(result.tags, out_dir / "tags.parquet", meta)
    stale = out_dir / "track_tags.parquet"
    if result.track_tags is not None:
        write_parquet(result.track_tags, stale, meta)
    elif stale.exists():
        # A track_tags.parquet from an earlier input would pair with the wrong tag ids.
        stale.unlink()
        print(f"removed stale {stale} (this input has no track links)", file=sys.stderr)
    write_text(json.dumps({**meta, "rejects": [list(r) for r in result.report.rejects]}, indent=1),
               out_dir / "ingest_report.json")
    return result


def main(argv: list[str]) -> int:
    from tagfold.pipeline.io import output_lock

    p = argparse.ArgumentParser(prog="tagfold ingest", description=__doc__.split("\n")[0])
    p.add_argument("input", help="lastfm_unique_tags.txt, lastfm_tags.db, a one-tag-per-line file, or a track_id,tags CSV")
    p.add_argument("--out", required=True, help="output directory (tags.parquet, track_tags.parquet, ingest_report.json)")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows instead of stopping at the first")
    p.add_argument("--max-len", type=int, default=255, help="longest accepted tag, in characters (default 255)")
    p.add_argument("--keep-case", action="store_true", help="do not casefold tags")
    args = p.parse_args(argv)
    try:
        with output_lock(args.out):
            result = ingest(args.input, args.out, args.format, skip_bad=args.skip_bad,
                            max_len=args.max_len, casefold=not args.keep_case)
    except (IngestError, FileNotFoundError) as e:
        print(f"tagfold ingest: {e}", file=sys.stderr)
        return 1
    print(result.report.summary())
    for r in result.report.rejects[:10]:
        print(f"  rejected line {r.line}: {r.reason}")
    if result.report.rejected + result.report.links_rejected > 10:
        print(f"  ... all listed in {Path(args.out) / 'ingest_report.json'}")
    return 0
