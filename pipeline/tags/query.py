"""`tagfold query happy`: which raw tags folded into a selected tag, per stage, with rule or distance.

Reads the pipeline's outputs (stage2.parquet, stage3.parquet) from --out; sorted and paged.
The query is matched case-insensitively ('Happy' is happy). A query that is not a selected tag
is looked up as a tag, by its raw form (aliases.parquet) or its normalised form, and the
selected tags it folded into are shown ('punk  rock' finds 'punk rock').
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tagfold.pipeline.errors import UserError
from tagfold.pipeline.tags.lookup import TagLookup
from tagfold.pipeline.tags.vocab import normalize_tag


def is_selected(out_dir: str | Path, text: str) -> bool:
    """Whether `text` names (case-insensitively) a selected tag of the run in out_dir."""
    from tagfold.pipeline.io import read_config

    for stage in (2, 3):
        path = Path(out_dir) / f"stage{stage}.parquet"
        if path.exists():
            valid = read_config(path).get("selected") or ()
            return normalize_tag(text) in {v.casefold() for v in valid}
    return True  # no outputs: folded_into names what is missing


def tag_mapping(out_dir: str | Path, text: str) -> str:
    """What one tag (raw or normalised text) became: its tag, and its targets per stage."""
    out_dir = Path(out_dir)
    lookup = TagLookup.from_dir(out_dir)
    tag_id = lookup.find(text)
    if tag_id is None:
        from tagfold.pipeline.io import read_config

        stage2 = out_dir / "stage2.parquet"
        valid = (read_config(stage2).get("selected") or ()) if stage2.exists() else ()
        raise UserError(f"{text!r} is neither a selected tag nor a tag of {out_dir / 'tags.parquet'} "
                        f"(raw or normalised form); valid tags: {', '.join(valid)}")
    lines = [f"{text!r} is tag {tag_id} {lookup.tag_of_id[tag_id]!r}"]
    for stage, how in ((2, "rule"), (3, "source")):
        path = out_dir / f"stage{stage}.parquet"
        if not path.exists():
            continue
        table = pq.read_table(path)
        rows = table.filter(pc.equal(table.column("tag_id"), tag_id)).to_pylist()
        found = "; ".join(f"{r['target']} ({r[how]}" + (f", distance {r['distance']:.3f})"
                          if r.get("distance") is not None and r["distance"] == r["distance"] else ")")
                          for r in rows if r["target"])
        lines.append(f"  Stage {'II' if stage == 2 else 'III'}: {found or 'no selected tag'}")
    return "\n".join(lines)


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
        target = next((v for v in valid if v.casefold() == normalize_tag(target)), target)
    if target not in valid:
        raise UserError(f"{target!r} is not a selected tag in {path}; valid tags: {', '.join(valid)}")
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
        raise UserError(f"page {page} is out of range: {n:,} tags make {pages} page{'s' if pages != 1 else ''} "
                        f"of {page_size}")
    chunk = table.slice((page - 1) * page_size, page_size).to_pylist()
    lines = []
    for row in chunk:
        extra = "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in row.items() if k != "tag" and v is not None and v == v)
        lines.append(f"  {row['tag']!r:<50} {extra}")
    lines.append(f"  -- page {page}/{pages}, {n:,} tags")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from tagfold.pipeline.options import COUNT, parser

    p = parser("tagfold query", __doc__.splitlines()[0])
    p.add_argument("tag", help="a selected tag, e.g. happy; or any tag, raw or normalised, to see what it folded into")
    p.add_argument("--out", type=Path, default=Path("out/tags"), help="the pipeline's output folder")
    p.add_argument("--stage", choices=("2", "3", "all"), default="all", help="which stage's folds to list")
    p.add_argument("--sort", choices=("tag", "distance"), default="tag",
                   help="order: by tag, or by Stage III distance (nearest first)")
    p.add_argument("--page", type=COUNT, default=1, help="page to show")
    p.add_argument("--page-size", type=COUNT, default=50, help="tags per page")
    args = p.parse_args(argv)
    stages = (2, 3) if args.stage == "all" else (int(args.stage),)
    from tagfold.pipeline.io import check_same_run
    check_same_run([p for p in (args.out / f for f in ("tags.parquet", "stage2.parquet", "stage3.parquet"))
                    if p.exists()])   # a killed re-run may have left an older stage beside newer ones
    if not is_selected(args.out, args.tag):
        print(tag_mapping(args.out, args.tag))
        return 0
    for stage in stages:
        table = folded_into(args.out, args.tag, stage, args.sort)
        print(f"Stage {'II' if stage == 2 else 'III'}: raw tags folded into {args.tag!r}")
        print(format_page(table, args.page, args.page_size))
    return 0
