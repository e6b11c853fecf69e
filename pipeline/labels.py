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
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tagfold.pipeline.io import write_parquet, write_text
from tagfold.pipeline.selected import SelectedTags, load_selected

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


def _read(path: str, columns: list[str]) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(table.column_names)}")
    return table


def _mapping_pairs(path: str, sel: SelectedTags) -> tuple[np.ndarray, np.ndarray, int]:
    """(tag_id, selected index) pairs from a stage2/stage3 table; rows without target are skipped."""
    table = _read(path, ["tag_id", "target"])
    tag_ids = table.column("tag_id").to_numpy(zero_copy_only=False).astype(np.int64)
    targets = table.column("target").cast(pa.string()).to_pylist()
    index = {t: i for i, t in enumerate(sel.tags)}
    keep, cols, no_target = [], [], 0
    for row, target in enumerate(targets):
        if target is None or target == "":
            no_target += 1      # e.g. 'blocked' rule rows: the tag maps to nothing
            continue
        if target not in index:
            raise ValueError(f"{path}: row {row} (tag_id {tag_ids[row]}): target {target!r} "
                             f"is not one of the {len(sel)} selected tags")
        keep.append(row)
        cols.append(index[target])
    return tag_ids[keep], np.asarray(cols, dtype=np.int64), no_target


def _stage1_pairs(tags: pa.Table, sel: SelectedTags) -> tuple[np.ndarray, np.ndarray]:
    index = {t: i for i, t in enumerate(sel.tags)}
    ids = tags.column("tag_id").to_numpy(zero_copy_only=False).astype(np.int64)
    names = tags.column("tag").cast(pa.string()).to_pylist()
    rows = [(tid, index[n.strip().lower()]) for tid, n in zip(ids, names) if n and n.strip().lower() in index]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.asarray(rows, dtype=np.int64)
    return a[:, 0], a[:, 1]


def label_matrix(track_rows: np.ndarray, tag_ids: np.ndarray, pair_tag: np.ndarray, pair_col: np.ndarray,
                 n_tracks: int, n_tags: int) -> np.ndarray:
    """Y[track, col] = 1 for every (track, tag_id) whose tag_id has a (tag_id, col) pair."""
    y = np.zeros((n_tracks, n_tags), dtype=np.uint8)
    if pair_tag.size == 0 or tag_ids.size == 0:
        return y
    order = np.argsort(pair_tag, kind="stable")
    pt, pcol = pair_tag[order], pair_col[order]
    lo = np.searchsorted(pt, tag_ids, side="left")
    hi = np.searchsorted(pt, tag_ids, side="right")
    counts = hi - lo
    rep_rows = np.repeat(track_rows, counts)
    # Position of each expanded pair: lo of its source row plus its offset within the run.
    starts = np.repeat(lo, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    y[rep_rows, pcol[starts + offsets]] = 1
    return y


def build_labels(cfg: LabelsConfig) -> dict:
    sel = load_selected(cfg.selected)
    manifest = _read(cfg.manifest, ["track_id", "split"])
    track_ids = manifest.column("track_id").cast(pa.string())
    if pc.count_distinct(track_ids).as_py() != len(track_ids):
        raise ValueError(f"{cfg.manifest}: duplicate track_id values")
    tt = _read(cfg.track_tags, ["track_id", "tag_id"])
    tags = _read(cfg.tags, ["tag_id", "tag"])

    rows = pc.index_in(tt.column("track_id").cast(pa.string()), value_set=track_ids)
    in_manifest = pc.is_valid(rows).to_numpy(zero_copy_only=False)
    weight_col = next((c for c in WEIGHT_COLUMNS if c in tt.column_names), None)
    kept = in_manifest.copy()
    below = 0
    if cfg.min_weight is not None:
        if weight_col is None:
            raise ValueError(f"{cfg.track_tags}: --min-weight needs a weight column ({', '.join(WEIGHT_COLUMNS)})")
        w = tt.column(weight_col).to_numpy(zero_copy_only=False).astype(float)
        low = np.nan_to_num(w, nan=-np.inf) < cfg.min_weight
        below = int((low & in_manifest).sum())
        kept &= ~low
    track_rows = rows.to_numpy(zero_copy_only=False)[kept].astype(np.int64)
    tag_ids = tt.column("tag_id").to_numpy(zero_copy_only=False)[kept].astype(np.int64)
    no_audio = tt.filter(pa.array(~in_manifest)).column("track_id")

    s1_tag, s1_col = _stage1_pairs(tags, sel)
    s2_tag, s2_col, s2_none = _mapping_pairs(cfg.stage2, sel)
    s3_tag, s3_col, s3_none = _mapping_pairs(cfg.stage3, sel)
    n, k = len(track_ids), len(sel)
    y1 = label_matrix(track_rows, tag_ids, s1_tag, s1_col, n, k)
    y2 = y1 | label_matrix(track_rows, tag_ids, s2_tag, s2_col, n, k)
    y3 = y2 | label_matrix(track_rows, tag_ids, s3_tag, s3_col, n, k)

    cfg = LabelsConfig(**{**cfg.__dict__, "selected_tags": sel.tags, "categories": sel.categories})
    out = Path(cfg.out)
    summary = {
        "track_tag_rows_read": tt.num_rows,
        "track_tag_rows_kept": int(kept.sum()),
        "track_tag_rows_no_audio": int((~in_manifest).sum()),
        "track_tag_rows_below_min_weight": below,
        "tracks_without_audio": pc.count_distinct(no_audio).as_py() if len(no_audio) else 0,
        "tracks": n,
        "mapping_rows_without_target": {"stage2": s2_none, "stage3": s3_none},
    }
    splits = manifest.column("split").cast(pa.string())
    for stage, y in ((1, y1), (2, y2), (3, y3)):
        cols = {"track_id": track_ids, "split": splits.dictionary_encode()}
        cols.update({t: pa.array(y[:, j], pa.uint8()) for j, t in enumerate(sel.tags)})
        write_parquet(pa.table(cols), out / f"labels_stage{stage}.parquet", cfg)
        summary[f"stage{stage}"] = {
            "positives": int(y.sum()),
            "tracks_without_positive": int((y.sum(axis=1) == 0).sum()),
            "positives_per_tag": {t: int(v) for t, v in zip(sel.tags, y.sum(axis=0))},
        }
    import json
    write_text(json.dumps(summary, indent=2) + "\n", out / "labels_summary.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tagfold labels", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--track-tags", required=True)
    p.add_argument("--tags", required=True)
    p.add_argument("--stage2", required=True)
    p.add_argument("--stage3", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min-weight", type=float, default=None, help="keep (track, tag) pairs with weight >= W")
    p.add_argument("--selected", default=None, help="tag,category CSV (default: the thesis's 50 tags)")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    cfg = LabelsConfig(manifest=a.manifest, track_tags=a.track_tags, tags=a.tags, stage2=a.stage2,
                       stage3=a.stage3, out=a.out, min_weight=a.min_weight, selected=a.selected)
    from tagfold.pipeline.io import output_lock
    with output_lock(a.out):
        s = build_labels(cfg)
    print(f"labels: {s['tracks']} tracks; track-tag rows read {s['track_tag_rows_read']} = kept "
          f"{s['track_tag_rows_kept']} + no audio {s['track_tag_rows_no_audio']} + below min weight "
          f"{s['track_tag_rows_below_min_weight']}", file=sys.stderr)
    for stage in (1, 2, 3):
        st = s[f"stage{stage}"]
        print(f"  stage {stage}: {st['positives']} positives, {st['tracks_without_positive']} tracks "
              f"without any positive (kept)", file=sys.stderr)
    print(f"wrote {Path(a.out) / 'labels_stage{1,2,3}.parquet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
