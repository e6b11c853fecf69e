"""Tag ingest: the Million Song Dataset's Last.fm tag files -> tags.parquet (+ track_tags.parquet).

Formats (`fmt`, or 'auto'):
- ``unique_tags``: `lastfm_unique_tags.txt`, one `tag<TAB>count` per line (split at the last tab,
  count a non-negative integer).
- ``sqlite``: `lastfm_tags.db`, tables `tids(tid)`, `tags(tag)`, `tid_tag(tid, tag, val)` where
  tid_tag.tid / tid_tag.tag are rowids into tids / tags and val (0-100) is Last.fm's tag weight.
  A tag's count is the number of tracks carrying it; every link becomes a track_tags row.
- ``lines``: one tag per line; a tag's count is the number of lines holding it.
- ``csv``: header `track_id,tags`, then one track per line with its tags joined by ';'
  (standard CSV quoting, but a quoted field must close on its own line: an unbalanced quote
  is a bad row, never a field that swallows the rows after it). An empty tags field is a track without tags; each other entry must
  be a valid tag. Count = number of tracks carrying the tag; track_tags weight = 1.0.
'auto' picks sqlite from the file's magic bytes, csv from a .csv suffix, otherwise unique_tags
when the first non-empty line has a tab, else lines.

Tag text is kept as given except (tagfold.pipeline.tags.vocab.normalize_tag): Unicode format
characters (category Cf: zero-width space, bidi marks, soft hyphen) removed, NFKC normalisation,
surrounding whitespace stripped, inner whitespace runs collapsed to one space and (by default,
`casefold=True`) casefolding. MSD tags are already lowercase, so this only merges variants such
as 'Rock' / 'rock' / 'ro<ZWSP>ck'. Every raw text that differs from its normalised tag is kept
in the aliases table (raw -> tag_id, aliases.parquet), so the raw form stays findable.

Bad input raises `IngestError` naming the file and line (for SQLite: table and rowid), or with
`skip_bad` is skipped and counted: invalid UTF-8, missing tab, bad count, empty tag, NUL byte,
a tag longer than `max_len` code points, a SQLite `val` outside 0..100 or not a number, a
CSV line with an unbalanced quote, a SQLite file without the expected tables. Duplicate
tags (after normalisation) are not errors: their counts are summed and they are counted as
merged. Every run reports read = kept + merged + rejected (rows: lines, CSV tag entries, or
rows of the SQLite `tags` table), and the same for track links when the input has them.
tag_id is the order of first appearance.
"""
from __future__ import annotations

import csv
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from tagfold.pipeline.tags.vocab import normalize_tag, normalize_tags
from tagfold.pipeline.errors import UserError

FORMATS = ("auto", "unique_tags", "sqlite", "lines", "csv")
SQLITE_MAGIC = b"SQLite format 3\x00"
MSD_TABLES = {"tids": ("tid",), "tags": ("tag",), "tid_tag": ("tid", "tag", "val")}
VAL_RANGE = (0, 100)  # Last.fm's tag weight: 100 for a track's top tag
# Reject details kept in memory / in the report; the counts are always exact.
MAX_REJECT_DETAILS = 10_000

TAGS_SCHEMA = pa.schema([("tag_id", pa.int32()), ("tag", pa.string()), ("count", pa.int64())])
# Raw text -> the tag it was normalised into, for every raw text that differs from its tag.
ALIASES_SCHEMA = pa.schema([("alias", pa.string()), ("tag_id", pa.int32())])
TRACK_TAGS_SCHEMA = pa.schema([("track_id", pa.string()), ("tag_id", pa.int32()), ("weight", pa.float32())])
# track_tags is written this many rows at a time: Parquet's default row group, so the file is
# the one a whole table would give.
ROW_GROUP_ROWS = 1 << 20


MAX_COUNT = int(np.iinfo(np.int64).max)   # tags.parquet stores counts as int64
# Reasons for a rejected row, one text each for the per-row readers and the bulk ones.
NUL_TAG = "NUL byte in tag"
EMPTY_TAG = "empty tag"
MISSING_TAB = "missing tab: expected 'tag<TAB>count'"


def _too_long(length: int, max_len: int) -> str:
    return f"tag of {length:,} characters exceeds max_len={max_len}"


def _bad_count(text: str) -> str:
    return f"count {text.strip()[:40]!r} is not a non-negative integer"


class IngestError(UserError):
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
    links: TrackLinks | None  # where the input links tracks to tags
    report: IngestReport
    config: IngestConfig
    aliases: pa.Table  # raw text -> tag_id where the raw text differs from its tag

    @property
    def track_tags(self) -> pa.Table | None:
        """The track links as one table, made on each call (ingest writes them part by part)."""
        return None if self.links is None else self.links.table()


class _Collector:
    """Accumulates tags (first-appearance ids, summed counts) and applies the bad-input policy."""

    def __init__(self, path: Path, fmt: str, config: IngestConfig):
        self.path, self.config = path, config
        self.report = IngestReport(str(path), fmt)
        self.ids: dict[str, int] = {}
        self.counts: list[int] = []
        self.aliases: dict[str, str] = {}  # raw text -> normalised tag, where they differ
        # (tags, aliases table) where clean_all took the whole tag column instead of ids / aliases
        self.bulk: tuple[pa.Array, pa.Table] | None = None

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
            return None, NUL_TAG
        tag = normalize_tag(raw, self.config.casefold)
        if not tag:
            return None, EMPTY_TAG
        if len(tag) > self.config.max_len:
            return None, _too_long(len(tag), self.config.max_len)
        if tag != raw:
            raw = raw[:-1] if raw.endswith("\r") else raw  # a CRLF line end is not part of the text
            if tag != raw:
                self.aliases.setdefault(raw, tag)
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

    def add_all(self, tags: list[str | None]) -> list[int]:
        """add(tag, 0) for each tag in order, in bulk; -1 for None (a rejected row)."""
        ids, before = self.ids, len(self.ids)
        tag_ids = [-1 if tag is None else ids.setdefault(tag, len(ids)) for tag in tags]
        added = len(ids) - before
        self.counts += [0] * added
        self.report.kept += added
        self.report.merged += len(tags) - tags.count(None) - added
        return tag_ids

    def clean_each(self, raws: list, clean=None) -> tuple[list[int], list[tuple[int, str]]]:
        """clean_all a row at a time, with `clean` (default: self.clean) for each raw value:
        the reference for clean_all."""
        cleaned = list(map(clean or self.clean, raws))
        rejected = [(i, why) for i, (tag, why) in enumerate(cleaned) if tag is None]
        return self.add_all([tag for tag, _ in cleaned]), rejected

    def clean_all(self, raws: pa.Array) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """clean() and add_all() for a whole column of raw texts (a pyarrow string array) into
        this still empty collector, in bulk, with the same tags, ids, counts (0) and aliases:
        (each text's tag_id, -1 where rejected; (position, why) of each rejected text, in order,
        for the caller to report)."""
        import pyarrow.compute as pc

        assert not self.ids and self.bulk is None, "clean_all takes the whole tag column"
        tags = normalize_tags(raws, self.config.casefold)
        length = pc.utf8_length(tags).to_numpy()
        # what clean() checks, in its order: the first that applies is the reason
        why = np.zeros(len(raws), np.int8)
        why[length > self.config.max_len] = 3
        why[length == 0] = 2
        characters = raws.buffers()[2]
        if characters is not None and not np.frombuffer(characters, np.uint8).all():  # a NUL somewhere: where?
            why[pc.match_substring(raws, "\0").to_numpy(zero_copy_only=False)] = 1
        rejected = [(int(i), NUL_TAG if why[i] == 1 else EMPTY_TAG if why[i] == 2 else
                     _too_long(int(length[i]), self.config.max_len))
                    for i in np.flatnonzero(why)]
        good = why == 0
        kept = pc.dictionary_encode(tags.filter(good) if rejected else tags)  # ids by first appearance
        tag_ids = np.full(len(raws), -1, np.int64)
        tag_ids[good] = kept.indices.to_numpy()
        self.counts = np.zeros(len(kept.dictionary), np.int64)
        self.report.kept += len(kept.dictionary)
        self.report.merged += int(good.sum()) - len(kept.dictionary)
        # aliases: a kept raw text that differs from its tag (a CRLF line end is not part of
        # the text), each raw text once, at its first appearance
        at = np.flatnonzero(good & ~pc.equal(tags, raws).to_numpy(zero_copy_only=False))
        alias = raws.take(at)
        if pc.any(pc.ends_with(alias, "\r")).as_py():
            alias = pc.replace_substring_regex(alias, "\r$", "")
            differ = pc.not_equal(alias, tags.take(at)).to_numpy(zero_copy_only=False)
            alias, at = alias.filter(differ), at[differ]
        alias = pc.dictionary_encode(alias)
        first = np.unique(alias.indices.to_numpy(), return_index=True)[1]
        self.bulk = kept.dictionary.cast(pa.string()), pa.table({
            "alias": alias.dictionary.cast(pa.string()),
            "tag_id": pa.array(tag_ids[at[first]].astype(np.int32)),
        }, schema=ALIASES_SCHEMA)
        return tag_ids, rejected

    def tags_table(self) -> pa.Table:
        if isinstance(self.counts, list) and self.counts and max(self.counts) > MAX_COUNT:
            # Only the per-line readers keep Python ints; the bulk ones hand such files to them.
            tag = next(t for t, i in self.ids.items() if self.counts[i] > MAX_COUNT)
            raise IngestError(f"{self.path}: the counts of tag {tag!r} add up to more than the largest "
                              f"count, {MAX_COUNT:,}")
        return pa.table({
            "tag_id": pa.array(np.arange(len(self.counts), dtype=np.int32)),
            "tag": pa.array(list(self.ids), pa.string()) if self.bulk is None else self.bulk[0],
            "count": pa.array(self.counts, pa.int64()),
        }, schema=TAGS_SCHEMA)

    def aliases_table(self) -> pa.Table:
        if self.bulk is not None:
            return self.bulk[1]
        return pa.table({
            "alias": pa.array(list(self.aliases), pa.string()),
            "tag_id": pa.array([self.ids[t] for t in self.aliases.values()], pa.int32()),
        }, schema=ALIASES_SCHEMA)


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


def _read_unique_tags_in_bulk(path: Path, col: _Collector) -> bool:
    """_read_unique_tags over the whole file at once (Collector.clean_all); False, having read
    nothing, for a file that is not valid UTF-8 or whose counts could overflow int64."""
    import pyarrow.compute as pc

    lines = _lines_array(path)
    if lines is None:
        return False
    parts = pc.split_pattern(lines, "\t", max_splits=1, reverse=True)  # at the last tab
    has_tab = pc.equal(pc.list_value_length(parts), 2).to_numpy(zero_copy_only=False)
    at = np.flatnonzero(has_tab)  # the line of each line with a tab
    parts = parts.filter(has_tab)
    raws, count_text = pc.list_element(parts, 0), pc.list_element(parts, 1)
    digits = pc.match_substring_regex(count_text, r"^[0-9]{1,18}$").to_numpy(zero_copy_only=False)
    counts = np.full(len(at), -1, np.int64)
    counts[digits] = count_text.filter(digits).cast(pa.int64()).to_numpy()
    odd = np.flatnonzero(~digits)  # int() decides: ' 7', '+7', '1_000', other scripts' digits
    bad_counts = []
    for j, text in zip(odd.tolist(), count_text.take(odd).to_pylist()):
        try:
            counts[j] = max(int(text), -1)
        except ValueError:
            pass
        except OverflowError:
            return False
        if counts[j] < 0:
            bad_counts.append((int(at[j]), _bad_count(text)))
    if len(counts) and int(counts.max()) > MAX_COUNT // len(counts):
        return False  # their sums could overflow
    col.report.read += len(lines)
    ok = np.flatnonzero(counts >= 0)
    tag_ids, rejected = col.clean_all(raws.take(ok))
    rejects = [(int(i), MISSING_TAB) for i in np.flatnonzero(~has_tab)]
    rejects = sorted(rejects + bad_counts + [(int(at[ok[k]]), why) for k, why in rejected])  # a line has one reason
    for i, why in rejects:
        col.bad(i + 1, why)
    good = tag_ids >= 0
    np.add.at(col.counts, tag_ids[good], counts[ok][good])
    return True


def _read_unique_tags(path: Path, col: _Collector) -> None:
    """The reference reader, a line at a time (_read_unique_tags_in_bulk gives the same result)."""
    for lineno, line in enumerate(_text_lines(path, col), start=1):
        if line is None:
            continue
        col.report.read += 1
        raw, tab, count_text = line.rpartition("\t")
        if not tab:
            col.bad(lineno, MISSING_TAB)
            continue
        try:
            count = int(count_text)
        except ValueError:
            count = -1
        if count < 0:
            col.bad(lineno, _bad_count(count_text))
            continue
        if count > MAX_COUNT:
            col.bad(lineno, f"count {count_text.strip()[:40]!r} exceeds the largest count, {MAX_COUNT:,}")
            continue
        tag, why = col.clean(raw)
        if tag is None:
            col.bad(lineno, why)
            continue
        col.add(tag, count)


def _lines_array(path: Path) -> pa.Array | None:
    """The file's lines as _text_lines splits them, as one Arrow array (no Python string per
    line), or None when the file is not valid UTF-8 (_text_lines then names each bad line)."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    if data and not data.endswith(b"\n"):
        ends = np.append(ends, len(data))  # the last line has no newline
    text = data.replace(b"\n", b"")
    kind, width = (pa.string(), np.int32) if len(text) < 2**31 else (pa.large_string(), np.int64)
    offsets = np.zeros(len(ends) + 1, width)
    offsets[1:] = ends - np.arange(len(ends))  # each line's end in the text without its newlines
    lines = pa.Array.from_buffers(kind, len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(text)])
    try:
        lines.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        return None
    return lines


def _read_lines_in_bulk(path: Path, col: _Collector) -> bool:
    """_read_lines over the whole file at once (Collector.clean_all); False, having read
    nothing, for a file that is not valid UTF-8."""
    lines = _lines_array(path)
    if lines is None:
        return False
    col.report.read += len(lines)
    tag_ids, rejected = col.clean_all(lines)
    for i, why in rejected:
        col.bad(i + 1, why)
    col.counts = np.bincount(tag_ids[tag_ids >= 0], minlength=len(col.counts))
    return True


def _read_lines(path: Path, col: _Collector) -> None:
    """The reference reader, a line at a time (_read_lines_in_bulk gives the same result)."""
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
    """(track, tag_id, weight) triples (CSV) -> TrackLinks."""

    def __init__(self, report: IngestReport):
        self.report = report
        self.track_index: dict[str, int] = {}
        self.track: list[int] | np.ndarray = []
        self.tag: list[int] | np.ndarray = []
        self.weight: list[float] | np.ndarray = []

    def merged(self) -> TrackLinks:
        n_tags = int(np.max(self.tag, initial=0)) + 1
        key = np.asarray(self.track, dtype=np.int64) * n_tags + np.asarray(self.tag, dtype=np.int64)
        links = _KeyedLinks(key, np.asarray(self.weight, np.float32), n_tags,
                            pa.array(list(self.track_index), pa.string()))
        return links.merged(self.report)


class _KeyedLinks:
    """Links as key = track * n_tags + tag_id (int64: one sort orders them by track, then tag)
    with their weights -> TrackLinks, duplicate pairs merged (max weight).

    It owns its arrays and drops each one as soon as what replaces it exists: at MSD scale
    (9.1M links) each is 37-73 MB, and a caller's reference would keep it alive."""

    def __init__(self, key: np.ndarray, weight: np.ndarray, n_tags: int, track_ids: pa.Array):
        self.key, self.weight, self.n_tags, self.track_ids = key, weight, n_tags, track_ids

    def merged(self, report: IngestReport) -> TrackLinks:
        order = np.argsort(self.key)  # links with equal keys merge into one row: their order is moot
        self.weight = self.weight[order]
        del order
        self.key.sort()  # in place: the order of self.key[order], without a copy
        n_links = len(self.key)
        first = np.ones(n_links, dtype=bool)
        first[1:] = self.key[1:] != self.key[:-1]
        if not first.all():
            starts = np.flatnonzero(first)
            self.weight = np.maximum.reduceat(self.weight, starts)
            self.key = self.key[starts]
            del starts
        del first
        report.links_kept = len(self.key)
        report.links_merged = n_links - len(self.key)
        track, tag_id = np.empty(len(self.key), np.int32), np.empty(len(self.key), np.int32)
        for start in range(0, len(self.key), ROW_GROUP_ROWS):  # no int64 temporary of every link
            end = start + ROW_GROUP_ROWS
            track[start:end], tag_id[start:end] = np.divmod(self.key[start:end], self.n_tags)
        self.key = None
        weight, self.weight = self.weight, None
        return TrackLinks(track, tag_id, weight, self.track_ids)


class TrackLinks:
    """track_tags: sorted by (track, tag_id), each pair once with its largest weight, held as
    NumPy columns and the track ids that `track` indexes: 12 bytes a link, where a table's
    track id strings alone take ~25 (0.2 GB at MSD scale), so the table is made part by part."""

    def __init__(self, track: np.ndarray, tag_id: np.ndarray, weight: np.ndarray, track_ids: pa.Array):
        self.track, self.tag_id, self.weight, self.track_ids = track, tag_id, weight, track_ids

    def __len__(self) -> int:
        return len(self.tag_id)

    def parts(self) -> pa.RecordBatchReader:
        """The table, ROW_GROUP_ROWS rows at a time."""
        def batches():
            for start in range(0, len(self), ROW_GROUP_ROWS):
                end = start + ROW_GROUP_ROWS
                # Arrow gathers the strings: no Python string object per link
                yield pa.record_batch({"track_id": self.track_ids.take(pa.array(self.track[start:end])),
                                       "tag_id": pa.array(self.tag_id[start:end]),
                                       "weight": pa.array(self.weight[start:end])}, schema=TRACK_TAGS_SCHEMA)

        return pa.RecordBatchReader.from_batches(TRACK_TAGS_SCHEMA, batches())

    def table(self) -> pa.Table:
        return self.parts().read_all()


def _csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV line (standard quoting), or None when a quote is left open or
    stray text follows a closing quote. Each physical line is one record: a quoted field may
    not run over a line break, so one stray quote cannot swallow the rows after it."""
    line = line[:-1] if line.endswith("\r") else line
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error:
        return None


def _read_csv(path: Path, col: _Collector) -> TrackLinks:
    links = _Links(col.report)
    sep = col.config.csv_tag_separator
    lines = _text_lines(path, col)  # broken lines were reported there and are None
    header = _csv_fields(lines[0]) if lines and lines[0] is not None else None
    if header is None or [h.strip().lower() for h in header] != ["track_id", "tags"]:
        raise IngestError(f"{path}:1: expected the header 'track_id,tags', got {header!r}")
    entries: list[str] = []  # every tag entry of every good row, in order
    entry_line: list[int] = []
    row_rejects: list[tuple[int, str, bool]] = []  # (line, why, False) of rows rejected whole
    for lineno, line in enumerate(lines[1:], start=2):
        if line is None or not line.strip("\r"):
            continue  # invalid UTF-8 (counted) / blank line (no data)
        row = _csv_fields(line)
        if row is None:
            row_rejects.append((lineno, "unbalanced quote: a quoted field must close on its own line, "
                                        "followed by ',' or the line's end", False))
            continue
        if len(row) != 2:
            row_rejects.append((lineno, f"expected 2 fields 'track_id,tags', got {len(row)}", False))
            continue
        track_id, field_text = row[0].strip(), row[1]
        if not track_id or "\0" in track_id:
            row_rejects.append((lineno, "empty track_id" if not track_id else "NUL byte in track_id", False))
            continue
        if not field_text.strip():
            continue  # a track without tags
        track = links.track_index.setdefault(track_id, len(links.track_index))
        n = len(entries)
        entries += field_text.split(sep)
        entry_line += [lineno] * (len(entries) - n)
        links.track += [track] * (len(entries) - n)
    col.report.read += len(row_rejects) + len(entries)
    col.report.links_read += len(entries)
    tag_ids, rejected = col.clean_all(pa.array(entries, pa.string()))
    del entries
    # every reject in line order, as a row-by-row reading reports them (a line holds either
    # one rejected row or its rejected entries)
    rejects = [(entry_line[i], why, True) for i, why in rejected]
    if row_rejects:
        rejects = sorted(row_rejects + rejects, key=lambda r: r[0])
    for lineno, why, is_entry in rejects:
        col.bad(lineno, why)
        col.report.links_rejected += is_entry
    good = np.asarray(tag_ids) >= 0
    links.track = np.asarray(links.track, np.int64)[good]
    links.tag = np.asarray(tag_ids, np.int64)[good]
    links.weight = np.ones(len(links.tag), np.float32)
    merged = links.merged()
    # count = number of tracks carrying the tag (after merging a tag repeated on one track)
    col.counts = np.bincount(merged.tag_id, minlength=len(col.counts)).tolist()
    return merged


# ---------------------------------------------------------------- SQLite (lastfm_tags.db)

def _read_sqlite(path: Path, col: _Collector) -> TrackLinks | None:
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


def _text_rows(con: sqlite3.Connection, query: str) -> list[tuple]:
    """(rowid, value) rows with text decoded by SQLite itself (fast); where some cell is not
    valid UTF-8, all as bytes instead, for _decode_cell to name the row."""
    con.text_factory = str
    try:
        return con.execute(query).fetchall()
    except sqlite3.OperationalError:  # "Could not decode to UTF-8"
        con.text_factory = bytes
        return con.execute(query).fetchall()
    finally:
        con.text_factory = bytes


def _read_sqlite_rows(path: Path, con: sqlite3.Connection, col: _Collector) -> TrackLinks | None:
    import queue
    import threading
    from concurrent.futures import ThreadPoolExecutor

    n_links = con.execute("SELECT count(*) FROM tid_tag").fetchone()[0]
    col.report.links_read = n_links
    first, last = (con.execute(f"SELECT {f}(rowid) FROM tid_tag").fetchone()[0] for f in ("min", "max"))
    # Rowids without a gap, as in every real file: a row's rowid is the first one plus the
    # row's position, so the bulk read leaves that column out (a quarter less to read and hold).
    first_rowid = first if n_links and last - first + 1 == n_links else None
    # The links stream in bulk (C, without the GIL) while the tags are cleaned here; then each
    # batch is checked and packed into 12 bytes per link (read whole, as 4 x int64, the 9.1M
    # links of the MSD took 0.6 GB at once).
    batches: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        bulk = pool.submit(_links_in_bulk, path, batches.put, stop, first_rowid is None) if n_links else None
        try:
            tag_of, track_of, track_ids = _read_sqlite_tables(path, con, col)
            if bulk is None:
                return None
            links = _LinkChecks(path, col, tag_of, track_of, n_links, first_rowid)
            while (batch := batches.get()) is not None:
                links.add(batch)
            if bulk.result() != n_links:
                # the driver is missing or refused a cell: start over row by row, to name the row
                links = None
                links = _LinkChecks(path, col, tag_of, track_of, n_links, first_rowid)
                for batch in _links_row_by_row(path, con, col, n_links):
                    links.add(batch)
        finally:
            stop.set()
    merged = links.merged(track_ids)
    col.counts = np.bincount(merged.tag_id, minlength=len(col.counts)).tolist()
    return merged


def _read_sqlite_tables(path: Path, con: sqlite3.Connection, col: _Collector) -> tuple:
    """Tables tags and tids: (tag rowid -> tag_id, tid rowid -> track, track ids), where a
    rejected row maps to -1 and its track id is ''. Tags cleaned in bulk, track ids by list
    comprehensions: this runs beside the links' bulk read, which buffers until it is done."""
    rows = _text_rows(con, "SELECT rowid, tag FROM tags ORDER BY rowid")
    col.report.read += len(rows)
    values = [value for _, value in rows]
    if set(map(type, values)) <= {str}:  # SQLite decoded every cell: all cleaned at once
        tag_ids, rejected = col.clean_all(pa.array(values, pa.string()))
    else:  # some cell is not text or not UTF-8: a row at a time, to name it
        def clean_cell(value) -> tuple[str | None, str]:
            if type(value) is str:
                return col.clean(value)
            text, why = _decode_cell(value, "tag")
            return (None, why) if text is None else col.clean(text)

        tag_ids, rejected = col.clean_each(values, clean_cell)
    del values
    for i, why in rejected:
        rowid = rows[i][0]
        col.bad(rowid, f"table tags: {why}", f"{path}: table tags, rowid {rowid}")
    tags = _RowidLookup([rowid for rowid, _ in rows], tag_ids)
    del rows

    rows = _text_rows(con, "SELECT rowid, tid FROM tids ORDER BY rowid")
    track_ids = [value for _, value in rows]
    tracks = np.arange(len(rows))
    suspects = [i for i, value in enumerate(track_ids) if type(value) is not str or not value.strip() or "\0" in value]
    for i in suspects:
        rowid, value = rows[i]
        text, why = (value, "") if type(value) is str else _decode_cell(value, "tid")
        if text is not None and text.strip() and "\0" not in text:
            track_ids[i] = text  # SQLite gave it as bytes (another cell is not UTF-8); it is fine
            continue
        if text is not None:
            why = "empty track id" if not text.strip() else "NUL byte in track id"
        # Not a tag row, so not in read/kept; each of its links is rejected (and counted) with the links.
        col.note(rowid, f"table tids: {why}", f"{path}: table tids, rowid {rowid}")
        track_ids[i], tracks[i] = "", -1
    return tags, _RowidLookup([rowid for rowid, _ in rows], tracks), pa.array(track_ids, pa.string())


class _RowidLookup:
    """A table's rowids -> a target per row (-1: the row was rejected); -2 for a rowid the
    table lacks (a dangling link)."""

    def __init__(self, rowids, targets):
        rowids, targets = np.asarray(rowids, np.int64), np.asarray(targets, np.int64)  # ascending rowids
        self.top = int(rowids[-1]) if len(rowids) else -1
        self.dense = bool(len(rowids)) and rowids[0] >= 0 and self.top <= 4 * len(rowids) + 1_000_000
        if self.dense:
            # rowids are (nearly) dense, as in every real file: one gather from a table by
            # rowid, 10x faster than a binary search per link
            self.table = np.full(self.top + 2, -2, dtype=np.int64)
            self.table[rowids] = targets
        else:
            self.rowids, self.targets = rowids, targets

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.dense:
            return self.table[np.where((values >= 0) & (values <= self.top), values, self.top + 1)]
        if not len(self.rowids):
            return np.full(len(values), -2, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.rowids, values), len(self.rowids) - 1)
        return np.where(self.rowids[pos] == values, self.targets[pos], -2)


# What can be wrong with a tid_tag row, in the order each is reported (a row counts once, for
# the first that applies): kind -> reason from (tid, tag, val) of the row.
LINK_PROBLEMS = (
    lambda tid, tag, val: f"table tid_tag: tag rowid {tag} is not in table tags",
    lambda tid, tag, val: f"table tid_tag: tid rowid {tid} is not in table tids",
    lambda tid, tag, val: f"table tid_tag: links to rejected tag (tags rowid {tag})",
    lambda tid, tag, val: f"table tid_tag: links to rejected track (tids rowid {tid})",
    lambda tid, tag, val: "table tid_tag: val is not a finite number",
    lambda tid, tag, val: f"table tid_tag: val {val:g} is outside {VAL_RANGE[0]}..{VAL_RANGE[1]}",
)


class _LinkChecks:
    """tid_tag rows, batch by batch -> checked links. A good link is packed as key = track *
    n_tags + tag_id and its weight (float32); a bad one is set aside and reported when the links
    are merged: grouped by LINK_PROBLEMS, in rowid order within each."""

    def __init__(self, path: Path, col: _Collector, tag_of: _RowidLookup, track_of: _RowidLookup, n_links: int,
                 first_rowid: int | None):
        self.path, self.col, self.tag_of, self.track_of = path, col, tag_of, track_of
        self.n_tags = max(len(col.counts), 1)
        self.key = np.empty(n_links, dtype=np.int64)
        self.weight = np.empty(n_links, dtype=np.float32)
        self.n = 0  # links kept
        self.first_rowid, self.seen = first_rowid, 0  # a batch without rowids: first_rowid + position
        self.bad: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []  # (kind, columns) per batch

    def add(self, batch: dict[str, np.ndarray]) -> None:
        tag, track, val = self.tag_of(batch["tag"]), self.track_of(batch["tid"]), batch["val"]
        not_finite = ~np.isfinite(val)
        problems = (tag == -2, track == -2, tag == -1, track == -1, not_finite,
                    ~not_finite & ((val < VAL_RANGE[0]) | (val > VAL_RANGE[1])))
        kind = np.full(len(val), len(problems), dtype=np.int8)
        for k in reversed(range(len(problems))):
            kind[problems[k]] = k  # the first problem that applies wins
        bad = kind < len(problems)
        if bad.any():
            where = np.flatnonzero(bad)
            rows = {c: batch[c][where] for c in LINK_COLUMNS[1:]}
            rows["rowid"] = batch["rowid"][where] if "rowid" in batch else self.first_rowid + self.seen + where
            self.bad.append((kind[where], rows))
            good = ~bad
            tag, track, val = tag[good], track[good], val[good]
        end = self.n + len(val)
        key = self.key[self.n:end]
        np.multiply(track, self.n_tags, out=key)
        key += tag
        self.weight[self.n:end] = val
        self.n = end
        self.seen += len(kind)

    def merged(self, track_ids: pa.Array) -> TrackLinks:
        if self.bad:
            kind = np.concatenate([k for k, _ in self.bad])
            rows = {c: np.concatenate([b[c] for _, b in self.bad]) for c in LINK_COLUMNS}
            for i in np.argsort(kind, kind="stable"):
                rowid = rows["rowid"][i]
                self.col.bad(int(rowid), LINK_PROBLEMS[kind[i]](rows["tid"][i], rows["tag"][i], rows["val"][i]),
                             f"{self.path}: table tid_tag, rowid {rowid}", link=True)
        links = _KeyedLinks(self.key[:self.n], self.weight[:self.n], self.n_tags, track_ids)
        self.key = self.weight = None
        return links.merged(self.col.report)


LINK_COLUMNS = ("rowid", "tid", "tag", "val")


def _link_query(with_rowid: bool = True) -> str:
    return f"SELECT {', '.join(LINK_COLUMNS if with_rowid else LINK_COLUMNS[1:])} FROM tid_tag ORDER BY rowid"


# Rows per batch: few enough batches that NumPy's cost per call is nil, small enough (8 MB)
# that the batches read ahead of the checks stay small.
LINK_BATCH_ROWS = 1 << 18


def _links_in_bulk(path: Path, put, stop, with_rowid: bool) -> int | None:
    """Sends tid_tag's rows to put() in batches of NumPy columns (LINK_COLUMNS, rowid only if
    `with_rowid`), read by the ADBC SQLite driver straight into Arrow (about 5x faster than
    sqlite3 rows), then None. Returns
    the number of rows sent, or None when stopped, when the driver is missing or when it refuses
    a cell (ADBC refuses a text cell in an integer column): the row-by-row reader then names
    the row."""
    sent = 0
    try:
        import adbc_driver_sqlite.dbapi as adbc
        from adbc_driver_sqlite import StatementOptions

        with adbc.connect(path.resolve().as_uri() + "?mode=ro") as con, con.cursor() as cur:
            cur.adbc_statement.set_options(**{StatementOptions.BATCH_ROWS.value: str(LINK_BATCH_ROWS)})
            cur.execute(_link_query(with_rowid))
            for batch in cur.fetch_record_batch():
                columns = _numeric_columns(batch)
                if columns is None or stop.is_set():
                    return None
                put(columns)
                sent += batch.num_rows
    except Exception:  # noqa: BLE001 - any refusal (ImportError included): the careful reader explains it
        return None
    finally:
        put(None)
    return sent


def _numeric_columns(batch: pa.RecordBatch) -> dict[str, np.ndarray] | None:
    """A batch's columns as int64 (rowid if there, tid, tag) and float64 (val; NULL -> NaN,
    rejected with the other bad weights), or None when a column holds anything else."""
    ids = {c: batch.column(c) for c in LINK_COLUMNS[:3] if c in batch.schema.names}
    val = batch.column("val")
    if any(not pa.types.is_integer(a.type) or a.null_count for a in ids.values()) or not (
            pa.types.is_floating(val.type) or pa.types.is_integer(val.type)):
        return None
    out = {c: a.to_numpy().astype(np.int64, copy=False) for c, a in ids.items()}
    val = val.cast(pa.float64())
    out["val"] = (val.fill_null(float("nan")) if val.null_count else val).to_numpy()
    return out


def _links_row_by_row(path: Path, con: sqlite3.Connection, col: _Collector, n_links: int):
    """tid_tag's rows through sqlite3, in batches as _links_in_bulk sends them; a row holding a
    non-numeric cell is rejected here, naming it."""
    from tqdm import tqdm

    dtype = [("rowid", "i8"), ("tid", "i8"), ("tag", "i8"), ("val", "f8")]
    cur = con.execute(_link_query())
    with tqdm(total=n_links, desc="tid_tag rows", unit="row", file=sys.stderr,
              disable=n_links < 1_000_000) as bar:
        while rows := cur.fetchmany(200_000):
            try:
                links = np.array(rows, dtype=dtype)
            except (TypeError, ValueError):
                links = _checked_link_rows(path, rows, col, dtype)
            bar.update(len(rows))
            yield {c: links[c] for c in LINK_COLUMNS}


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
    if path.is_dir():
        raise IngestError(f"{path}: is a folder; give a tag file (unique_tags txt, SQLite, one per line or CSV)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        # an empty file is a failed download or copy far more often than a real empty list
        raise IngestError(f"{path}: empty file (0 bytes); expected tags in one of the formats {', '.join(FORMATS[1:])}")
    resolved = detect_format(path) if fmt == "auto" else fmt
    config = IngestConfig(fmt, skip_bad, max_len, casefold)
    col = _Collector(path, resolved, config)
    links = None
    if resolved == "unique_tags":
        if not _read_unique_tags_in_bulk(path, col):
            _read_unique_tags(path, col)
    elif resolved == "lines":
        if not _read_lines_in_bulk(path, col):
            _read_lines(path, col)
    elif resolved == "csv":
        links = _read_csv(path, col)
    else:
        links = _read_sqlite(path, col)
    report = col.report
    assert report.read == report.kept + report.merged + report.rejected, report
    assert report.links_read == report.links_kept + report.links_merged + report.links_rejected, report
    return IngestResult(col.tags_table(), links, report, config, col.aliases_table())


def ingest(path: str | Path, out_dir: str | Path, fmt: str = "auto", *, skip_bad: bool = False,
           max_len: int = 255, casefold: bool = True) -> IngestResult:
    """read_tags, then write tags.parquet, aliases.parquet, track_tags.parquet (when the input
    links tracks) and ingest_report.json into out_dir, each atomically, with the config and counts saved."""
    import json

    from tagfold.pipeline.io import write_parquet, write_text

    result = read_tags(path, fmt, skip_bad=skip_bad, max_len=max_len, casefold=casefold)
    out_dir = Path(out_dir)
    counts = {k: v for k, v in result.report.to_dict().items() if k != "rejects"}
    meta = {"ingest": asdict(result.config), "report": counts}
    write_parquet(result.tags, out_dir / "tags.parquet", meta)
    write_parquet(result.aliases, out_dir / "aliases.parquet", meta)
    stale = out_dir / "track_tags.parquet"
    if result.links is not None:
        write_parquet(result.links.parts(), stale, meta)
    elif stale.exists():
        # A track_tags.parquet from an earlier input would pair with the wrong tag ids.
        stale.unlink()
        print(f"removed stale {stale} (this input has no track links)", file=sys.stderr)
    write_text(json.dumps({**meta, "rejects": [list(r) for r in result.report.rejects]}, indent=1),
               out_dir / "ingest_report.json")
    return result


def main(argv: list[str]) -> int:
    from tagfold.pipeline.io import output_lock
    from tagfold.pipeline.options import COUNT, parser

    p = parser("tagfold ingest", __doc__.split("\n")[0])
    p.add_argument("input", help="lastfm_unique_tags.txt, lastfm_tags.db, a one-tag-per-line file, or a track_id,tags CSV")
    p.add_argument("--out", required=True, help="output directory (tags.parquet, aliases.parquet, track_tags.parquet, ingest_report.json)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input format; auto guesses from the file")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows instead of stopping at the first")
    p.add_argument("--max-len", type=COUNT, default=255, help="longest accepted tag, in characters")
    p.add_argument("--keep-case", action="store_true", help="do not casefold tags")
    args = p.parse_args(argv)
    with output_lock(args.out):
        from tagfold.pipeline.io import start_run
        start_run(args.out)   # new tags: the stages computed from earlier ones here are stale now
        result = ingest(args.input, args.out, args.format, skip_bad=args.skip_bad,
                        max_len=args.max_len, casefold=not args.keep_case)
    print(result.report.summary())
    for r in result.report.rejects[:10]:
        print(f"  rejected line {r.line}: {r.reason}")
    if result.report.rejected + result.report.links_rejected > 10:
        print(f"  ... all listed in {Path(args.out) / 'ingest_report.json'}")
    return 0
