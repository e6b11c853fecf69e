"""Tag ids between the stages and their files, written once.

The stage functions number tags by their position in the list they were given; every output
file carries the ingest's `tag_id` (tags.parquet), so a row can be joined back to its raw tag.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tagfold.pipeline.errors import UserError


def to_ingest_ids(table: pa.Table, tag_ids: pa.Array) -> pa.Table:
    """`table` (tag_id = position in tags.parquet, first column) with the ingest's tag_id instead."""
    return table.set_column(0, "tag_id", tag_ids.take(table.column("tag_id")).cast(pa.int32()))


def to_positions(table: pa.Table, tag_ids: pa.Array, source: str = "the input") -> pa.Table:
    """The inverse: `table`'s ingest tag_ids (first column) as positions in `tag_ids`. An id the
    tag list lacks means the two files come from different runs: a UserError naming `source`."""
    positions = pc.index_in(table.column("tag_id"), value_set=tag_ids)
    if positions.null_count:
        bad = table.column("tag_id").filter(pc.is_null(positions))[0].as_py()
        raise UserError(f"{source}: tag_id {bad} is not in the tag list (files from different runs?)")
    return table.set_column(0, "tag_id", positions.cast(pa.int32()))
