"""A second full-size tag job with a different noise model from synth.grow_tags (tagnoise).

synth.grow_tags makes one small edit per variant (a typo, a join, a decade form, ...). Real
Last.fm lists also hold what that model never makes, and these stress other code paths
(long token lists, segmentation of long joined strings, non-Latin scripts). Kinds, drawn with
KIND_WEIGHTS, each from randomly drawn real tags:

- ``phrase``: 2-6 real tags joined with ' and ', ' / ', ' - ', ', ' or ' & '
  ('indie rock / sad songs and female vocalists');
- ``unspaced``: a real multi-word tag (or two real tags) with every space and hyphen removed
  ('femalevocalistsindierock');
- ``near_limit``: real tags joined with ' / ' until the tag is 230-255 characters long, ingest's
  default limit ('max_len' 255) included;
- ``foreign``: a real tag combined with a music word in Cyrillic, Japanese, Chinese, Korean,
  Greek or a Latin-script language with accents ('русский рок', 'indie ロック', 'música indie');
- ``accented``: a real tag with some vowels given diacritics ('röck', 'métal', 'indie pöp'),
  as typed on non-English keyboards.

Real tags come first, verbatim, then variants until exactly n tags; a variant is kept only if
its normalised form (tagfold.pipeline.tags.vocab.normalize_tag) is new and it is at most
MAX_LEN characters. Deterministic for a seed.

CLI: ``tagfold synth-tags --model phrases --n 522366 --seed 0 --out tags_phrases.txt``.
"""
from __future__ import annotations

import sys
from collections import Counter
from typing import Sequence

import numpy as np

MAX_LEN = 255

KIND_WEIGHTS: dict[str, float] = {
    "phrase": 0.34, "unspaced": 0.2, "near_limit": 0.04, "foreign": 0.22, "accented": 0.2,
}
KINDS = tuple(KIND_WEIGHTS)
assert abs(sum(KIND_WEIGHTS.values()) - 1) < 1e-12

JOINERS = (" and ", " / ", " - ", ", ", " & ")

# Music words as users of other scripts and languages type them (genres, moods, descriptions).
FOREIGN_WORDS: tuple[str, ...] = (
    # Russian / Ukrainian (Cyrillic)
    "рок", "русский рок", "поп", "металл", "панк", "джаз", "электроника", "грустный", "весёлый",
    "красивая музыка", "для души", "шансон", "инди", "любимое", "альтернатива", "спокойная",
    "український рок", "пісні",
    # Japanese
    "ロック", "ポップ", "日本", "邦楽", "アニメ", "ジャズ", "メタル", "癒し", "かっこいい", "女性ボーカル",
    "ヴィジュアル系", "懐メロ",
    # Chinese
    "摇滚", "流行", "华语", "民谣", "电子", "爵士", "悲伤", "安静", "经典", "粤语", "轻音乐",
    # Korean
    "케이팝", "발라드", "록", "힙합", "댄스", "감성", "인디",
    # Greek
    "ροκ", "λαϊκά", "έντεχνο",
    # Latin-script languages with accents
    "música", "canción", "rock en español", "trova", "chanson française", "électronique",
    "mélancolique", "été", "música brasileira", "forró", "samba-canção", "deutschsprachig",
    "schön", "traurig", "fröhlich", "ruhig", "hårdrock", "svensk pop", "ballada", "piosenka",
    "smutne", "pięknie", "energetycznie", "türkçe pop", "şarkı", "hüzünlü", "nhạc trẻ", "việt nam",
)

# Diacritics a non-English keyboard adds to a vowel.
ACCENTS = {"a": "áàäâã", "e": "éèëê", "i": "íìïî", "o": "óòöôõ", "u": "úùüû", "y": "ý", "n": "ñ", "c": "ç"}


def _phrase(rng, real, u) -> str:
    k = 2 + int(u[0] * 5)
    parts = [real[int(x * len(real))] for x in rng.random(k)]
    return JOINERS[int(u[1] * len(JOINERS))].join(parts)


def _unspaced(rng, real, multi, u) -> str:
    if u[0] < 0.6 and multi:
        base = multi[int(u[1] * len(multi))]
    else:
        base = real[int(u[1] * len(real))] + real[int(u[2] * len(real))]
    return base.replace(" ", "").replace("-", "")


def _near_limit(rng, real, u) -> str:
    goal = 230 + int(u[0] * 26)  # 230..255
    text = real[int(u[1] * len(real))]
    while len(text) < goal:
        text += " / " + real[int(rng.random() * len(real))]
    return text[:goal].rstrip(" /")


def _foreign(real, u) -> str:
    word = FOREIGN_WORDS[int(u[0] * len(FOREIGN_WORDS))]
    if u[1] < 0.3:
        return word
    tag = real[int(u[2] * len(real))]
    return f"{word} {tag}" if u[3] < 0.5 else f"{tag} {word}"


def _accented(real, u) -> str:
    tag = real[int(u[0] * len(real))]
    spots = [i for i, c in enumerate(tag) if c in ACCENTS]
    if not spots:
        return tag + " " + FOREIGN_WORDS[int(u[1] * len(FOREIGN_WORDS))]
    chars = list(tag)
    n = 1 + int(u[2] * min(3, len(spots)))
    start = int(u[3] * len(spots))
    for i in spots[start:start + n] or spots[:1]:
        options = ACCENTS[chars[i]]
        chars[i] = options[int(u[4] * len(options))]
    return "".join(chars)


def grow_phrase_tags(real: Sequence[str], n: int, seed: int = 0, *, progress: bool = True) -> list[str]:
    """``real`` (non-empty, unique) first, then variants of the kinds above until exactly ``n``."""
    tags, _ = _grow(real, n, seed, progress)
    return tags


def _grow(real: Sequence[str], n: int, seed: int, progress: bool) -> tuple[list[str], Counter]:
    from tqdm import tqdm

    from tagfold.pipeline.tags.vocab import normalize_tag

    real = list(real)
    if not real or len(set(real)) != len(real):
        raise ValueError("real tags must be non-empty and unique")
    if len(real) > n:
        raise ValueError(f"{len(real):,} real tags already exceed the requested n={n:,}")
    multi = [t for t in real if " " in t]
    weights = np.array([KIND_WEIGHTS[k] for k in KINDS])
    rng = np.random.default_rng(seed)
    keys = {normalize_tag(t) for t in real}
    out = list(real)
    made: Counter = Counter()
    with tqdm(total=n, initial=len(out), desc="synth phrase tags", unit="tag", disable=not progress,
              file=sys.stderr) as bar:
        while len(out) < n:
            size = max(256, int((n - len(out)) * 1.1))
            kinds = rng.choice(len(KINDS), size=size, p=weights).tolist()
            draws = rng.random((size, 5)).tolist()
            before = len(out)
            for k, u in zip(kinds, draws):
                kind = KINDS[k]
                if kind == "phrase":
                    tag = _phrase(rng, real, u)
                elif kind == "unspaced":
                    tag = _unspaced(rng, real, multi, u)
                elif kind == "near_limit":
                    tag = _near_limit(rng, real, u)
                elif kind == "foreign":
                    tag = _foreign(real, u)
                else:
                    tag = _accented(real, u)
                if len(tag) > MAX_LEN or not tag.strip():
                    continue
                key = normalize_tag(tag)
                if key in keys:
                    continue
                keys.add(key)
                out.append(tag)
                made[kind] += 1
                if len(out) == n:
                    break
            bar.update(len(out) - before)
    return out, made
