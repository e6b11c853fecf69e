"""`tagfold query happy`: which raw tags folded into a selected tag, per stage, with rule or distance.

Reads the pipeline's outputs (stage2.parquet, stage3.parquet) from --out; sorted and paged.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def folded_into(out_dir: str | Path, target: str, stage: int, sort: str = "tag") -> pa.Table:
    """Rows of stage `stage` (2 or 3) whose target is `target`: tag, how (rule/source), distance."""
    out_dir = Path(out_dir)
    path = out_dir / f"stage{stage}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `tagfold pipeline --out {out_dir}` first")
    table = pq.read_table(path)
    from tagfold.pipeline.io import read_config

    valid = read_config(path).get("selected") or sorted(set(table.column("target").cast(pa.string()).to_pylist()))
    if target not in valid:
        raise KeyError(f"{target!r} is not a selected tag in {path}; valid tags: {', '.join(valid)}")
    rows = table.filter(pc.equal(table.column("target").cast(pa.string()), target))
    how = "rule" if stage == 2 else "source"
    columns = {"tag": rows.column("tag"), how: rows.column(how).cast(pa.string())}
    if "distance" in rows.column_names:
        columns["distance"] = rows.column("distance")
    result = pa.table(columns)
    if sort == "distance" and "distance" in result.column_names:
        # Unknown distances (tags without a vector) go last.
        d = result.column("distance").to_numpy(zero_copy_only=False)
        order = np.lexsort((result.column("tag").to_pylist(), np.where(np.isnan(d), np.inf, d)))
    else:
        order = np.argsort(np.array(result.column("tag").to_pylist(), dtype=object), kind="stable")
    return result.take(pa.array(order, pa.int64()))


def format_page(table: pa.Table, page: int, page_size: int) -> str:
    n = table.num_rows
    pages = max(1, -(-n // page_size))
    if not 1 <= page <= pages:
        raise ValueError(f"page {page} is out of range 1..{pages}")
    chunk = table.slice((page - 1) * page_size, page_size).to_pylist()
    lines = []
    for row in chunk:
        extra = "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in row.items() if k != "tag" and v is not None and v == v)
        lines.append(f"  {row['tag']!r:<50} {extra}")
    lines.append(f"  -- page {page}/{pages}, {n:,} tags")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tagfold query", description=__doc__.splitlines()[0])
    p.add_argument("tag", help="a selected tag, e.g. happy")
    p.add_argument("--out", type=Path, default=Path("out/tags"), help="the pipeline's output folder (default out/tags)")
    p.add_argument("--stage", choices=("2", "3", "all"), default="all")
    p.add_argument("--sort", choices=("tag", "distance"), default="tag")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--page-size", type=int, default=50)
    args = p.parse_args(argv)
    if args.page_size < 1:
        p.error("--page-size must be >= 1")
    stages = (2, 3) if args.stage == "all" else (int(args.stage),)
    try:
        for stage in stages:
            table = folded_into(args.out, args.tag, stage, args.sort)
            print(f"Stage {'II' if stage == 2 else 'III'}: raw tags folded into {args.tag!r}")
            print(format_page(table, args.page, args.page_size))
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"tagfold query: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1
    return 0
