"""Token-level normalisation for Stage II: text cleaning, decade forms, typo repair, segmentation.

Stage II works on words, not raw substrings: a tag is cleaned and split into tokens once, and
every distinct token is analysed once (cached) into zero or more canonical words. Only tokens
that are not words of their own (not in the rule lexicon, not in an English frequency
dictionary) are repaired, so 'photograph' stays a photograph while 'favouritejazz' becomes
'favourite jazz' and 'metul' becomes 'metal'.
"""
from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Callable, Iterable, Sequence

# '&', '+', "'n'" and ' n ' all mean 'and' in tags ("rock'n'roll", 'r&b', 'soul n motown').
_AND = re.compile(r"\s*&\s*|\s*\+\s*")
_N_FORMS = re.compile(r"['’`´]n['’`´]?|\bn['’`´]")
_APOSTROPHE = re.compile(r"['’`´]")
_TOKEN = re.compile(r"[^\W_]+")
# '70-er', "80 's", '90-ies': a decade suffix split off its number by punctuation.
_DETACHED_DECADE = re.compile(r"\b(\d{2,4})[\s\-]+(s|er|ies|ties)\b")
_TRIPLE = re.compile(r"(.)\1{2,}")
_DIGIT = re.compile(r"\d")
_ALPHA_DIGIT = re.compile(r"[^\W\d_]+|\d+")

_YEAR = re.compile(r"(19[6-9]|200)(\d)(s)?")
_SHORT_DECADE = re.compile(r"([06789])0(s|ies|ties|er|ern)")
_DECADE_BY_TENS = {"6": "60s", "7": "70s", "8": "80s", "9": "90s", "0": "2000s"}


def normalize_text(tag: str) -> str:
    """Lower case, accents stripped, '&'/'+'/"'n'" spelled ' and '/' n ', apostrophes removed."""
    text = tag.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    # The checks skip regex passes that most tags do not need (522k tags in a few seconds).
    if "&" in text or "+" in text:
        text = _AND.sub(" and ", text)
    if "'" in text or "`" in text or not text.isascii():
        text = _N_FORMS.sub(" n ", text)
        # "80's" -> "80s", "don't" -> "dont": an apostrophe never separates words in tags.
        text = _APOSTROPHE.sub("", text)
    return text


def tokenize(tag: str) -> list[str]:
    """Words of a tag: runs of letters/digits after normalize_text (punctuation, hyphens split)."""
    # Fast path for the common plain tag ('indie rock'): nothing to normalise.
    if tag.isascii() and tag.islower() and tag.replace(" ", "").isalpha():
        return tag.split()
    text = normalize_text(tag)
    if not text.isalpha() and _DIGIT.search(text):
        text = _DETACHED_DECADE.sub(r"\1\2", text)
    return _TOKEN.findall(text)


def decade_of(token: str) -> str | None:
    """The decade a numeric token names, or None.

    Accepted (guideline rule 5): '80s', '80ies', '80er', '80ties', '1980s', '1985', '2003',
    '00s', '2000s'. A bare '80' is not a decade (too often a count or a track number).
    """
    m = _YEAR.fullmatch(token)
    if m:
        if m.group(1) == "200":
            return "2000s" if m.group(2) == "0" or not m.group(3) else None
        return _DECADE_BY_TENS[m.group(1)[2]]
    m = _SHORT_DECADE.fullmatch(token)
    if m:
        return _DECADE_BY_TENS[m.group(1)]
    return None


def squeeze_repeats(token: str) -> str:
    """'jazzzz' -> 'jazz', 'veriiiigood' -> 'veriigood': runs of 3+ letters become 2."""
    return _TRIPLE.sub(r"\1\1", token)


def split_alpha_digit(token: str) -> list[str]:
    """'70spop' -> ['70', 's', 'pop'] is wrong for decades, so decade suffixes stay attached:
    '70spop' -> ['70s', 'pop'], 'dark1' -> ['dark', '1']."""
    parts = _ALPHA_DIGIT.findall(token)
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.isdigit() and i + 1 < len(parts):
            nxt = parts[i + 1]
            for suffix in ("ties", "ies", "ern", "er", "s"):
                if nxt.startswith(suffix) and decade_of(part + suffix):
                    out.append(part + suffix)
                    rest = nxt[len(suffix):]
                    if rest:
                        out.append(rest)
                    i += 2
                    break
            else:
                out.append(part)
                i += 1
            continue
        out.append(part)
        i += 1
    return out


@lru_cache(maxsize=1)
def english_frequencies() -> dict[str, int]:
    """symspellpy's English frequency dictionary (82,765 words), word -> corpus count."""
    path = resources.files("symspellpy").joinpath("frequency_dictionary_en_82_765.txt")
    freq: dict[str, int] = {}
    for line in path.read_text("utf-8").splitlines():
        word, _, count = line.partition(" ")
        freq[word] = int(count)
    return freq


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def best_matches(queries: Sequence[str], vocab: Sequence[str], score_cutoff: float):
    """Best Jaro-Winkler vocabulary match per query: (index array, -1 for none; score array),
    from the one Jaro-Winkler entry point (tagfold.native.jaro_winkler, native or reference)."""
    from tagfold.native.jaro_winkler import best_match

    return best_match(list(queries), list(vocab), score_cutoff)


class Segmenter:
    """Split a joined token into words by minimum total cost (a unigram language model).

    Cost of a word = -log(p) from the English frequency dictionary; rule-lexicon words cost as
    much as a common English word so 'favouritejazz' prefers 'favourite jazz'; characters no
    word covers cost `unknown_char_cost` each, so 'testosterock' still yields '... rock'.
    """

    def __init__(self, lexicon: Iterable[str], unknown_char_cost: float = 12.0, max_word_len: int = 20):
        freq = english_frequencies()
        total = float(sum(freq.values()))
        self.cost = {w: math.log(total / c) for w, c in freq.items() if len(w) > 1 or w in ("a", "i")}
        lexicon_cost = math.log(total / 1e7)
        for word in lexicon:
            self.cost[word] = min(self.cost.get(word, lexicon_cost), lexicon_cost)
        self.unknown_char_cost = unknown_char_cost
        self.max_word_len = max_word_len
        self._segmenters: dict[str, Callable[[str], list[str]]] = {}

    def compiled(self, impl: str | None = None) -> Callable[[str], list[str]]:
        """token -> words in order (characters no word covers left out), by the implementation
        `impl` / $TAGFOLD_IMPL picks (tagfold.native.stage2.segmenter: the native trie or the
        plain reference). Each is built once, on first use, and kept (the trie of the
        package's 83k words takes ~0.01-0.04 s): Stage II builds it before forking its
        workers, which then share it."""
        from tagfold.native.stage2 import STAGE2_EXTENSION, resolve_impl, segmenter

        impl = resolve_impl(impl, native_module=STAGE2_EXTENSION)
        if impl not in self._segmenters:
            self._segmenters[impl] = segmenter(self.cost, self.unknown_char_cost, self.max_word_len, impl)
        return self._segmenters[impl]
