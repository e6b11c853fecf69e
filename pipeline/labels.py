"""`tagfold labels`: per-track label matrices for the selected tags, one per stage.

    tagfold labels --manifest M --track-tags track_tags.parquet --tags tags.parquet \\
        --stage2 stage2.parquet --stage3 stage3.parquet --out DIR [--min-weight W]

A track is positive for a selected tag when one of its raw tags
- Stage I: is that tag (after lower-casing and trimming), the thesis's baseline;
- Stage II: maps to it by the rule collapse (stage2.parquet), or Stage I;
- Stage III: maps to it by the embedding collapse (stage3.parquet), or Stage II.
Each stage therefore only adds positives to the one before (the thesis's Stage III mapping is
Stage II's rows plus embedding rows). `--min-weight` keeps only (track, tag) pairs whose weight
(Last.fm's 0-100 `val`) is at least W.

Writes labels_stage{1,2,3}.parquet: track_id, split, then one uint8 column per selected tag in
selected order; every manifest track is a row, including tracks with no positive (counted).
Tagged tracks missing from the manifest have no audio: they are counted and reported, not kept.

Human-labelled audio (Emotify) has no raw tags and no stages; `--from-csv` reads its per-track CSV:

    tagfold labels --manifest M --from-csv ../shared/data/emotify/tracks.csv --out DIR [--threshold 0.3]

Tags: one per genre value (one-hot, category genre) and one per GEMS emotion (category emotion),
positive when at least `--threshold` of the track's listeners chose it. Each Emotify listener picks
up to three of nine emotions (the fractions sum to ~1.9 per track), so a fraction of 0.3 is already
well above the ~0.21 average. 0.3 keeps every emotion usable on 196 tracks: positive rates run from
8% (amazement, 15 tracks) to 42% (calmness), 4 tracks have no emotion; at 0.4 amazement falls to 4
tracks (about 1 per test split) and 15 tracks lose every emotion; at 0.2 eight of the nine emotions
are positive for 38-55% of tracks, so the tags say little.
Writes labels.parquet (the format above), selected_tags.csv (tag,category: the tag list, for
`--selected`) and labels_summary.json with, per split, positive rates and the chance baseline:
the PR-AUC random scores get in expectation (exact, `expected_random_ap`; ROC-AUC's is 0.5).
Every manifest track must have a CSV row (an unlabelled track would read as all-negative); CSV
rows without a manifest track are counted as without audio.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tagfold.pipeline.io import check_same_run, start_run, write_parquet, write_text
from tagfold.pipeline.selected import SelectedTags, load_selected
from tagfold.pipeline.constants import ROMAN
from tagfold.pipeline.errors import UserError
from tagfold.pipeline.labels_schema import labels_table
from tagfold.pipeline.options import Range

WEIGHT_COLUMNS = ("weight", "val", "count")


@dataclass(frozen=True)
class LabelsConfig:
    manifest: str
    track_tags: str
    tags: str
    stage2: str
    stage3: str
    out: str
    min_weight: float | None = None
    selected: str | None = None        # None = the thesis's 50 tags (package data)
    selected_tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


def _read(path: str, columns: list[str], optional: tuple[str, ...] = (), **options) -> pa.Table:
    """`columns` of a Parquet file (each must be there), and those of `optional` it has."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    names = pq.read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(names)}")
    return pq.read_table(path, columns=[*columns, *(c for c in optional if c in names)], **options)


def _mapping_pairs(path: str, sel: SelectedTags) -> tuple[np.ndarray, np.ndarray, int]:
    """(tag_id, selected index) pairs from a stage2/stage3 table; rows without target are skipped."""
    table = _read(path, ["tag_id", "target"])
    tag_ids = table.column("tag_id").to_numpy(zero_copy_only=False).astype(np.int64)
    targets = table.column("target").cast(pa.string())
    cols = pc.index_in(targets, value_set=pa.array(sel.tags, pa.string())).fill_null(-1)
    cols = cols.to_numpy(zero_copy_only=False).astype(np.int64)
    no_target = pc.fill_null(pc.equal(targets, ""), True).to_numpy(zero_copy_only=False)  # e.g. 'blocked' rules
    unknown = np.flatnonzero((cols < 0) & ~no_target)
    if len(unknown):
        row = int(unknown[0])
        raise UserError(f"{path}: row {row} (tag_id {tag_ids[row]}): target {targets[row].as_py()!r} "
                        f"is not one of the {len(sel)} selected tags")
    return tag_ids[~no_target], cols[~no_target], int(no_target.sum())


def _stage1_pairs(tags: pa.Table, sel: SelectedTags) -> tuple[np.ndarray, np.ndarray]:
    index = {t: i for i, t in enumerate(sel.tags)}
    ids = tags.column("tag_id").to_numpy(zero_copy_only=False).astype(np.int64)
    names = tags.column("tag").cast(pa.string())
    rows = []
    for start in range(0, len(names), 1 << 16):  # a slice of Python strings at a time, not 0.5M at once
        part = names.slice(start, 1 << 16).to_pylist()
        rows += [(ids[start + i], index[n.strip().lower()]) for i, n in enumerate(part)
                 if n and n.strip().lower() in index]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.asarray(rows, dtype=np.int64)
    return a[:, 0], a[:, 1]


LINKS_PER_STEP = 1 << 20   # links looked up at once in label_matrix: bounds its temporary arrays (8 MB each)


def label_matrix(track_rows: np.ndarray, tag_ids: np.ndarray, pair_tag: np.ndarray, pair_col: np.ndarray,
                 n_tracks: int, n_tags: int) -> np.ndarray:
    """Y[track, col] = 1 for every (track, tag_id) whose tag_id has a (tag_id, col) pair.

    Each tag's columns become a bit mask (a uint64 word per 64 columns) that each of its links
    ORs into its track's: nothing per (link, pair), which took ~0.7 GB at MSD scale (9.1M links)."""
    words = max(1, -(-n_tags // 64))
    track_bits = np.zeros((words, n_tracks), dtype=np.uint64)
    if pair_tag.size and tag_ids.size:
        tags, which = np.unique(pair_tag, return_inverse=True)
        masks = np.zeros((words, len(tags)), dtype=np.uint64)
        np.bitwise_or.at(masks, (pair_col // 64, which), np.left_shift(np.uint64(1), (pair_col % 64).astype(np.uint64)))
        lo, hi = int(min(tags[0], tag_ids.min())), int(max(tags[-1], tag_ids.max()))
        dense = hi - lo <= 4 * len(tags) + 1_000_000
        if dense:
            # Tag ids are small non-negative ints, as in every pipeline output: a link's mask is
            # one gather by tag id (10x faster than a binary search per link at 9.1M links).
            by_tag = np.zeros((words, hi - lo + 1), dtype=np.uint64)
            by_tag[:, tags - lo] = masks
        for start in range(0, len(tag_ids), LINKS_PER_STEP):
            step_tags, step_rows = tag_ids[start:start + LINKS_PER_STEP], track_rows[start:start + LINKS_PER_STEP]
            if dense:
                bits = by_tag[:, step_tags - lo]
            else:
                at = np.minimum(np.searchsorted(tags, step_tags), len(tags) - 1)
                bits = np.where(tags[at] == step_tags, masks[:, at], np.uint64(0))
            for word in range(words):
                hit = bits[word] != 0  # most links at MSD scale map to nothing
                np.bitwise_or.at(track_bits[word], step_rows[hit], bits[word][hit])
    unpacked = np.unpackbits(np.ascontiguousarray(track_bits.T, dtype="<u8").view(np.uint8), axis=1, bitorder="little")
    return np.ascontiguousarray(unpacked[:, :n_tags])


def _manifest_rows(track_id: pa.ChunkedArray, track_ids: pa.Array) -> tuple[np.ndarray, int]:
    """Each link's row in the manifest (int32; -1: its track is not there) and how many distinct
    tracks are not there.

    track_id comes dictionary-encoded (read_dictionary; a dictionary per row group): each
    distinct track id is looked up once, not once per link (9.1M strings, 0.3 GB at MSD scale)."""
    if not pa.types.is_dictionary(track_id.type):
        track_id = track_id.cast(pa.string()).dictionary_encode()  # a column Parquet did not store as strings
    dictionaries, chunks = [], []
    for chunk in track_id.chunks:
        if not dictionaries or not chunk.dictionary.equals(dictionaries[-1]):  # a row group's batches share one
            dictionaries.append(chunk.dictionary)
        chunks.append((len(dictionaries) - 1, chunk.indices))
    starts = np.cumsum([0] + [len(d) for d in dictionaries])
    values = pa.concat_arrays([d.cast(pa.string()) for d in dictionaries]) if dictionaries else pa.array([], pa.string())
    row_of_value = pc.index_in(values, value_set=track_ids).fill_null(-1).to_numpy(zero_copy_only=False)
    row_of_value = row_of_value.astype(np.int32)
    rows = np.empty(len(track_id), dtype=np.int32)
    absent, end = [], 0
    for d, indices in chunks:
        part = rows[end:end + len(indices)]
        end += len(indices)
        value = indices.drop_null().to_numpy().astype(np.int64) + starts[d]
        found = row_of_value[value]
        if indices.null_count:  # a link without a track id has no audio either
            part[:] = -1
            part[indices.is_valid().to_numpy(zero_copy_only=False)] = found
        else:
            part[:] = found
        absent.append(value[found < 0])
    absent_values = np.unique(np.concatenate(absent)) if absent else np.zeros(0, np.int64)
    return rows, pc.count_distinct(values.take(pa.array(absent_values))).as_py() if len(absent_values) else 0


def build_labels(cfg: LabelsConfig) -> dict:
    sel = load_selected(cfg.selected)
    manifest = _read(cfg.manifest, ["track_id", "split"])
    track_ids = manifest.column("track_id").cast(pa.string())
    if pc.count_distinct(track_ids).as_py() != len(track_ids):
        raise UserError(f"{cfg.manifest}: duplicate track_id values")
    # Only the columns used; the weights only for --min-weight.
    weights = WEIGHT_COLUMNS if cfg.min_weight is not None else ()
    tt = _read(cfg.track_tags, ["track_id", "tag_id"], weights, read_dictionary=["track_id"])
    tags = _read(cfg.tags, ["tag_id", "tag"])
    check_same_run([cfg.track_tags, cfg.tags, cfg.stage2, cfg.stage3])   # one pipeline run, never a mix

    n_links = tt.num_rows
    rows, tracks_without_audio = _manifest_rows(tt.column("track_id"), track_ids.combine_chunks())
    in_manifest = rows >= 0
    kept = in_manifest
    below = 0
    if cfg.min_weight is not None:
        weight_col = next((c for c in WEIGHT_COLUMNS if c in tt.column_names), None)
        if weight_col is None:
            raise UserError(f"{cfg.track_tags}: --min-weight needs a weight column ({', '.join(WEIGHT_COLUMNS)})")
        w = tt.column(weight_col).to_numpy(zero_copy_only=False).astype(float)
        low = np.nan_to_num(w, nan=-np.inf) < cfg.min_weight
        del w
        below = int((low & in_manifest).sum())
        kept = in_manifest & ~low
        del low
    tt = tt.drop_columns(["track_id"])
    tag_ids = tt.column("tag_id").to_numpy(zero_copy_only=False)
    del tt
    # Arrow's allocator keeps what reading the file freed (~0.15 GB at MSD scale) unless asked
    pa.default_memory_pool().release_unused()
    n_kept = int(kept.sum())
    if n_kept < n_links:  # copies only where rows are left out
        rows, tag_ids = rows[kept], tag_ids[kept]
    del kept

    cfg = LabelsConfig(**{**cfg.__dict__, "selected_tags": sel.tags, "categories": sel.categories})
    out = Path(cfg.out)
    summary = {
        "track_tag_rows_read": n_links,
        "track_tag_rows_kept": n_kept,
        "track_tag_rows_no_audio": int(n_links - in_manifest.sum()),
        "track_tag_rows_below_min_weight": below,
        "tracks_without_audio": tracks_without_audio,
        "tracks": len(track_ids),
    }
    del in_manifest
    pairs = [_stage1_pairs(tags, sel)]
    del tags
    s2_tag, s2_col, s2_none = _mapping_pairs(cfg.stage2, sel)
    s3_tag, s3_col, s3_none = _mapping_pairs(cfg.stage3, sel)
    pairs += [(s2_tag, s2_col), (s3_tag, s3_col)]
    summary["mapping_rows_without_target"] = {"stage2": s2_none, "stage3": s3_none}
    splits = manifest.column("split").cast(pa.string())
    # One stage after another, each written before the next: a stage adds its pairs' positives to the one before.
    y = np.zeros((len(track_ids), len(sel)), dtype=np.uint8)
    for stage, (pair_tag, pair_col) in enumerate(pairs, start=1):
        y |= label_matrix(rows, tag_ids, pair_tag, pair_col, len(track_ids), len(sel))
        write_parquet(labels_table(track_ids, splits, y, sel.tags), out / f"labels_stage{stage}.parquet", cfg)
        summary[f"stage{stage}"] = {
            "positives": int(y.sum()),
            "tracks_without_positive": int((y.sum(axis=1) == 0).sum()),
            "positives_per_tag": {t: int(v) for t, v in zip(sel.tags, y.sum(axis=0))},
        }
    write_text(json.dumps(summary, indent=2) + "\n", out / "labels_summary.json")
    return summary


# ----------------------------------------------------------------------------- labels from a per-track CSV

EMOTIFY_EMOTIONS = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power",
                    "joyful_activation", "tension", "sadness")
DEFAULT_THRESHOLD = 0.3     # why 0.3: see the module docstring
THRESHOLD = Range(float, lo=0, hi=1, open_lo=True)


@dataclass(frozen=True)
class CsvLabelsConfig:
    manifest: str
    csv: str
    out: str
    threshold: float = DEFAULT_THRESHOLD
    genre_column: str = "genre"
    emotion_columns: tuple[str, ...] = EMOTIFY_EMOTIONS
    selected_tags: tuple[str, ...] = ()     # filled in: what was written
    categories: tuple[str, ...] = ()


def read_track_csv(path: str | Path, genre_column: str = "genre",
                   emotion_columns: tuple[str, ...] = EMOTIFY_EMOTIONS) -> tuple[list[str], list[str], np.ndarray]:
    """(track ids, genres, emotion fractions float [n, len(emotion_columns)]) in CSV order.
    A bad row is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    ids, genres, fractions, seen = [], [], [], {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("track_id", genre_column, *emotion_columns) if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}:1: missing column(s) {', '.join(missing)}; "
                             f"has {', '.join(reader.fieldnames or [])}")
        for row in reader:
            line = reader.line_num      # physical line: DictReader skips blank lines
            if None in row or any(row[c] is None for c in reader.fieldnames):
                raise UserError(f"{path}:{line}: expected {len(reader.fieldnames)} fields")
            tid, genre = row["track_id"].strip(), row[genre_column].strip()
            if not tid:
                raise UserError(f"{path}:{line}: empty track_id")
            if tid in seen:
                raise UserError(f"{path}:{line}: duplicate track_id {tid!r} (first on line {seen[tid]})")
            if not genre:
                raise UserError(f"{path}:{line}: track {tid!r}: empty {genre_column}")
            values = []
            for c in emotion_columns:
                try:
                    v = float(row[c])
                except ValueError:
                    raise UserError(f"{path}:{line}: track {tid!r}: {c} = {row[c]!r} is not a number") from None
                if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                    raise UserError(f"{path}:{line}: track {tid!r}: {c} = {row[c]!r} is not a fraction in [0, 1]")
                values.append(v)
            seen[tid] = line
            ids.append(tid)
            genres.append(genre)
            fractions.append(values)
    return ids, genres, np.asarray(fractions, dtype=np.float64).reshape(len(ids), len(emotion_columns))


def expected_random_ap(n: int, r: int) -> float:
    """Expected average precision (PR-AUC) of uniformly random scores for n tracks with r positives.

    The k-th positive lands at rank j with probability C(j-1, k-1) C(n-j, r-k) / C(n, r) and adds
    precision k/j; AP is the mean over the r positives. On small splits this is well above the
    positive rate r/n (3 of 39: 0.15, not 0.08), so it, not the rate, is the chance baseline."""
    if not 0 < r <= n:
        return float("nan")
    from scipy.special import gammaln

    def log_comb(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    total = 0.0
    for k in range(1, r + 1):
        j = np.arange(k, n - r + k + 1, dtype=np.float64)
        prob = np.exp(log_comb(j - 1, k - 1) + log_comb(n - j, r - k) - log_comb(float(n), float(r)))
        total += float((prob * k / j).sum())
    return total / r


def chance_baselines(y: np.ndarray, splits: np.ndarray, tags, categories) -> dict:
    """Per split: tracks, positives and positive rate per tag, and the PR-AUC random scores get in
    expectation, per tag and as the macro mean over the tags the metrics can score there (at least
    one positive and one negative), overall and per category. Random ROC-AUC is 0.5 throughout."""
    out = {}
    for split in sorted(set(splits.tolist())):
        ys = y[splits == split]
        n, pos = len(ys), ys.sum(axis=0)
        defined = (pos > 0) & (pos < n)
        ap = np.array([expected_random_ap(n, int(r)) if d else np.nan for r, d in zip(pos, defined)])
        cats = np.asarray(categories)
        out[split] = {
            "tracks": int(n),
            "positives_per_tag": {t: int(v) for t, v in zip(tags, pos)},
            "positive_rate": {t: round(float(v) / n, 4) for t, v in zip(tags, pos)},
            "random_pr_auc": {t: round(float(v), 4) for t, v in zip(tags, ap)},
            "random_macro_pr_auc": float(np.nanmean(ap)) if defined.any() else float("nan"),
            "random_pr_auc_by_category": {c: float(np.nanmean(ap[(cats == c) & defined]))
                                          for c in dict.fromkeys(categories) if ((cats == c) & defined).any()},
        }
    return out


def build_labels_from_csv(cfg: CsvLabelsConfig) -> dict:
    THRESHOLD.check(cfg.threshold, "--threshold")
    manifest = _read(cfg.manifest, ["track_id", "split"])
    track_ids = [str(t) for t in manifest.column("track_id").to_pylist()]
    if len(set(track_ids)) != len(track_ids):
        raise UserError(f"{cfg.manifest}: duplicate track_id values")
    ids, genres, fractions = read_track_csv(cfg.csv, cfg.genre_column, cfg.emotion_columns)
    row_of = {t: i for i, t in enumerate(ids)}
    unlabelled = [t for t in track_ids if t not in row_of]
    if unlabelled:
        raise UserError(f"{cfg.csv}: {len(unlabelled)} manifest tracks have no row, e.g. track {unlabelled[0]!r} "
                         f"(manifest {cfg.manifest})")
    genre_tags = tuple(sorted(set(genres)))
    tags = genre_tags + tuple(cfg.emotion_columns)
    if len(set(tags)) != len(tags):
        raise UserError(f"{cfg.csv}: a {cfg.genre_column} value is also an emotion column: {sorted(genre_tags)}")
    categories = ("genre",) * len(genre_tags) + ("emotion",) * len(cfg.emotion_columns)

    rows = np.array([row_of[t] for t in track_ids], dtype=np.int64)
    genre_col = {g: j for j, g in enumerate(genre_tags)}
    y = np.zeros((len(track_ids), len(tags)), dtype=np.uint8)
    y[np.arange(len(rows)), [genre_col[genres[r]] for r in rows]] = 1
    y[:, len(genre_tags):] = fractions[rows] >= cfg.threshold

    cfg = CsvLabelsConfig(**{**cfg.__dict__, "selected_tags": tags, "categories": categories})
    out = Path(cfg.out)
    splits = manifest.column("split").cast(pa.string())
    write_parquet(labels_table(track_ids, splits, y, tags), out / "labels.parquet", cfg)
    write_text("tag,category\n" + "".join(f"{t},{c}\n" for t, c in zip(tags, categories)), out / "selected_tags.csv")
    emotion = y[:, len(genre_tags):]
    summary = {
        "csv_rows_read": len(ids),
        "csv_rows_kept": len(track_ids),
        "csv_rows_without_audio": len(ids) - len(track_ids),
        "tracks": len(track_ids),
        "threshold": cfg.threshold,
        "tags": len(tags),
        "positives": int(y.sum()),
        "tracks_without_emotion": int((emotion.sum(axis=1) == 0).sum()),
        "positives_per_tag": {t: int(v) for t, v in zip(tags, y.sum(axis=0))},
        "chance": chance_baselines(y, np.asarray(splits.to_pylist()), tags, categories),
    }
    write_text(json.dumps(summary, indent=2) + "\n", out / "labels_summary.json")
    return summary


def _main_from_csv(a, p) -> int:
    stray = [f"--{n.replace('_', '-')}" for n in ("track_tags", "tags", "stage2", "stage3", "min_weight", "selected")
             if getattr(a, n) is not None]
    if stray:
        p.error(f"--from-csv takes its tags from the CSV; drop {', '.join(stray)}")
    cfg = CsvLabelsConfig(manifest=a.manifest, csv=a.from_csv, out=a.out, threshold=a.threshold)
    from tagfold.pipeline.io import output_lock
    with output_lock(a.out):
        start_run(a.out)
        s = build_labels_from_csv(cfg)
    print(f"labels: {s['tracks']} tracks; CSV rows read {s['csv_rows_read']} = kept {s['csv_rows_kept']} + "
          f"without audio {s['csv_rows_without_audio']}; {s['tags']} tags, {s['positives']} positives "
          f"(emotion fraction >= {s['threshold']}); {s['tracks_without_emotion']} tracks without any emotion (kept)",
          file=sys.stderr)
    for split, st in s["chance"].items():
        print(f"  {split}: {st['tracks']} tracks; random scores: macro PR-AUC {st['random_macro_pr_auc']:.4f} "
              f"(by category: {', '.join(f'{c} {v:.4f}' for c, v in st['random_pr_auc_by_category'].items())}), "
              f"ROC-AUC 0.5", file=sys.stderr)
    print(f"wrote {Path(a.out) / 'labels.parquet'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(arg == "--benchmark" or arg.startswith("--benchmark=") for arg in argv):
        # a published task with its own tags, value threshold and track lists (not Stage I/II/III)
        from tagfold.pipeline.msd_top50 import main as benchmark_main
        return benchmark_main(argv)
    from tagfold.pipeline.options import NON_NEGATIVE, parser

    p = parser("tagfold labels", __doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="manifest.parquet (track_id, path, split)")
    p.add_argument("--track-tags", help="track_tags.parquet from the tag pipeline (track, tag, weight)")
    p.add_argument("--tags", help="tags.parquet from the tag pipeline")
    p.add_argument("--stage2", help="stage2.parquet from the tag pipeline")
    p.add_argument("--stage3", help="stage3.parquet from the tag pipeline")
    p.add_argument("--out", required=True, help="output folder (labels_stage{1,2,3}.parquet)")
    p.add_argument("--min-weight", type=NON_NEGATIVE, default=None,
                   help="keep (track, tag) pairs with weight >= W; default: all")
    p.add_argument("--selected", default=None, help="tag,category CSV (default: the thesis's 50 tags)")
    p.add_argument("--from-csv", metavar="CSV", help="human labels instead of tags: track_id, genre and the 9 "
                   "Emotify emotion fractions per row; writes labels.parquet")
    p.add_argument("--threshold", type=THRESHOLD, default=DEFAULT_THRESHOLD,
                   help="with --from-csv: an emotion is positive at fraction >= T")
    p.add_argument("--benchmark", choices=["msd-top50"],
                   help="build a published benchmark's labels instead (see tagfold labels --benchmark msd-top50 --help)")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    if a.from_csv:
        return _main_from_csv(a, p)
    missing = [f"--{n.replace('_', '-')}" for n in ("track_tags", "tags", "stage2", "stage3") if getattr(a, n) is None]
    if missing:
        p.error(f"the following arguments are required (or give --from-csv): {', '.join(missing)}")
    cfg = LabelsConfig(manifest=a.manifest, track_tags=a.track_tags, tags=a.tags, stage2=a.stage2,
                       stage3=a.stage3, out=a.out, min_weight=a.min_weight, selected=a.selected)
    from tagfold.pipeline.io import output_lock
    with output_lock(a.out):
        start_run(a.out)   # the label files of one run: evaluate refuses stage files of different runs
        s = build_labels(cfg)
    print(f"labels: {s['tracks']} tracks; track-tag rows read {s['track_tag_rows_read']} = kept "
          f"{s['track_tag_rows_kept']} + no audio {s['track_tag_rows_no_audio']} + below min weight "
          f"{s['track_tag_rows_below_min_weight']}", file=sys.stderr)
    for stage in (1, 2, 3):
        st = s[f"stage{stage}"]
        print(f"  Stage {ROMAN[stage]}: {st['positives']} positives, {st['tracks_without_positive']} "
              f"track{'' if st['tracks_without_positive'] == 1 else 's'} "
              f"without any positive (kept)", file=sys.stderr)
    print(f"wrote {Path(a.out) / 'labels_stage{1,2,3}.parquet'}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
