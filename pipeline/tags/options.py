"""The options `tagfold pipeline` shares with the stage commands, built once from the stage
configs (their defaults) and tagfold.pipeline.options (their ranges), so each flag has one
spelling, one default, one range and one help text wherever it appears."""
from __future__ import annotations

import argparse

from tagfold.pipeline.options import SCORE_LEVEL, Range
from tagfold.pipeline.tags.categorize import CONTAINMENT, CategorizeConfig
from tagfold.pipeline.tags.embed import CUTS, DEFAULT_THRESHOLDS, EmbedConfig

PERCENTILE = Range(float, lo=0, hi=0.5, open_lo=True, open_hi=True)
POOLING = ("mean", "sqrt")
THRESHOLD = Range(float, lo=-1, hi=2)


def add_selected(p: argparse.ArgumentParser) -> None:
    p.add_argument("--selected", default=None, metavar="CSV",
                   help="CSV 'tag,category' of the selected tags (default: the thesis's 50)")


def add_stage1(p: argparse.ArgumentParser) -> None:
    d = CategorizeConfig()
    p.add_argument("--score-level", type=SCORE_LEVEL, default=d.score_level,
                   help="Stage I Jaro-Winkler typo correction keeps scores strictly above this")
    p.add_argument("--containment", choices=CONTAINMENT, default=d.containment,
                   help="word: whole-word containment; substring: the thesis's raw substring")


def add_stage3(p: argparse.ArgumentParser) -> None:
    d = EmbedConfig()
    p.add_argument("--vectors", default=d.vectors,
                   help="minilm (sentence encoder shipped in a wheel, default), glove, word2vec (trained on "
                        "track co-occurrence: needs track links) or a vectors file")
    p.add_argument("--cut", choices=CUTS, default=d.cut,
                   help="Stage III fold rule: center (default: cosine minus the tag's mean cosine to all "
                        "selected tags), cosine, margin (over the runner-up), or normal (the thesis's "
                        "per-tag normal fit, with --percentile)")
    p.add_argument("--threshold", type=THRESHOLD, default=None,
                   help="threshold of the center/cosine/margin rule (default: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_THRESHOLDS.items()) + ")")
    p.add_argument("--percentile", type=PERCENTILE, default=d.percentile,
                   help="Stage III cut: a tag folds when nearer a selected tag than this percentile "
                        "of the normal fit of that tag's distances")
    p.add_argument("--pooling", choices=POOLING, default=d.pooling,
                   help="tag vector from its tokens: mean, or sqrt (sum / sqrt(n))")
