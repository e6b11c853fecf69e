"""The labels file format, defined once.

One row per track: `track_id` (string), `split` (train / valid / test, dictionary-encoded),
then one uint8 0/1 column per tag, in the order of the tag list; the writer's config in the
Parquet metadata, including `categories` (one per tag) where the writer knows them.
`tagfold labels` (tagfold.pipeline.labels, the MSD top-50 preset) writes it with
`labels_table`; training, the loaders and evaluation read it with `read_labels` / `tag_columns`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tagfold.pipeline.errors import UserError

KEY_COLUMNS = ("track_id", "split")


def labels_table(track_ids, splits, y: np.ndarray, tags) -> pa.Table:
    """The labels table for `y` [tracks, tags] (0/1) with its track ids and splits."""
    arrow = (pa.Array, pa.ChunkedArray)
    ids = track_ids.cast(pa.string()) if isinstance(track_ids, arrow) else pa.array(list(map(str, track_ids)), pa.string())
    splits = splits if isinstance(splits, arrow) else pa.array(list(splits), pa.string())
    cols = {"track_id": ids, "split": splits.cast(pa.string()).dictionary_encode()}
    cols.update({t: pa.array(y[:, j], pa.uint8()) for j, t in enumerate(tags)})
    return pa.table(cols)


def tag_columns(table: pa.Table) -> list[str]:
    """The tag columns of a labels table, in order."""
    return [c for c in table.column_names if c not in KEY_COLUMNS]


def read_labels(path: str | Path):
    """(track_ids, splits, Y uint8 [n, n_tags], tags, categories) from a labels file."""
    import pyarrow.parquet as pq

    from tagfold.pipeline.io import read_config

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: labels file not found (make it with `tagfold labels`)")
    table = pq.read_table(path)
    if tuple(table.column_names[:2]) != KEY_COLUMNS:
        raise UserError(f"{path}: expected columns track_id, split, then one per tag; got {table.column_names[:3]}")
    tags = tuple(tag_columns(table))
    y = np.stack([table.column(t).to_numpy(zero_copy_only=False) for t in tags], axis=1).astype(np.uint8) \
        if tags else np.zeros((table.num_rows, 0), np.uint8)
    cats = tuple(read_config(path).get("categories") or _categories_for(tags))
    return table.column("track_id").to_pylist(), np.asarray(table.column("split").to_pylist()), y, tags, cats


def _categories_for(tags) -> list[str]:
    from tagfold.pipeline.selected import load_selected

    sel = load_selected()
    return [sel.category_of(t) if t in sel.tags else "other" for t in tags]
