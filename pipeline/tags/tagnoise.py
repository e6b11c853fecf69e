"""Seeded, realistic Last.fm-style variants of a tag: what users actually type.

Used to grow the real tag sample to full size (`tagfold synth-tags`), to give the demo
dataset raw user tags, and as the default data of a fresh machine. Every variant is a
deterministic function of the tag and a few uniform draws, so one seed gives one output.

Kinds (each always returns a string different from the input tag):

- ``typo``: one keyboard slip. Swap two adjacent different letters ('rock' -> 'rokc'), drop
  a letter ('jazz' -> 'jaz'), double a letter ('pop' -> 'popp') or hit a QWERTY neighbour
  key ('sad' -> 'sas'). Where the chosen slip would leave the tag unchanged it doubles a letter.
- ``join``: separators removed ('hip hop' -> 'hiphop', 'indie-rock' -> 'indierock'); a
  one-word tag is glued to a common music word instead ('rock' -> 'rockmusic', 'bestrock').
- ``hyphen``: spaces become hyphens ('hip hop' -> 'hip-hop'); hyphens become spaces
  ('singer-songwriter' -> 'singer songwriter'); a one-word tag gets a hyphenated genre
  prefix ('metal' -> 'nu-metal', 'pop' -> 'electro-pop').
- ``decade_form``: a decade written another way. A tag holding a decade ('80s', "80's",
  'eighties', '1980s', '1985', '80er', ...) gets that decade in a different form
  ('80s' -> 'eighties', '90s rock' -> "1990's rock"); any other tag is prefixed with a
  decade form ('rock' -> "70's rock").
- ``phrase``: compound with one or two other real-looking tag words before and/or after it
  ('indie rock' -> 'sad indie rock', 'rock' -> 'british rock metal'). Callers may pass their
  own ``partners`` (e.g. other real tags) to combine real tags with each other.
- ``modifier``: an intensifier, possessive or filler around the tag ('chill' ->
  'super chill', 'jazz' -> 'favourite jazz', 'sad' -> 'really sad', 'rock' -> 'rock music').
- ``synonym``: a foreign-language or synonym form of one of its words ('sad' -> 'triste',
  'happy' -> 'alegre', 'american' -> 'usa', 'british rock' -> 'uk rock'); a tag with no
  known word gets a language/country qualifier ('rock' -> 'rock español', 'deutsch rock').
- ``junk``: a personal or meaningless tag unrelated to the input ('my favorites 2009',
  'zzzz', 'seen live', 'check out', 'albums i own').

Apart from these kinds, `meaning_variant` gives a tag that names a selected tag by meaning only
('cheerful' -> happy, 'ledsen' -> sad, 'grunge era' -> 90s), from hand-written lists kept apart
from the Stage II rule tables (pipeline/data/demo/); the demo types one at `MEANING_RATE`.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

KINDS: tuple[str, ...] = ("typo", "join", "hyphen", "decade_form", "phrase", "modifier", "synonym", "junk")

# Uniform draws one variant consumes; fixed so bulk generation can pre-draw a matrix.
N_DRAWS = 6

_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_KEY_ROWS):
    for _c, _ch in enumerate(_row):
        _near = [_row[i] for i in (_c - 1, _c + 1) if 0 <= i < len(_row)]
        for _other in (_r - 1, _r + 1):
            if 0 <= _other < len(_KEY_ROWS):
                _near += [_KEY_ROWS[_other][i] for i in (_c, _c + 1) if i < len(_KEY_ROWS[_other])]
        _NEIGHBOURS[_ch] = "".join(sorted(set(_near)))

_JOIN_WORDS = ("music", "song", "songs", "best", "love", "rock", "pop", "good", "hard", "soft")

_HYPHEN_PREFIXES = ("post", "neo", "nu", "alt", "electro", "proto", "indie", "synth", "avant", "pseudo")

_DECADE_WORDS = {
    "6": "sixties", "7": "seventies", "8": "eighties", "9": "nineties", "0": "noughties", "1": "tens",
}
_DECADE_WORD_RE = "|".join(sorted(_DECADE_WORDS.values(), key=len, reverse=True))
# A decade in any of the forms users write: 80s 80's '80s 1980s 1980's 1985 80er 80ies eighties.
_DECADE_RE = re.compile(
    r"(?<![0-9a-z])(?:'?(?:(19|20)([0-9])([0-9])(?:'?s)?|([0-9])0(?:'?s|er|ies))|(" + _DECADE_WORD_RE + r"))(?![0-9a-z])",
    re.IGNORECASE,
)

_PHRASE_WORDS = (
    "sad", "happy", "chill", "dark", "mellow", "melancholic", "dreamy", "beautiful", "epic",
    "british", "american", "german", "swedish", "french", "japanese", "canadian", "uk", "australian",
    "indie", "rock", "pop", "metal", "folk", "jazz", "electronic", "punk", "soul", "blues",
    "acoustic", "ambient", "hip hop", "country", "alternative", "experimental", "progressive",
    "female vocalists", "male vocals", "guitar", "piano", "love songs", "summer", "road trip",
    "night", "rainy day", "driving", "workout", "classic", "underground", "lo-fi", "live",
)

_PREFIX_MODIFIERS = (
    "super", "really", "very", "so", "totally", "kinda", "pure", "favourite", "favorite",
    "my favorite", "best", "the best", "awesome", "great", "soft", "heavy", "classic", "good",
    "love", "absolutely", "quite", "most", "true", "real",
)
_SUFFIX_MODIFIERS = (
    "music", "song", "songs", "vibes", "stuff", "as hell", "!!!", "!", "tunes", "forever",
    "at its best", "love", "mood",
)

# word -> foreign-language or synonym forms (never the word itself)
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sad": ("triste", "traurig", "tristeza", "sadness", "depressing"),
    "happy": ("alegre", "feliz", "froehlich", "gluecklich", "joyful", "heureux"),
    "love": ("amor", "liebe", "amour", "amore"),
    "loved": ("amado", "geliebt", "adored"),
    "american": ("usa", "us", "america", "amerikanisch", "americana"),
    "british": ("uk", "english", "britain", "england", "brit"),
    "chill": ("chilled", "relaxing", "relax", "tranquilo"),
    "chillout": ("chill out", "relax", "lounge"),
    "calm": ("tranquilo", "ruhig", "calme", "peaceful"),
    "dark": ("dunkel", "oscuro", "sombre", "gloomy"),
    "beautiful": ("hermoso", "schoen", "bello", "belle", "lindo", "gorgeous"),
    "dance": ("baile", "tanzen", "danse", "dancing"),
    "party": ("fiesta", "feiern", "festa"),
    "romantic": ("romantico", "romantisch", "romantique"),
    "sexy": ("sensual", "sexi", "caliente"),
    "funny": ("divertido", "lustig", "humor", "comedy"),
    "energetic": ("energico", "energy", "energetico"),
    "great": ("genial", "grandioso", "excellent"),
    "awesome": ("geil", "incrivel", "genial", "amazing"),
    "cool": ("legal", "guay", "cooles"),
    "favorite": ("favourite", "fav", "fave", "favorito", "lieblings"),
    "good": ("bueno", "gut", "bom", "buono", "nice"),
    "hot": ("caliente", "heiss", "quente"),
    "dreamy": ("sonhador", "traumhaft", "dreaming"),
    "melancholic": ("melancolia", "melancolico", "melancholisch", "melancholy"),
    "mellow": ("suave", "smooth", "soft"),
    "intense": ("intenso", "heftig"),
    "haunting": ("eerie", "spooky", "inquietante"),
    "electronic": ("electronica", "elektronisch", "electro", "elettronica"),
    "acoustic": ("acustico", "akustik", "unplugged"),
    "instrumental": ("instrumentale", "no vocals", "instrumentals"),
    "folk": ("folklore", "volksmusik", "folkmusik"),
    "oldies": ("old", "antigo", "classics", "golden oldies"),
    "german": ("deutsch", "germany", "deutschland"),
    "french": ("francais", "france", "francaise"),
    "spanish": ("espanol", "spain", "espana"),
    "music": ("musica", "musik", "musique"),
}
_QUALIFIERS = ("español", "deutsch", "francais", "italiano", "brasil", "japan", "nacional", "uk", "usa")

_JUNK = (
    "my favorites {year}", "zzzz", "seen live", "check out", "albums i own", "favorite songs",
    "to listen", "heard on pandora", "best of {year}", "{n} stars", "on repeat", "my music",
    "wishlist", "asdf", "xxx", "ipod", "spotify", "under {n}000 listeners", "buy", "want to see live",
    "songs i absolutely love", "{year}", "lastfm radio", "to download", "need more",
)


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _typo(tag: str, u: Sequence[float]) -> str:
    n = len(tag)
    i = min(int(u[1] * n), n - 1)
    op = int(u[0] * 4)
    if op == 0 and n >= 2:
        i = min(i, n - 2)
        # swap at the first adjacent differing pair from i on (wrapping), so it changes the tag
        for k in range(n - 1):
            j = (i + k) % (n - 1)
            if tag[j] != tag[j + 1]:
                return tag[:j] + tag[j + 1] + tag[j] + tag[j + 2:]
    elif op == 1 and n >= 2:
        out = tag[:i] + tag[i + 1:]
        if out.strip():
            return out
    elif op == 3:
        near = _NEIGHBOURS.get(tag[i].lower(), "")
        if near:
            return tag[:i] + _pick(near, u[2]) + tag[i + 1:]
    return tag[:i] + tag[i] + tag[i:]


def _join(tag: str, u: Sequence[float]) -> str:
    joined = re.sub(r"[\s\-_/]+", "", tag)
    if joined != tag and joined:
        return joined
    word = _pick(_JOIN_WORDS, u[0])
    return word + tag if u[1] < 0.5 else tag + word


def _hyphen(tag: str, u: Sequence[float]) -> str:
    if " " in tag.strip():
        return re.sub(r"\s+", "-", tag.strip())
    if "-" in tag:
        return tag.replace("-", " ")
    return _pick(_HYPHEN_PREFIXES, u[0]) + "-" + tag


def _decade_forms(century: str, digit: str, year_digit: str) -> list[str]:
    """Every way to write the decade `century`+`digit`0 (century '19' or '20')."""
    short = f"{digit}0"
    forms = [f"{short}s", f"{short}'s", f"'{short}s", f"{century}{short}s", f"{century}{short}'s",
             f"{century}{digit}{year_digit}", f"{short}er", f"{short}ies"]
    if digit in _DECADE_WORDS and not (century == "19" and digit in "01"):
        forms.append(_DECADE_WORDS[digit])
    return forms


def _decade_form(tag: str, u: Sequence[float]) -> str:
    year_digit = str(int(u[2] * 10))
    m = _DECADE_RE.search(tag)
    if m is None:
        digit = _pick("678901", u[0])
        century = "20" if digit in "01" else "19"
        return _pick(_decade_forms(century, digit, year_digit), u[1]) + " " + tag
    if m.group(5):
        word = m.group(5).lower()
        digit = next(d for d, w in _DECADE_WORDS.items() if w == word)
        century = "20" if digit in "01" else "19"
    elif m.group(2):
        century, digit = m.group(1), m.group(2)
    else:
        digit = m.group(4)
        century = "20" if digit in "01" else "19"
    forms = [f for f in _decade_forms(century, digit, year_digit) if f.lower() != m.group(0).lower()]
    return tag[:m.start()] + _pick(forms, u[1]) + tag[m.end():]


def _phrase(tag: str, u: Sequence[float], partners: Sequence[str] = _PHRASE_WORDS) -> str:
    first = _pick(partners, u[1])
    if u[0] < 0.45:
        out = f"{first} {tag}"
    elif u[0] < 0.8:
        out = f"{tag} {first}"
    else:
        out = f"{first} {tag} {_pick(partners, u[2])}"
    return out if out != tag else f"{tag} {tag}"


def _modifier(tag: str, u: Sequence[float]) -> str:
    if u[0] < 0.7:
        return f"{_pick(_PREFIX_MODIFIERS, u[1])} {tag}"
    suffix = _pick(_SUFFIX_MODIFIERS, u[1])
    return f"{tag}{suffix}" if suffix.startswith("!") else f"{tag} {suffix}"


def _synonym(tag: str, u: Sequence[float]) -> str:
    words = tag.split(" ")
    known = [i for i, w in enumerate(words) if w.lower() in _SYNONYMS]
    if known:
        i = known[min(int(u[0] * len(known)), len(known) - 1)]
        words[i] = _pick(_SYNONYMS[words[i].lower()], u[1])
        return " ".join(words)
    qualifier = _pick(_QUALIFIERS, u[1])
    return f"{tag} {qualifier}" if u[2] < 0.6 else f"{qualifier} {tag}"


def _junk(tag: str, u: Sequence[float]) -> str:
    for k in range(len(_JUNK)):
        template = _JUNK[(min(int(u[0] * len(_JUNK)), len(_JUNK) - 1) + k) % len(_JUNK)]
        out = template.format(year=2003 + int(u[1] * 10), n=1 + int(u[2] * 5))
        if out == "zzzz":
            out = "z" * (2 + int(u[3] * 5))
        if out != tag:
            return out
    raise AssertionError("unreachable: junk templates are distinct")


_KIND_FUNCS: dict[str, Callable[[str, Sequence[float]], str]] = {
    "typo": _typo, "join": _join, "hyphen": _hyphen, "decade_form": _decade_form,
    "phrase": _phrase, "modifier": _modifier, "synonym": _synonym, "junk": _junk,
}
assert tuple(_KIND_FUNCS) == KINDS


def apply_kind(tag: str, kind: str, draws: Sequence[float], partners: Sequence[str] | None = None) -> str:
    """The `kind` variant of `tag` from `N_DRAWS` uniforms in [0, 1) (bulk generators pre-draw them)."""
    if kind not in _KIND_FUNCS:
        raise ValueError(f"unknown variant kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if not tag or not tag.strip():
        raise ValueError("cannot make a variant of an empty tag")
    if kind == "phrase" and partners:
        return _phrase(tag, draws, partners)
    return _KIND_FUNCS[kind](tag, draws)


def variant(tag: str, rng: np.random.Generator, kind: str | None = None,
            *, partners: Sequence[str] | None = None) -> str:
    """One seeded variant of `tag`, of `kind` (a random non-junk kind when None); never `tag` itself."""
    draws = rng.random(N_DRAWS + 1).tolist()
    if kind is None:
        kind = _pick(KINDS[:-1], draws[N_DRAWS])
    return apply_kind(tag, kind, draws[:N_DRAWS], partners)


# Share of a true tag's mentions typed as a word that carries it only by meaning (meaning_words).
MEANING_RATE = 0.10
# Real-looking tags without a target added per demo track (uniform, inclusive). With MEANING_RATE
# they set how many of the raw tags that spelling rules leave unmapped carry a tag by meaning: about
# 1 in 10 on the demo (README), as on real tags: 21 of the 211 certain rows of
# ../shared/data/lastfm/gold_stage3_dev.tsv (tags spelling rules tend not to map) carry a target.
UNRELATED_PER_TRACK = (0, 4)


def meaning_words() -> dict[str, tuple[str, ...]]:
    """selected tag -> raw tags naming it by meaning only (package data demo/meaning_words.tsv,
    written for the demo independently of the Stage II rule tables; see its README)."""
    from importlib import resources
    text = resources.files("tagfold.pipeline").joinpath("data/demo/meaning_words.tsv").read_text("utf-8")
    out: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            tag, words = line.split("\t")
            out[tag] = tuple(w.strip() for w in words.split(";") if w.strip())
    return out


_MEANING: dict[str, tuple[str, ...]] | None = None
_UNRELATED: tuple[str, ...] | None = None


def unrelated_tag(rng: np.random.Generator) -> str:
    """A real-looking raw tag that names no selected tag ('piano', 'night drive', 'bob dylan';
    package data demo/unrelated_tags.txt)."""
    global _UNRELATED
    if _UNRELATED is None:
        from importlib import resources
        text = resources.files("tagfold.pipeline").joinpath("data/demo/unrelated_tags.txt").read_text("utf-8")
        _UNRELATED = tuple(t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#"))
    return _pick(_UNRELATED, float(rng.random()))


def meaning_variant(tag: str, rng: np.random.Generator) -> str | None:
    """A raw tag that names `tag` by meaning only, or None when the lists have none for it."""
    global _MEANING
    if _MEANING is None:
        _MEANING = meaning_words()
    words = _MEANING.get(tag)
    return _pick(words, float(rng.random())) if words else None


def noisy_user_tags(latent: Sequence[str], rng: np.random.Generator, *, p_exact: float = 0.4,
                    n_junk: tuple[int, int] = (0, 2), p_meaning: float = 0.0,
                    n_unrelated: tuple[int, int] = (0, 0)) -> list[str]:
    """What a few users would type for a track whose true tags are `latent`.

    Each true tag is typed once: with probability `p_meaning` as a word that carries it only
    by meaning (`meaning_variant`, where the lists have one), else exactly with probability
    `p_exact`, else as a random non-junk variant; with probability 0.3 a second user adds
    another variant of it. Then between n_junk[0] and n_junk[1] (inclusive) junk tags and
    between n_unrelated[0] and n_unrelated[1] real-looking tags that name no selected tag.
    Duplicates are dropped keeping first occurrence; the result is never empty (one junk tag
    when nothing else was typed). With p_meaning=0 and n_unrelated=(0, 0) no draw is spent on
    them, so the output equals that of the generator before they existed.
    """
    if not 0.0 <= p_exact <= 1.0:
        raise ValueError(f"p_exact must be in [0, 1], got {p_exact}")
    if not 0.0 <= p_meaning <= 1.0:
        raise ValueError(f"p_meaning must be in [0, 1], got {p_meaning}")
    lo, hi = n_junk
    if not 0 <= lo <= hi:
        raise ValueError(f"n_junk must be (lo, hi) with 0 <= lo <= hi, got {n_junk}")
    typed: list[str] = []
    for tag in latent:
        meant = meaning_variant(tag, rng) if p_meaning and rng.random() < p_meaning else None
        if meant is not None:
            typed.append(meant)
        elif rng.random() < p_exact:
            typed.append(tag)
        else:
            typed.append(variant(tag, rng))
        if rng.random() < 0.3:
            typed.append(variant(tag, rng))
    n = int(rng.integers(lo, hi + 1))
    if n == 0 and not typed:
        n = 1
    typed += [variant("junk", rng, "junk") for _ in range(n)]
    if n_unrelated[1] > 0:
        typed += [unrelated_tag(rng) for _ in range(int(rng.integers(n_unrelated[0], n_unrelated[1] + 1)))]
    return list(dict.fromkeys(typed))
