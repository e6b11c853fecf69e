"""Synthetic tag lists grown from real tags with seeded tagnoise variants.

- ``grow_tags(real, n, seed)``: the full-size job. The thesis ran on 522,366 raw Last.fm tags;
  the shared sample has 58,702 of them, so every real tag is kept (first, in input order) and
  variants of randomly drawn real tags are appended until there are exactly ``n`` tags. Kinds
  are drawn with ``KIND_WEIGHTS`` (typos and phrases dominate, as in the real list); phrases
  combine a real tag with short real tags. A variant is kept only if its normalised form
  (tagfold.pipeline.tags.vocab.normalize_tag: case, whitespace) is new, so ingest never merges two
  variants; real tags are kept verbatim even where ingest will merge them (58,702 real tags
  are 58,538 after normalisation). Variants longer than MAX_LEN (ingest's limit) are drawn
  again. Deterministic for a seed.
- ``default_tags(seed, n)``: the embedded default data of a fresh machine with no shared data: a
  folksonomy-style list of the 50 selected tags, common music words and their variants.

CLI: ``tagfold synth-tags --n 522366 --seed 0 --out tags_522k.txt [--source PATH]``
(one tag per line, written atomically; source defaults to the shared lastfm/tags.txt).
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from tagfold.pipeline.tags import tagnoise
from tagfold.pipeline.errors import UserError

FULL_SIZE = 522_366
# Longest variant kept: ingest's default max_len (real Last.fm tags stop at 254 characters).
MAX_LEN = 255

# How often each kind is drawn for the full-size job (sums to 1).
KIND_WEIGHTS: dict[str, float] = {
    "typo": 0.26, "join": 0.08, "hyphen": 0.06, "decade_form": 0.08,
    "phrase": 0.28, "modifier": 0.14, "synonym": 0.08, "junk": 0.02,
}
assert tuple(KIND_WEIGHTS) == tagnoise.KINDS and abs(sum(KIND_WEIGHTS.values()) - 1) < 1e-12

# Common music words for the default data: genres, moods, descriptions, places, times.
COMMON_WORDS: tuple[str, ...] = (
    "hip hop", "hip-hop", "rap", "blues", "country", "reggae", "ska", "funk", "disco", "house",
    "techno", "trance", "drum and bass", "dubstep", "ambient", "idm", "trip-hop", "downtempo",
    "lounge", "new wave", "post-punk", "post-rock", "shoegaze", "grunge", "emo", "hardcore",
    "death metal", "black metal", "heavy metal", "thrash metal", "power metal", "hard rock",
    "progressive rock", "psychedelic", "psychedelic rock", "garage rock", "britpop", "synthpop",
    "electropop", "indie pop", "dream pop", "noise", "experimental", "industrial", "gothic",
    "r&b", "rnb", "gospel", "swing", "bebop", "smooth jazz", "bossa nova", "latin", "salsa",
    "world", "celtic", "bluegrass", "americana", "classical", "opera", "soundtrack", "score",
    "christmas", "lo-fi", "easy listening", "female vocalists", "male vocalists", "female vocals",
    "guitar", "piano", "strings", "saxophone", "vocal", "covers", "live", "remix", "love songs",
    "love", "summer", "winter", "night", "driving", "workout", "relax", "relaxing", "sleep",
    "study", "rainy day", "road trip", "upbeat", "groovy", "catchy", "uplifting", "emotional",
    "angry", "aggressive", "peaceful", "nostalgic", "lonely", "depressing", "atmospheric",
    "epic", "soft", "smooth", "heavy", "fast", "slow", "german", "french", "swedish",
    "japanese", "canadian", "australian", "uk", "usa", "new york", "seattle", "seen live",
    "favorites", "favourite", "under 2000 listeners", "50s", "1990s", "eighties",
)


def grow_tags(real: Sequence[str], n: int = FULL_SIZE, seed: int = 0, *,
              progress: bool = True) -> list[str]:
    """``real`` (non-empty, unique) first, then seeded variants until exactly ``n`` tags."""
    tags, _ = _grow(real, n, seed, progress)
    return tags


def _grow(real: Sequence[str], n: int, seed: int, progress: bool) -> tuple[list[str], Counter]:
    from tqdm import tqdm

    from tagfold.pipeline.tags.vocab import normalize_tag

    real = list(real)
    for i, tag in enumerate(real):
        if not tag.strip() or "\n" in tag:
            raise ValueError(f"real tag #{i} {tag!r} is empty or holds a newline")
    if len(set(real)) != len(real):
        raise ValueError("real tags must be unique (read_source merges duplicates)")
    if len(real) > n:
        raise UserError(f"{len(real):,} real tags already exceed the requested n={n:,}")
    # phrases glue real tags to short real tags, like 'sad indie rock'
    partners = [t for t in real if len(t) <= 15 and t.count(" ") <= 1] or real
    kinds = tagnoise.KINDS
    weights = np.array([KIND_WEIGHTS[k] for k in kinds])
    rng = np.random.default_rng(seed)
    keys = {normalize_tag(t) for t in real}
    out = list(real)
    made: Counter = Counter()
    drawn = 0
    with tqdm(total=n, initial=len(out), desc="synth tags", unit="tag", disable=not progress,
              file=sys.stderr) as bar:
        while len(out) < n:
            # one batch of draws per pass, sized for the expected duplicate rate
            size = max(256, int((n - len(out)) * 1.2))
            bases = rng.integers(len(real), size=size).tolist()
            kind_ids = rng.choice(len(kinds), size=size, p=weights).tolist()
            draws = rng.random((size, tagnoise.N_DRAWS)).tolist()
            before = len(out)
            for b, k, u in zip(bases, kind_ids, draws):
                drawn += 1
                tag = tagnoise.apply_kind(real[b], kinds[k], u, partners)
                key = normalize_tag(tag)
                if key in keys or len(tag) > MAX_LEN:
                    continue
                keys.add(key)
                out.append(tag)
                made[kinds[k]] += 1
                if len(out) == n:
                    break
            bar.update(len(out) - before)
    made["redrawn"] = drawn - sum(made.values())
    return out, made


def read_source(path: str | Path) -> list[str]:
    """One tag per line; empty lines are an error naming the line, duplicates are merged."""
    path = Path(path)
    tags: dict[str, None] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tag = line.rstrip("\r\n")
            if not tag.strip():
                raise UserError(f"{path}:{lineno}: empty tag (one non-empty tag per line expected)")
            tags[tag] = None
    return list(tags)


def default_tags(seed: int = 0, n: int = 5000) -> list[str]:
    """The embedded default data: the 50 selected tags, COMMON_WORDS, then their variants (n tags)."""
    from tagfold.pipeline.selected import load_selected

    source = list(dict.fromkeys(list(load_selected().tags) + list(COMMON_WORDS)))
    return grow_tags(source, n, seed, progress=False)


def main(argv: list[str] | None = None) -> int:
    from tagfold.pipeline.options import COUNT, SEED, parser

    p = parser("tagfold synth-tags", __doc__.splitlines()[0])
    p.add_argument("--n", type=COUNT, default=FULL_SIZE, help="tags in the output")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (same seed, same tags)")
    p.add_argument("--out", type=Path, required=True, help="output file, one tag per line")
    p.add_argument("--source", type=Path, default=None,
                   help="real tags, one per line (default: shared data lastfm/tags.txt)")
    p.add_argument("--model", choices=("variants", "phrases"), default="variants",
                   help="noise model: variants (tagnoise edits, this module) or phrases (long joined "
                        "phrases, unspaced, near-limit, foreign-script and accented tags: synth_phrases)")
    p.add_argument("--sqlite", action="store_true",
                   help="write an MSD-shaped Last.fm SQLite database (tids, tags, tid_tag; synth_msd) "
                        "holding the tags, instead of a tag list")
    p.add_argument("--tracks", type=COUNT, default=None, help="with --sqlite: tracks (default 505,216, the MSD's)")
    p.add_argument("--links", type=COUNT, default=None,
                   help="with --sqlite: track-tag links (default 9,117,607, the MSD's)")
    args = p.parse_args(argv)
    from tagfold.pipeline.io import atomic_path
    from tagfold.pipeline.paths import shared_data

    source = args.source if args.source is not None else shared_data() / "lastfm" / "tags.txt"
    real = read_source(source)
    if args.model == "phrases":
        from tagfold.pipeline.tags import synth_phrases

        tags, made = synth_phrases._grow(real, args.n, args.seed, progress=True)
        kinds = ", ".join(f"{k} {made[k]:,}" for k in synth_phrases.KINDS)
    else:
        tags, made = _grow(real, args.n, args.seed, progress=True)
        redrawn = made.pop("redrawn")
        kinds = ", ".join(f"{k} {made[k]:,}" for k in tagnoise.KINDS) + f"; {redrawn:,} draws redrawn"
    if args.sqlite:
        from tagfold.pipeline.tags import synth_msd

        n_tracks = args.tracks or synth_msd.MSD_TRACKS
        n_links = args.links or synth_msd.MSD_LINKS
        synth_msd.write_msd_database(args.out, tags, n_tracks, n_links, args.seed)
        what = f"SQLite database of {n_tracks:,} tracks, {n_links:,} links and"
    else:
        with atomic_path(args.out) as tmp:
            tmp.write_text("\n".join(tags) + "\n", encoding="utf-8")
        what = "list of"
    print(f"{args.out}: {what} {len(tags):,} tags: {len(real):,} real from {source} + "
          f"{len(tags) - len(real):,} variants ({kinds})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
