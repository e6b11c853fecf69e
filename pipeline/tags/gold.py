"""Score a tag mapping against the hand-labelled gold tags, and compare it with the thesis's.

Gold file (`../shared/data/lastfm/gold_dev.tsv`, labelled by GUIDELINE.md beside it):
`tag<TAB>targets(;-separated)<TAB>certain` with a header. Scores are pair-level
(tag, target) precision and recall over the rows with certain = 1; a gold tag missing from
the mapping simply has no targets (it counts towards recall, never silently skipped).
"""
from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pyarrow as pa

from tagfold.pipeline.tags.lookup import get_normalised  # a gold tag may be in raw form ('punk  rock')
from tagfold.pipeline.errors import UserError

Gold = dict[str, tuple[frozenset[str], bool]]
TagMapping = dict[str, set[str]]


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    n_rows: int   # certain gold rows scored

    def __str__(self) -> str:
        return (f"precision {self.precision:.3f}  recall {self.recall:.3f}  "
                f"(tp {self.tp}, fp {self.fp}, fn {self.fn}; {self.n_rows} certain rows)")


def default_gold_path() -> Path:
    from tagfold.pipeline.paths import shared_data

    return shared_data() / "lastfm" / "gold_dev.tsv"


def default_gold_paths() -> list[Path]:
    """The dev gold files `tagfold score` reads by default: the guideline's 500 tags and the
    297 'meaning, not just spelling' tags (GUIDELINE.md's addendum)."""
    from tagfold.pipeline.paths import shared_data

    return [shared_data() / "lastfm" / "gold_dev.tsv", shared_data() / "lastfm" / "gold_stage3_dev.tsv"]


def stage_mappings(path: str | Path, mapping: TagMapping) -> dict[str, TagMapping]:
    """Name -> mapping to score: a Stage III table also yields its Stage II rows on their own
    (source 'stage2'), so one file gives both Stage II and Stage II+III figures."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if "source" in pq.read_schema(path).names:
            table = pq.read_table(path, columns=["tag", "target", "source"])
            stage2 = table.filter(pa.compute.equal(table.column("source").cast(pa.string()), "stage2"))
            return {"Stage II": mapping_from_table(stage2), "Stage II+III": mapping}
    return {"mapping": mapping}


def default_thesis_path() -> Path:
    from tagfold.pipeline.paths import shared_data

    return shared_data() / "lastfm" / "thesis_stage2_dev.tsv"


def load_gold(path: str | Path | None = None) -> Gold:
    """tag -> (targets, certain). Malformed lines raise naming file and line."""
    path = Path(path) if path else default_gold_path()
    lines = path.read_text("utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["tag", "targets", "certain"]:
        raise UserError(f"{path}:1: header must be 'tag<TAB>targets<TAB>certain'")
    gold: Gold = {}
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 3 or fields[2] not in ("0", "1"):
            raise UserError(f"{path}:{lineno}: expected 'tag<TAB>targets<TAB>0|1', got {line!r}")
        tag, targets, certain = fields
        if tag in gold:
            raise UserError(f"{path}:{lineno}: duplicate tag {tag!r}")
        gold[tag] = (frozenset(t for t in targets.split(";") if t), certain == "1")
    return gold


def load_pairs_tsv(path: str | Path) -> TagMapping:
    """A `raw_tag<TAB>selected_tag` file (the thesis's mapping) as tag -> targets.

    Empty targets (a bug in the thesis's Stage III file) map to nothing but keep the tag.
    """
    path = Path(path)
    mapping: TagMapping = defaultdict(set)
    for lineno, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        tag, sep, target = line.partition("\t")
        if not sep:
            raise UserError(f"{path}:{lineno}: expected 'raw_tag<TAB>selected_tag', got {line!r}")
        mapping[tag]  # noqa: B018 - the tag was read even when its target is empty
        if target.strip():
            mapping[tag].add(target.strip())
    return dict(mapping)


def mapping_from_table(table: pa.Table) -> TagMapping:
    """tag -> targets from a stage2/stage3 table (columns tag, target; one row per pair)."""
    missing = {"tag", "target"} - set(table.column_names)
    if missing:
        raise UserError(f"table lacks column(s) {', '.join(sorted(missing))}; has {', '.join(table.column_names)}")
    mapping: TagMapping = defaultdict(set)
    for tag, target in zip(table.column("tag").to_pylist(), table.column("target").to_pylist()):
        if target:
            mapping[tag].add(target)
    return dict(mapping)


def load_mapping(path: str | Path) -> TagMapping:
    """A stage2/stage3 Parquet file or a `raw_tag<TAB>selected_tag` TSV as tag -> targets."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return mapping_from_table(pq.read_table(path, columns=["tag", "target"]))
    return load_pairs_tsv(path)


def score_mapping(mapping: Mapping[str, set[str]], gold: Gold) -> Score:
    """Pair-level precision/recall of `mapping` on the certain gold rows."""
    tp = fp = fn = n = 0
    for tag, (truth, certain) in gold.items():
        if not certain:
            continue
        n += 1
        predicted = set(get_normalised(mapping, tag, ()))
        tp += len(predicted & truth)
        fp += len(predicted - truth)
        fn += len(truth - predicted)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return Score(precision, recall, tp, fp, fn, n)


def gold_errors(mapping: Mapping[str, set[str]], gold: Gold) -> list[tuple[str, set[str], set[str]]]:
    """(tag, false positives, false negatives) for every certain gold row the mapping gets wrong."""
    out = []
    for tag, (truth, certain) in gold.items():
        predicted = set(get_normalised(mapping, tag, ()))
        if certain and predicted != truth:
            out.append((tag, predicted - truth, truth - predicted))
    return out


@dataclass(frozen=True)
class Agreement:
    """Pair-level agreement between two mappings over the tags the reference maps."""
    n_tags: int
    shared: int          # pairs in both
    only_reference: int  # thesis pairs we do not produce
    only_ours: int       # our pairs on those tags that the thesis lacks
    classes: dict[str, list[tuple[str, str, str]]]  # class -> (tag, thesis targets, ours)

    @property
    def agreement(self) -> float:
        total = self.shared + self.only_reference + self.only_ours
        return self.shared / total if total else 1.0

    @property
    def reference_recall(self) -> float:
        denom = self.shared + self.only_reference
        return self.shared / denom if denom else 1.0


def _tokens(tag: str) -> list[str]:
    from tagfold.pipeline.tags.normalize import tokenize

    return tokenize(tag)


def classify_disagreement(tag: str, theirs: set[str], ours: set[str]) -> str:
    """A short name for why two mappings of one tag differ (for the README's table)."""
    words = _tokens(tag)
    if not ours:
        def where(target: str) -> str:
            parts = _tokens(target)
            if any(words[i:i + len(parts)] == parts for i in range(len(words))):
                return "word"
            if len(parts) == 1 and any(w.startswith(parts[0]) and len(w) - len(parts[0]) <= 3 for w in words):
                return "inflection"
            return "substring"
        kinds = {where(t) for t in theirs}
        if "word" in kinds:
            return "reference's word is used otherwise here (idiom, negation, artist/title, bare number)"
        if "inflection" in kinds:
            return "reference reads a different word form as the tag ('rocks' praise, 'goods', 'greater', 'rockin')"
        return "reference's target is only a substring of another word ('dancehall', 'photograph', 'popular')"
    if not theirs:
        return "only ours"
    if theirs < ours:
        return "ours adds targets (multi-target tag: decades, countries, several genres/moods)"
    if all(any(t in o.split() or o in t.split() or o.startswith(t) or t.startswith(o) for o in ours)
           for t in theirs - ours):
        return "ours picks the more specific / related tag ('indie' -> 'indie rock', 'chillout' -> 'chill')"
    return "different target"


def agreement_with(mapping: Mapping[str, set[str]], reference: Mapping[str, set[str]],
                   examples_per_class: int = 5) -> Agreement:
    shared = only_ref = only_ours = 0
    classes: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    counts: Counter = Counter()
    for tag in sorted(reference):
        theirs = set(reference[tag])
        ours = set(mapping.get(tag, ()))
        shared += len(theirs & ours)
        only_ref += len(theirs - ours)
        only_ours += len(ours - theirs)
        if theirs != ours:
            name = classify_disagreement(tag, theirs, ours)
            counts[name] += 1
            if len(classes[name]) < examples_per_class:
                classes[name].append((tag, ";".join(sorted(theirs)), ";".join(sorted(ours))))
    ordered = {f"{name} ({counts[name]:,} tags)": classes[name] for name, _ in counts.most_common()}
    return Agreement(len(reference), shared, only_ref, only_ours, ordered)


def _run_tags(path: Path, mapping: TagMapping) -> dict | None:
    """The tags the scored run read (tags.parquet beside a stage file, or a TSV's own tags);
    None when unknown (a stage file lists only mapped tags)."""
    if path.suffix != ".parquet":
        return dict.fromkeys(mapping, True)
    tags_file = path.parent / "tags.parquet"
    if not tags_file.exists():
        return None
    import pyarrow.parquet as pq

    return dict.fromkeys(pq.read_table(tags_file, columns=["tag"]).column("tag").to_pylist(), True)


def _covered(reference: dict, present: dict | None, what: str, path: Path) -> dict:
    """The rows of `reference` whose tag the run read: a tag the input never held is not a
    miss of the mapping. Says how many that is when it is not all of them."""
    if present is None:
        return reference
    covered = {tag: v for tag, v in reference.items() if get_normalised(present, tag, False)}
    if not covered:
        raise UserError(f"{path}: the run read none of the {len(reference):,} {what} tags, so there is "
                        "nothing to score; run the pipeline on ../shared/data/lastfm/tags.txt")
    if len(covered) < len(reference):
        print(f"the input holds {len(covered):,} of the {len(reference):,} {what} tags; scoring only those",
              file=sys.stderr)
    return covered


def main(argv: list[str]) -> int:
    from tagfold.pipeline.options import parser as new_parser

    parser = new_parser("tagfold score", __doc__.splitlines()[0])
    parser.add_argument("mapping", type=Path, help="stage2.parquet / stage3.parquet or raw_tag<TAB>target TSV")
    parser.add_argument("--gold", type=Path, default=None,
                        help="gold TSV (default: both ../shared/data/lastfm/gold_dev.tsv and gold_stage3_dev.tsv)")
    parser.add_argument("--thesis", type=Path, default=None,
                        help="thesis Stage II mapping to compare with (default ../shared/data/lastfm/thesis_stage2_dev.tsv)")
    parser.add_argument("--errors", action="store_true", help="list every certain gold row the mapping gets wrong")
    args = parser.parse_args(argv)
    mapping = load_mapping(args.mapping)
    present = _run_tags(args.mapping, mapping)
    mappings = stage_mappings(args.mapping, mapping)
    for gold_path in [args.gold] if args.gold else [p for p in default_gold_paths() if p.exists()]:
        gold = load_gold(gold_path)
        gold = _covered({t: v for t, v in gold.items() if v[1]}, present, "certain gold", args.mapping)
        for name, scored in mappings.items():
            label = f"{gold_path}" if name == "mapping" else f"{gold_path}, {name}"
            print(f"gold ({label}): {score_mapping(scored, gold)}")
            if args.errors:
                for tag, fp, fn in gold_errors(scored, gold):
                    print(f"  {tag!r}: extra {sorted(fp)} missing {sorted(fn)}")
    thesis_path = args.thesis or default_thesis_path()
    if thesis_path.exists():
        thesis = _covered(load_pairs_tsv(thesis_path), present, "thesis-mapped", args.mapping)
        agr = agreement_with(mapping, thesis)
        print(f"agreement with thesis ({thesis_path}, {agr.n_tags:,} tags): {agr.agreement:.3f} pair-level "
              f"(shared {agr.shared:,}, thesis only {agr.only_reference:,}, tagfold only {agr.only_ours:,}); "
              f"thesis pairs reproduced {agr.reference_recall:.3f}")
        for name, rows in agr.classes.items():
            print(f"  {name}")
            for tag, theirs, ours in rows:
                print(f"    {tag!r}: thesis {theirs or '-'} | tagfold {ours or '-'}")
    else:
        print(f"no thesis mapping at {thesis_path}: agreement skipped", file=sys.stderr)
    return 0
