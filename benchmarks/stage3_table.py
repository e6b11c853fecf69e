"""The README's Stage III figures: every fold rule and threshold scored on both dev gold files,
folds over the real tags, and 30 random embedding folds to judge by eye.

    .venv/bin/python benchmarks/stage3_table.py [--out out/stage3-table] [--vectors minilm]

Runs Stage II over ../shared/data/lastfm/tags.txt, encodes Stage III's candidates once (vector
cache in --out/vector_cache, so a re-run takes seconds), then applies each rule to the same
similarities. Gold rows are only scored, never used to build anything.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from tagfold.pipeline.paths import shared_data
from tagfold.pipeline.selected import load_selected
from tagfold.pipeline.tags.collapse import collapse
from tagfold.pipeline.tags.embed import (DEFAULT_THRESHOLDS, EmbedConfig, embed_collapse, embed_distances,
                                         fold_by_similarity, similarity_scores)
from tagfold.pipeline.tags.gold import load_gold, mapping_from_table, score_mapping
from tagfold.pipeline.tags.vectors import load_vectors

GRID = {"center": [0.15, 0.18, 0.20, 0.21, 0.22, 0.23, 0.24, 0.25, 0.30],
        "cosine": [0.60, 0.65, 0.70, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77, 0.80],
        "margin": [0.04, 0.06, 0.08, 0.10, 0.12, 0.15]}
GOLD_FILES = ("gold_dev.tsv", "gold_stage3_dev.tsv")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/stage3-table"))
    p.add_argument("--vectors", default=EmbedConfig.vectors)
    p.add_argument("--examples", type=int, default=30, help="random embedding folds to list")
    p.add_argument("--seed", type=int, default=0, help="seed of the random folds listed")
    p.add_argument("--cut", default=EmbedConfig.cut, help="rule whose folds are listed")
    p.add_argument("--threshold", type=float, default=None, help="its threshold (default: the rule's default)")
    args = p.parse_args(argv)
    data = shared_data() / "lastfm"
    tags = (data / "tags.txt").read_text("utf-8").splitlines()
    selected = load_selected()
    golds = {name: load_gold(data / name) for name in GOLD_FILES}
    stage2 = collapse(tags, selected)
    s2 = mapping_from_table(stage2)
    kv = load_vectors(args.vectors)
    base = EmbedConfig(vectors=args.vectors, cache_dir=str(args.out / "vector_cache"))
    pre = embed_distances(tags, selected, kv, base)
    mapped = np.zeros(len(tags), dtype=bool)
    mapped[stage2.column("tag_id").to_numpy()] = True
    open_rows = ~mapped[pre.rows]
    print(f"{len(tags):,} real tags; Stage II maps {int(mapped.sum()):,}; Stage III candidates {pre.candidates:,} "
          f"({len(pre.rows):,} with a vector, {int(open_rows.sum()):,} of them unmapped by Stage II)")

    def scored(mapping):
        return "  ".join(f"{name}: P {s.precision:.3f} R {s.recall:.3f} (fp {s.fp}, fn {s.fn})"
                         for name, s in ((n, score_mapping(mapping, g)) for n, g in golds.items()))

    print(f"Stage II alone           {scored(s2)}")
    for cut, thresholds in GRID.items():
        scores = similarity_scores(pre.cosine, cut)
        for threshold in thresholds:
            nearest, _ = fold_by_similarity(scores, threshold)
            mapping = {t: set(v) for t, v in s2.items()}
            folds = 0
            for row, target in zip(pre.rows[open_rows], nearest[open_rows]):
                if target >= 0:
                    mapping[tags[row]] = {selected.tags[target]}
                    folds += 1
            mark = " (default)" if DEFAULT_THRESHOLDS.get(cut) == threshold and cut == base.cut else ""
            print(f"{cut:7s} >= {threshold:<5}  folds {folds:5,}  {scored(mapping)}{mark}")
    for percentile in (0.001, 0.01):
        config = EmbedConfig(vectors=args.vectors, cut="normal", percentile=percentile, cache_dir=base.cache_dir)
        result = embed_collapse(tags, stage2, selected, kv, config)
        print(f"normal  {percentile:<8}  folds {result.report.folded_by_embedding:5,}  "
              f"{scored(mapping_from_table(result.table))}")
    listed = EmbedConfig(vectors=args.vectors, cut=args.cut, threshold=args.threshold, cache_dir=base.cache_dir)
    result = embed_collapse(tags, stage2, selected, kv, listed)
    rows = [r for r in result.table.to_pylist() if r["source"] == "embedding"]
    print(f"\n{args.examples} random embedding folds of {listed.cut} >= {listed.fold_threshold} "
          f"(of {len(rows):,}; seed {args.seed}):")
    for r in sorted(random.Random(args.seed).sample(rows, min(args.examples, len(rows))), key=lambda r: r["tag"]):
        print(f"  {r['tag']!r} -> {r['target']}  (cosine {1 - r['distance']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
