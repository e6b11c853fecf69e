"""manifest.parquet: one row per audio track (track_id, path, duration, sample_rate, channels,
artist, split). Builders: a folder + CSV of per-track tags (Emotify), the MSD layout
(7digital previews under a root, id lists), and the demo generator (see pipeline/audio/demo.py).

A file whose header cannot be read is still listed (duration NaN, sample_rate 0, channels 0)
so that audio prep rejects it with a reason instead of it vanishing here.

Paths are stored relative to the data root (saved as `root` in the file's config) so a dataset can
move; a path that leads outside the root (absolute elsewhere, or `../`) is an error naming the
track unless `allow_outside_root` is set, because a manifest is often shared between machines and
a stray absolute path silently reads someone else's files or fails on the next machine.

Track ids name output files (`prep-audio` writes `flac/<track_id>.flac`), so they are checked when
the manifest is built: 1 to 128 characters from `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`
(no `/`, no `..`, no whitespace or newline, nothing a shell or a file system reads specially).
Anything else, and a path that cannot be resolved (a symlink loop), is an error naming the CSV line
and track, or with `--skip-bad` a rejected row, listed with its reason and counted."""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tagfold.pipeline.io import write_parquet
from tagfold.pipeline.audio.splits import SPLITS, assign_splits
from tagfold.pipeline.errors import UserError

SCHEMA = pa.schema([
    ("track_id", pa.string()), ("path", pa.string()), ("duration", pa.float64()),
    ("sample_rate", pa.int32()), ("channels", pa.int16()), ("artist", pa.string()),
    ("split", pa.string()),
])


@dataclasses.dataclass(frozen=True)
class ManifestConfig:
    source: str
    root: str
    ratios: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    artist_aware: bool = False
    allow_outside_root: bool = False
    split_method: str = "hash"   # hash | rank (pipeline/audio/splits.py)


class OutsideRoot(UserError):
    """A manifest path leads outside the data root."""


class BadTrack(UserError):
    """A manifest row that cannot be used: an invalid track id or an unresolvable path."""


TRACK_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
TRACK_ID_RULE = "1-128 characters from A-Z a-z 0-9 . _ -, not starting with . or -"


def _regular_input(path) -> None:
    """A CSV or id list the user named must be a regular file: a FIFO would block the read forever."""
    from tagfold.pipeline.decode import Rejected, check_regular_file
    try:
        check_regular_file(path)
    except Rejected as e:
        code, _, detail = str(e).partition(": ")
        raise UserError(f"{path}: cannot be read as a list of tracks: {code.replace('_', ' ')}"
                        + (f" ({detail})" if detail else "")) from None


def check_track_id(track_id) -> str:
    """`track_id` if it is safe to use as a file name (TRACK_ID_RULE), else BadTrack."""
    if not isinstance(track_id, str) or not TRACK_ID_RE.fullmatch(track_id):
        raise BadTrack(f"track id {track_id!r} is not allowed ({TRACK_ID_RULE})")
    return track_id


def resolve_track_path(root, path, track_id, allow_outside_root=False) -> Path:
    """Absolute path of a manifest row; OutsideRoot unless it stays under `root` (or allowed);
    BadTrack when it cannot be resolved (a symlink loop)."""
    root = Path(root).resolve()
    try:
        full = (root / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
    except (RuntimeError, OSError) as e:   # Python raises RuntimeError('Symlink loop ...')
        raise BadTrack(f"track {track_id!r}: path {path!r} cannot be resolved: symlink_loop ({e})") from None
    if not allow_outside_root and not full.is_relative_to(root):
        raise OutsideRoot(f"track {track_id!r}: path {path!r} resolves to {full}, outside the data root {root} "
                          "(pass --allow-outside-root to permit it)")
    return full


def probe(path: Path) -> tuple[float, int, int]:
    """(duration s, sample rate, channels) from the file header; (nan, 0, 0) if unreadable (prep
    rejects it later with the reason). Never opens a FIFO or device: that could block forever."""
    from tagfold.pipeline.decode import Rejected, probe as probe_header
    try:
        info = probe_header(path)
    except Rejected:
        return math.nan, 0, 0
    return info.frames / info.samplerate, info.samplerate, info.channels


def make_table(track_ids, paths, artists, root: Path, ratios=(0.8, 0.1, 0.1), seed=0,
               allow_outside_root=False, splits=None, split_method="hash") -> pa.Table:
    """The manifest table; probes each file's header. `splits` given = kept as is (e.g. MSD's)."""
    track_ids = [check_track_id(str(t)) for t in track_ids]
    if len(set(track_ids)) != len(track_ids):
        dup = next(t for t, c in Counter(track_ids).items() if c > 1)
        raise UserError(f"duplicate track_id {dup!r}: track ids must be unique")
    probes = [probe(resolve_track_path(root, p, t, allow_outside_root)) for t, p in zip(track_ids, paths)]
    if splits is None:
        splits = assign_splits(track_ids, artists, ratios, seed, method=split_method)
    return pa.table({
        "track_id": list(track_ids), "path": [str(p) for p in paths],
        "duration": [p[0] for p in probes], "sample_rate": [p[1] for p in probes],
        "channels": [p[2] for p in probes], "artist": list(artists) if artists is not None else [None] * len(track_ids),
        "split": list(splits),
    }, schema=SCHEMA)


def build_manifest_from_folder(audio_dir, tags_csv, *, id_column="track_id", file_column="file",
                               artist_column=None, ratios=(0.8, 0.1, 0.1), seed=0,
                               allow_outside_root=False, split_method="hash", skip_bad=False,
                               rejected: list | None = None) -> pa.Table:
    """Tracks listed in `tags_csv` (CSV order); paths relative to the CSV's folder (the data root).

    Rows whose file column is empty or absent are looked up as `<audio_dir>/<track_id>.*`. With
    `artist_column`, splits are artist-aware (one artist never spans two splits). A row with an
    invalid track id or an unresolvable path is an error naming its line, or with `skip_bad` left
    out and appended to `rejected` as ("FILE:LINE", track id, reason)."""
    tags_csv, audio_dir = Path(tags_csv), Path(audio_dir)
    root = tags_csv.parent
    ids, paths, artists = [], [], []
    _regular_input(tags_csv)
    with open(tags_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for col in (id_column, artist_column):
            if col and col not in (reader.fieldnames or []):
                raise UserError(f"{tags_csv}: no column {col!r} (columns: {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            tid = (row[id_column] or "").strip()
            if not tid:
                raise ValueError(f"{tags_csv}:{line}: empty {id_column}")
            try:
                check_track_id(tid)
                rel = (row.get(file_column) or "").strip()
                if not rel:
                    found = sorted(audio_dir.glob(f"{tid}.*"))
                    if not found:
                        raise UserError(f"{tags_csv}:{line}: no audio file for track {tid} in {audio_dir}")
                    rel = os.path.relpath(resolve_track_path(audio_dir, found[0].name, tid, True), root.resolve())
                resolve_track_path(root, rel, tid, allow_outside_root)
            except BadTrack as e:
                if not skip_bad:
                    raise BadTrack(f"{tags_csv}:{line}: {e} (--skip-bad leaves such rows out, counted)") from None
                if rejected is not None:
                    rejected.append((f"{tags_csv}:{line}", tid, str(e)))
                continue
            except OutsideRoot as e:
                raise OutsideRoot(f"{tags_csv}:{line}: {e}") from None
            ids.append(tid)
            paths.append(rel)
            artists.append(((row.get(artist_column) or "").strip() or None) if artist_column else None)
    return make_table(ids, paths, artists if artist_column else None, root, ratios, seed, allow_outside_root,
                      split_method=split_method)


def msd_preview_path(track_id: str) -> str:
    """7digital preview layout used by the MSD tagging literature: A/B/C/TRABC...clip.mp3."""
    return f"{track_id[2]}/{track_id[3]}/{track_id[4]}/{track_id}.clip.mp3"


def build_manifest_msd(root, id_lists: dict[str, str | Path], *, artists: dict[str, str] | None = None,
                       path_fn=msd_preview_path, allow_outside_root=False, skip_bad=False,
                       rejected: list | None = None) -> pa.Table:
    """MSD layout: `id_lists` maps split name -> file of MSD track ids (e.g. valid_x_msd_id.txt).
    The literature's split is kept as given (not re-hashed), so results compare with published ones."""
    root = Path(root)
    ids, paths, splits = [], [], []
    for split, list_path in id_lists.items():
        if split not in SPLITS:
            raise UserError(f"{list_path}: split must be one of {SPLITS}, got {split!r}")
        _regular_input(list_path)
        for line, tid in enumerate(Path(list_path).read_text("utf-8").splitlines(), start=1):
            tid = tid.strip()
            if not tid:
                continue
            if not (tid.startswith("TR") and len(tid) == 18):
                raise UserError(f"{list_path}:{line}: {tid!r} is not an MSD track id (TR + 16 chars)")
            ids.append(tid)
            paths.append(path_fn(tid))
            splits.append(split)
    return make_table(ids, paths, [(artists or {}).get(t) for t in ids], root,
                      allow_outside_root=allow_outside_root, splits=splits)


def read_manifest(path) -> pa.Table:
    return pq.read_table(path).cast(SCHEMA)


def main(argv: list[str]) -> int:
    from tagfold.pipeline.options import SEED, parser

    ap = parser(
        "tagfold manifest", __doc__,
        epilog="examples:\n  tagfold manifest --csv ../shared/data/emotify/tracks.csv --out m.parquet\n"
               "  tagfold manifest --msd-root previews/ --msd-ids valid=valid_x_msd_id.txt "
               "test=test_x_msd_id.txt --out m.parquet\n"
               "  (the demo dataset writes its own manifest: tagfold demo-data --out DIR)")
    ap.add_argument("--csv", help="per-track CSV (track_id, file, ...); its folder is the data root")
    ap.add_argument("--folder", help="audio folder for rows without a file column (default: the CSV's folder)")
    ap.add_argument("--artist-column", help="CSV column with the artist: artist-aware splits")
    ap.add_argument("--msd-root", help="root of the 7digital previews (A/B/C/TR...clip.mp3)")
    ap.add_argument("--msd-ids", nargs="+", metavar="SPLIT=FILE", help="e.g. valid=valid_x_msd_id.txt")
    ap.add_argument("--ratios", default="0.8,0.1,0.1", help="train,valid,test fractions (sum 1)")
    ap.add_argument("--seed", type=SEED, default=0, help="seed of the split assignment")
    ap.add_argument("--split-method", choices=["hash", "rank"], default="hash",
                    help="hash: stable as the collection grows; rank: exact ratios for a fixed set")
    ap.add_argument("--allow-outside-root", action="store_true", help="permit paths outside the data root")
    ap.add_argument("--skip-bad", action="store_true",
                    help="leave out rows with an invalid track id or an unresolvable path (listed and counted) "
                         "instead of stopping")
    ap.add_argument("--out", required=True, help="the manifest.parquet to write")
    a = ap.parse_args(argv)
    rejected: list = []
    try:
        ratios = tuple(float(x) for x in a.ratios.split(","))
    except ValueError:
        ap.error(f"--ratios must be 3 comma-separated numbers, got {a.ratios!r}")
    if a.csv:
        table = build_manifest_from_folder(a.folder or Path(a.csv).parent, a.csv, artist_column=a.artist_column,
                                           ratios=ratios, seed=a.seed, allow_outside_root=a.allow_outside_root,
                                           split_method=a.split_method, skip_bad=a.skip_bad,
                                           rejected=rejected)
        cfg = ManifestConfig("folder", str(Path(a.csv).parent.resolve()), ratios, a.seed,
                             bool(a.artist_column), a.allow_outside_root, a.split_method)
    elif a.msd_root:
        if not a.msd_ids or any("=" not in s for s in a.msd_ids):
            ap.error("--msd-root needs --msd-ids SPLIT=FILE [SPLIT=FILE ...]")
        lists = dict(s.split("=", 1) for s in a.msd_ids)
        table = build_manifest_msd(a.msd_root, lists, allow_outside_root=a.allow_outside_root,
                                   skip_bad=a.skip_bad, rejected=rejected)
        cfg = ManifestConfig("msd", str(Path(a.msd_root).resolve()), ratios, a.seed,
                             allow_outside_root=a.allow_outside_root)
    else:
        ap.error("give --csv (folder + CSV) or --msd-root with --msd-ids")
    write_parquet(table, a.out, cfg)
    for where, _, reason in rejected:
        print(f"tagfold manifest: {where}: rejected: {reason}", file=sys.stderr)
    unreadable = sum(1 for s in table.column("sample_rate").to_pylist() if s == 0)
    counts = Counter(table.column("split").to_pylist())
    print(f"manifest: read {table.num_rows + len(rejected)} = kept {table.num_rows} + rejected {len(rejected)}; "
          f"{table.num_rows} tracks ({unreadable} with unreadable headers; "
          f"train {counts['train']}, valid {counts['valid']}, test {counts['test']}) -> {a.out}", file=sys.stderr)
    return 0
