"""Stage II: collapse every raw tag onto zero or more of the selected tags by rules.

How a tag is read (each step documented in pipeline/data/rules/README.md):

1. Clean and split into tokens once (normalize.tokenize): case, accents, punctuation,
   hyphens, '&'/'+'/"'n'" -> 'and'/'n', apostrophes ("80's" -> '80s'). A dash with white
   space beside it separates the parts of a tag ('artist - title'): SEPARATOR marks it. A
   truncated last word completes its two-word phrase ('indie ro' -> 'indie rock').
2. Every distinct token is analysed once into canonical words, in this order, the first that
   applies wins:
   a. a word of its own: in the rule lexicon, in `unsplit.txt`, or in the English frequency
      dictionary -> kept as is ('photograph' stays a photograph: no substring accidents);
   b. a decade form ('80s', '1985', '80er') -> the decade tag (rule 'decade');
   c. letters glued to digits ('70spop', 'dark1') -> split and analysed piece by piece;
   d. a typo or truncation of a lexicon word ('metul', 'hapy', 'instrumen'): Jaro-Winkler
      >= typo_cutoff (native bulk kernel, one batch for all unknown tokens), confirmed by
      edit distance or by being a long prefix (rule 'typo');
   d2. a word form of a selected word: its stem and a short ending that is no word
      ('metalizado', 'energetycznie', 'chillailua'; rule 'form');
   e. a joined word containing a lexicon word ('favouritejazz', 'harddancemusic'): split by
      a unigram word-segmentation model (rule 'segmented'), unless it is a selected word
      followed by a common non-descriptive word: a name ('soulflower', 'rockclimbing').
3. The word sequence is matched left to right against the phrase tables, longest phrase
   first (most specific first: 'indie rock' before 'indie' and 'rock'; 'greatest hits'
   before 'greatest'). A phrase after a negator ('non metal') is dropped. Blocker phrases
   consume their words and give nothing ('good old', 'X rocks', 'dancehall', 'iggy pop',
   and the idioms of idioms.tsv: 'looks good', 'used to be great'). In a separated tag, a
   part holding a word that does not describe music (descriptors.txt, the lexicon and the
   Stage I vocabularies describe it) is a name or a title and gives nothing.
4. When both halves of a two-word selected tag were found separately ('rock indie uk'), the
   two-word tag replaces them (guideline rule 2: the most specific tag the words state).

Precedence is therefore position and phrase length, never table or alphabetical order; a
phrase may appear in one rule table only (checked at load time).
"""
from __future__ import annotations

import multiprocessing as mp
import re
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from tagfold.native.dispatch import resolve_impl
from tagfold.native.stage2 import match_codes
from tagfold.pipeline.tags import normalize as norm
from tagfold.pipeline.selected import SelectedTags, load_selected
from tagfold.pipeline.errors import UserError
from tagfold.pipeline.io import worker_pool

# Table file -> rule name reported in stage2.parquet. Order only matters for error messages.
RULE_TABLES = {
    "synonyms.tsv": "synonym",
    "foreign.tsv": "foreign",
    "countries.tsv": "country",
    "decades.tsv": "decade",
    "blockers.tsv": "blocked",
}
# Every value of stage2.parquet's `rule` column.
RULE_NAMES = ("exact", "phrase", "compound", "decade", "synonym", "foreign", "country", "typo", "segmented",
              "form")
# When a phrase is built from repaired words, the row reports the repair, the least certain
# evidence first: a typo-corrected synonym is reported as 'typo'.
_TRIPLE_LETTER = re.compile(r"(.)\1\1")
_WORD_RULE_RANK = {"typo": 0, "form": 1, "segmented": 2, "decade": 3}
# Word forms: a stem of a selected word, then an ending that is no English word of its own
# ('metal|izado', 'energet|ycznie', 'chill|ailua', 'romant|ico'). Stems are the selected words
# of 5+ letters, also without an English ending ('energetic' -> 'energet'); the ending is at
# most this long (longer rests are joined words, for segmentation).
_FORM_ENDINGS = ("ic", "al", "ful", "ing", "y", "e", "ies")
_FORM_MAX_ENDING = 7
_FORM_MIN_STEM = 5
# A two-digit decade glued in front of a word ('90musik', '80music'): the decade.
_GLUED_DECADES = {"60": "60s", "70": "70s", "80": "80s", "90": "90s"}
STAGE2_SCHEMA = pa.schema([
    ("tag_id", pa.int32()),
    ("tag", pa.string()),
    ("target", pa.dictionary(pa.int32(), pa.string())),
    ("rule", pa.dictionary(pa.int8(), pa.string())),
])


# A dash with white space on at least one side separates the parts of a tag ('artist - title',
# 'artist- title', 'artist -title'); a dash inside a word does not ('hip-hop', 'post-rock').
_SEPARATOR_RE = re.compile(r"\s+-+\s*|\s*-+\s+")
SEPARATOR = "-"   # the token standing for a separator (tokenize never yields punctuation)
_IN_PARTS = "\x00"  # marks the tokens of a separated tag inside collapse() (never in a token)
_NAME_RULE = "name"  # the rule of a gap word in a separated tag that does not describe music
_PRONOUN = "us"      # a country, and the English pronoun (see _match_words)
_SUFFIX_WORDS = frozenset("ally ness less ful ish ism ist ists ing ings ers est ies ous ive ion ions "
                          "able ible ment ments ity ties".split())


def tokens_with_separators(tag: str) -> list[str]:
    """norm.tokenize(tag), with SEPARATOR between the parts of a separated tag."""
    if "-" not in tag:
        return norm.tokenize(tag)
    parts = [p for p in _SEPARATOR_RE.split(tag.strip(" -")) if p.strip(" -")]
    if len(parts) < 2:
        return norm.tokenize(tag)
    out: list[str] = []
    for part in parts:
        toks = norm.tokenize(part)
        if toks:
            if out:
                out.append(SEPARATOR)
            out.extend(toks)
    return out


TOKENIZE_EXTENSION = "tagfold.native._tokenize"


def tag_tokens(tags: Sequence[str], impl: str | None = None) -> list[list[str]]:
    """tokens_with_separators(tag) for each tag (a new list each), by the implementation `impl` /
    $TAGFOLD_IMPL picks: native is tagfold.native._tokenize (the same passes compiled), ref
    runs tokens_with_separators, the meaning."""
    if resolve_impl(impl, native_module=TOKENIZE_EXTENSION) == "native":
        from tagfold.native._tokenize import tag_tokens as native_tag_tokens

        return native_tag_tokens(list(tags), tokens_with_separators)
    tokenize = norm.tokenize
    # tokens_with_separators tokenises a tag without a dash whole; calling tokenize saves a call.
    return [tokenize(t) if "-" not in t else tokens_with_separators(t) for t in tags]


@dataclass(frozen=True)
class CollapseConfig:
    typo_cutoff: float = 0.9        # Jaro-Winkler score a typo must reach (the thesis's score_level)
    min_typo_len: int = 4           # shorter unknown tokens are never typo-corrected ('holt' is not 'hot')
    max_typo_edits: int = 2         # edit distance allowed for tokens of 6+ characters (1 below that)
    min_truncation_len: int = 5     # 'instrumen' -> instrumental: a prefix this long or longer
    known_min_count: int = 100_000  # dictionary words rarer than this may still be typos
    unknown_char_cost: float = 12.0  # segmentation cost of a character no word covers
    merge_compounds: bool = True    # step 4 above
    rules_dir: str | None = None    # another folder of rule tables (same file names)


@dataclass(frozen=True)
class Phrase:
    targets: tuple[str, ...]        # empty for a blocker
    rule: str


def _read_table(text: str, source: str, selected: SelectedTags, rule: str) -> dict[tuple[str, ...], Phrase]:
    out: dict[tuple[str, ...], Phrase] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        phrase, sep, targets = line.partition("\t")
        if not sep:
            raise UserError(f"{source}:{lineno}: expected 'phrase<TAB>targets', got {line!r}")
        key = tuple(norm.tokenize(phrase))
        if not key:
            raise UserError(f"{source}:{lineno}: empty phrase")
        names = tuple(t.strip() for t in targets.split(";") if t.strip())
        if rule == "blocked" and names:
            raise UserError(f"{source}:{lineno}: a blocker has no target, got {targets!r}")
        # A table may name targets that a user's shorter selected list lacks: those are dropped.
        names = tuple(t for t in names if t in selected.tags)
        if rule != "blocked" and not names:
            continue
        if key in out:
            raise UserError(f"{source}:{lineno}: phrase {' '.join(key)!r} appears twice")
        out[key] = Phrase(names, rule)
    return out


def _read_words(text: str) -> frozenset[str]:
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


class RuleSet:
    """All Stage II tables compiled for one list of selected tags."""

    def __init__(self, selected: SelectedTags, config: CollapseConfig):
        self.selected = selected
        self.config = config
        root = Path(config.rules_dir) if config.rules_dir else resources.files("tagfold.pipeline").joinpath("data/rules")
        phrases: dict[tuple[str, ...], Phrase] = {}
        sources: dict[tuple[str, ...], str] = {}
        for tag in selected.tags:
            key = tuple(norm.tokenize(tag))
            phrases[key] = Phrase((tag,), "exact" if len(key) == 1 else "phrase")
            sources[key] = "selected tags"
        for name, rule in RULE_TABLES.items():
            table = _read_table(root.joinpath(name).read_text("utf-8"), f"{root}/{name}", selected, rule)
            for key, phrase in table.items():
                if key in phrases:
                    raise UserError(f"{root}/{name}: phrase {' '.join(key)!r} is already defined in "
                                     f"{sources[key]}; a phrase may have one meaning only")
                phrases[key] = phrase
                sources[key] = name
        # Joined spellings of multi-word phrases ('indierock', 'singersongwriter', 'feelgood').
        for key, phrase in list(phrases.items()):
            joined = ("".join(key),)
            if len(key) > 1 and joined not in phrases:
                phrases[joined] = phrase
        # Idioms: 'X' stands for every one-word selected tag ('looks X' -> 'looks good', ...).
        idioms = root.joinpath("idioms.tsv")
        if idioms.is_file():
            source = f"{root}/idioms.tsv"
            singles = [t for t in selected.tags if len(norm.tokenize(t)) == 1]
            for lineno, line in enumerate(idioms.read_text("utf-8").splitlines(), start=1):
                if not line.strip() or line.startswith("#"):
                    continue
                pattern = tuple(norm.tokenize(line.partition("\t")[0]))
                for tag in (singles if "x" in pattern else [None]):
                    key = tuple(norm.tokenize(tag)[0] if w == "x" and tag else w for w in pattern)
                    if key in phrases and sources[key] != source:
                        raise ValueError(f"{source}:{lineno}: phrase {' '.join(key)!r} is already defined in "
                                         f"{sources[key]}; a phrase may have one meaning only")
                    phrases[key] = Phrase((), "blocked")
                    sources[key] = source
        self.phrases = phrases
        self.max_phrase_len = max(len(k) for k in phrases)
        # first word -> the lengths of the phrases it starts, longest first (most specific first)
        lengths: dict[str, set[int]] = {}
        for key in phrases:
            lengths.setdefault(key[0], set()).add(len(key))
        self.phrase_lengths = {w: sorted(ls, reverse=True) for w, ls in lengths.items()}
        self.lexicon = frozenset(w for key in phrases for w in key)
        self.unsplit = _read_words(root.joinpath("unsplit.txt").read_text("utf-8"))
        self.negators = _read_words(root.joinpath("negators.txt").read_text("utf-8"))
        freq = norm.english_frequencies()
        self.known = frozenset(w for w, c in freq.items() if c >= config.known_min_count) | self.unsplit
        # Words that describe music (see descriptors.txt): everything a tag may hold beside its
        # selected words and still be a description rather than a name or a title. Blocker
        # words ('iggy', 'chili') are not descriptors: they belong to names.
        from tagfold.pipeline.tags.vocab import load_vocabularies

        vocab = load_vocabularies()
        described = {w for key, phrase in phrases.items() if phrase.targets for w in key}
        for entry in chain(vocab.genre, vocab.emotion, vocab.descriptive):
            described.update(norm.tokenize(entry))
        descriptors_file = root.joinpath("descriptors.txt")
        if descriptors_file.is_file():
            described |= _read_words(descriptors_file.read_text("utf-8"))
        self.descriptors = frozenset(described) | self.negators
        # Common English words (the 20,000 most frequent, 3+ letters) that do not describe
        # music: glued to a selected word they make a name ('soulwax', 'riverdance'). Words
        # that are also suffixes make word forms, not names ('melancholic|ally', 'folk|ness').
        ranked = sorted(freq, key=freq.__getitem__, reverse=True)[:20_000]
        self.common_words = (frozenset(w for w in ranked if len(w) >= 3 and w.isalpha())
                             - self.descriptors - _SUFFIX_WORDS)
        # Typos are corrected towards lexicon words only, never towards arbitrary English.
        self.typo_vocab = sorted(w for w in self.lexicon if len(w) >= config.min_typo_len and w.isalpha())
        stems = sorted((w for w in self.lexicon if len(w) >= 3 and w.isalpha()), key=lambda w: (-len(w), w))
        self.stem_re = _containment_regex(stems)
        self.segmenter = norm.Segmenter(self.lexicon, config.unknown_char_cost)
        stems: dict[str, str] = {}
        for tag in selected.tags:
            for word in norm.tokenize(tag):
                if (word,) not in phrases or not phrases[(word,)].targets or not word.isalpha():
                    continue
                forms = [word] + [word[:-len(e)] for e in _FORM_ENDINGS if word.endswith(e)]
                for stem in forms:
                    if len(stem) >= _FORM_MIN_STEM:
                        stems.setdefault(stem, word)
        self.form_stems = stems
        self.form_re = re.compile("(" + "|".join(sorted(map(re.escape, stems), key=len, reverse=True))
                                  + f")([a-z]{{1,{_FORM_MAX_ENDING}}})") if stems else None
        # Truncated last words of two-word phrases ('singer so' -> 'singer songwriter',
        # 'indie ro' -> 'indie rock'): (first word, prefix) -> the second word, when unique.
        completions: dict[tuple[str, str], str | None] = {}
        for key, phrase in phrases.items():
            if len(key) == 2 and phrase.targets:
                first, second = key
                for cut in range(2, len(second)):
                    prefix = second[:cut]
                    pair = (first, prefix)
                    known = completions.get(pair, second)
                    # Ambiguous prefixes complete only when every completion means the same.
                    if known is None or phrases[(first, known)].targets != phrase.targets:
                        completions[pair] = None
                    else:
                        completions[pair] = min(known, second, key=len)
        # A prefix that is a selected word or a synonym itself ('indie pop') is no truncation.
        self.completions = {k: v for k, v in completions.items()
                            if v is not None and not (k[1],) in phrases}
        # Two-word selected tags made of two selected tags ('indie rock' = indie + rock).
        self.compounds = []
        for tag in selected.tags:
            parts = norm.tokenize(tag)
            if len(parts) == 2 and all(p in selected.tags for p in parts):
                self.compounds.append((tag, parts[0], parts[1]))


def _containment_regex(words: Sequence[str]) -> re.Pattern:
    """A regex whose search() finds whether a string contains any of `words`.

    Built as a trie ('ro(?:ck|ots)' rather than 'rock|roots'), so at each position the regex
    engine follows one branch instead of trying every word in turn: about 8x faster than the
    plain alternation over hundreds of words. A word that has a shorter word as its prefix
    is left out (whatever contains 'rocks' contains 'rock'), so only existence is kept, not
    which word matched.
    """
    trie: dict = {}
    for word in sorted(words, key=len):
        node = trie
        for ch in word:
            if node.get("") is True:
                break  # a shorter word already ends here
            node = node.setdefault(ch, {})
        else:
            node.clear()
            node[""] = True

    def pattern(node: dict) -> str:
        if node.get("") is True:
            return ""
        branches = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    # No words: the empty pattern, which (like the empty alternation before) matches anything.
    return re.compile(pattern(trie) if trie else "")


@lru_cache(maxsize=8)
def _ruleset(selected: SelectedTags, config: CollapseConfig) -> RuleSet:
    return RuleSet(selected, config)


# ---------------------------------------------------------------------------------------------
# token analysis

def _is_word(rules: RuleSet, token: str) -> bool:
    return token in rules.lexicon or token in rules.known


def _jaro_winkler(a: str, b: str) -> float:
    from rapidfuzz.distance import JaroWinkler

    return JaroWinkler.similarity(a, b)


def _word_form(piece: str, rules: RuleSet) -> str | None:
    """The selected word of which `piece` (not a word of its own) is a form, or None.

    The ending must not be a common English word of 4+ letters: 'chillhood' is a joined word
    (segmentation decides), 'chillit' and 'metalizado' are forms."""
    if rules.form_re is None:
        return None
    m = rules.form_re.fullmatch(piece)
    if m is None:
        return None
    ending = m.group(2)
    # An ending that is or begins with a word makes a joined word ('indiepop', 'greatday',
    # 'funnyman', 'indietronica'): segmentation reads those. Two letters are too few to tell.
    if len(ending) >= 3 and any(ending[:k] in rules.known or ending[:k] in rules.descriptors
                                for k in range(3, len(ending) + 1)):
        return None
    # Near-misses of words kept whole ('metalica', 'metallicas' ~ metallica) are names.
    if any(_jaro_winkler(piece, w) >= rules.config.typo_cutoff for w in rules.unsplit):
        return None
    return rules.form_stems[m.group(1)]


def _is_joined_name(words: Sequence[str], rules: RuleSet) -> bool:
    """A selected word followed by a common English word that does not describe music is a
    name or a title ('soulwax', 'soulsomething', 'rockclimbing', 'poprocket'); followed by a
    descriptor it is a description ('jazzmusic', 'rockballad')."""
    # Exactly two whole words: longer joins are lists of genres and moods
    # ('punkdeathtrashmetal', 'topfavouritejazz'), and pieces no word covers are not evidence.
    if len(words) != 2 or not all(len(w) >= 3 for w in words):
        return False
    # Only a selected word in front: in second place the selected word names the genre of
    # a compound ('robotpop', 'shockrock', 'suomimetal'; guideline: 'synthpop' -> pop).
    first, second = words
    return first in rules.lexicon and first in rules.descriptors and second in rules.common_words


def _analyse_tokens(tokens: set[str], rules: RuleSet, pool_map=None) -> dict[str, tuple[tuple[str, str], ...]]:
    """token -> canonical words with the rule that produced each (see module doc, step 2).

    `pool_map(fn, items)` runs the pure-Python segmentation step; serial when None.
    """
    if pool_map is None:
        def pool_map(fn, items):
            return fn(items, rules)
    cfg = rules.config
    result: dict[str, tuple[tuple[str, str], ...]] = {}
    # piece -> resolved words; None while pending a typo / segmentation decision
    pieces_of: dict[str, list[str]] = {}
    resolved: dict[str, tuple[tuple[str, str], ...] | None] = {}

    lexicon, known = rules.lexicon, rules.known

    def quick(piece: str):
        if piece in lexicon or piece in known:   # _is_word
            return ((piece, "exact"),)
        # Decades and numbers hold digits; most pieces are letters only and skip both tests.
        if not piece.isalpha():
            decade = norm.decade_of(piece)
            if decade is not None:
                return ((decade, "decade"),) if decade in rules.selected.tags else ()
            if piece.isdigit():
                return ()
        if _TRIPLE_LETTER.search(piece):
            squeezed = norm.squeeze_repeats(piece)
            if _is_word(rules, squeezed):
                return ((squeezed, "typo"),)
        return None

    for token in tokens:
        # isalpha() first: most tokens are plain words, and the per-character scan is slow.
        has_digit = not token.isalpha() and any(c.isdigit() for c in token)
        pieces = norm.split_alpha_digit(token) if has_digit and not token.isdigit() else [token]
        pieces_of[token] = pieces
        for piece in pieces:
            if piece not in resolved:
                resolved[piece] = quick(piece)

    # Every piece below is decided on its own, so their order does not matter.
    pending = [p for p, r in resolved.items() if r is None]
    # squeeze_repeats changes only pieces with a letter thrice in a row (few of them).
    search_triple = _TRIPLE_LETTER.search
    squeezed_of = {p: norm.squeeze_repeats(p) if search_triple(p) else p for p in pending}
    # d. typos: one bulk Jaro-Winkler call over every unknown piece.
    candidates = [p for p in pending if len(squeezed_of[p]) >= cfg.min_typo_len]
    queries = [squeezed_of[p] for p in candidates]
    idx, _ = norm.best_matches(queries, rules.typo_vocab, cfg.typo_cutoff)
    # rapidfuzz's OSA is the same distance as norm.osa_distance (the plain reference; equal
    # on 200k random pairs), 50x faster over the ~10k candidates of the full job.
    from rapidfuzz.distance import OSA
    for piece, query, i in zip(candidates, queries, idx):
        if i < 0:
            continue
        word = rules.typo_vocab[i]
        allowed = 1 if len(query) <= 5 else cfg.max_typo_edits
        truncation = len(query) >= cfg.min_truncation_len and word.startswith(query)
        if truncation or (abs(len(query) - len(word)) <= allowed and OSA.distance(query, word) <= allowed):
            # A near-miss of a name word ('chillit' ~ chilli, of 'red hot chilli peppers') that
            # is also a form of a selected word is read as the form.
            form = None if word in rules.descriptors else _word_form(query, rules)
            resolved[piece] = ((form, "form"),) if form else ((word, "typo"),)
    # d2. word forms of a selected word ('metalizado', 'chillailua'), after typos so that a
    # misspelt phrase word ('chillount' -> chillout) is repaired, not cut to its stem.
    for piece in pending:
        if resolved[piece] is None:
            form = _word_form(squeezed_of[piece], rules)
            if form is not None:
                resolved[piece] = ((form, "form"),)
    # e. joined words: segment the rest that contain a lexicon word.
    to_segment = [p for p in pending if resolved[p] is None]
    segmented = pool_map(_segment_chunk, [squeezed_of[p] for p in to_segment])
    for piece, words in zip(to_segment, segmented):
        if len(words) > 1 or (words and words[0] != squeezed_of[piece]):
            # One- and two-letter pieces of a split are noise ('pukkelpop' is not 'p uk kel pop')
            # unless every piece is a lexicon word ('ukpunk').
            if not all(w in lexicon for w in words):
                words = [w if len(w) >= 3 else "" for w in words]
            if _is_joined_name(words, rules):
                continue  # stays unknown: a name ('soulwax'), not a description
            resolved[piece] = tuple((w, "segmented") for w in words)
    for piece in pending:
        if resolved[piece] is None:
            resolved[piece] = ((piece, "unknown"),)

    for token, pieces in pieces_of.items():
        if len(pieces) == 1:
            result[token] = tuple(resolved[pieces[0]])  # already a tuple: no copy made
            continue
        words: list[tuple[str, str]] = []
        if len(pieces) > 1:
            # A decade glued to letters counts only when the letters are words ('70spop',
            # 'g60s'), not inside a user name ('lordlex92s').
            letters_ok = all(
                len(p) <= 1 or all(rule != "unknown" for _, rule in resolved[p])
                for p in pieces if not p[0].isdigit())
            for k, p in enumerate(pieces):
                if p[0].isdigit() and not letters_ok:
                    continue
                if (p in _GLUED_DECADES and k + 1 < len(pieces) and letters_ok and len(pieces[k + 1]) >= 3
                        and _GLUED_DECADES[p] in rules.selected.tags):
                    words.append((_GLUED_DECADES[p], "decade"))
                    continue
                words.extend(resolved[p])
        else:
            words.extend(resolved[pieces[0]])
        result[token] = tuple(words)
    return result


# ---------------------------------------------------------------------------------------------
# phrase matching

def _match_words(words: Sequence[tuple[str, str]], rules: RuleSet) -> list[tuple[str, str]]:
    """(target, rule) pairs for one tag's word sequence, in order of appearance, deduplicated."""
    phrases, negators, phrase_lengths = rules.phrases, rules.negators, rules.phrase_lengths
    n = len(words)
    plain = [w for w, _ in words]
    found: list[tuple[str, str]] = []
    negate_at = -1
    separated = SEPARATOR in plain
    segment_start = 0    # index in `found` where the current part of a separated tag begins
    names_a_work = False  # the current part holds a word that does not describe music
    i = 0
    while i < n:
        word = plain[i]
        if separated:
            if word == SEPARATOR:
                if names_a_work:
                    del found[segment_start:]
                segment_start, names_a_work = len(found), False
                i += 1
                continue
            if word not in rules.descriptors and (word or words[i][1] == _NAME_RULE):
                names_a_work = True
        if word in negators:
            negate_at = i + 1
            i += 1
            continue
        for length in phrase_lengths.get(word, ()):
            if length > n - i:
                continue
            phrase = phrases.get(tuple(plain[i:i + length]))
            if phrase is None:
                continue
            # 'us' is also the English pronoun: a country only as the first word of a longer tag.
            if word == _PRONOUN and length == 1 and (i != 0 or n == 1 or words[i][1] != "exact"):
                phrase = None
                continue
            if i != negate_at:
                rule = phrase.rule
                word_rules = [r for _, r in words[i:i + length] if r in _WORD_RULE_RANK]
                if word_rules:
                    rule = min(word_rules, key=_WORD_RULE_RANK.__getitem__)
                elif length > 1 and rule == "exact":
                    rule = "phrase"
                found.extend((t, rule) for t in phrase.targets)
            if separated and any(w not in rules.descriptors for w in plain[i + 1:i + length]):
                names_a_work = True  # 'iggy pop', 'red hot chili peppers'
            i += length
            break
        else:
            i += 1
    if separated and names_a_work:
        del found[segment_start:]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for target, rule in found:
        if target not in seen:
            seen.add(target)
            out.append((target, rule))
    if rules.config.merge_compounds and rules.compounds:
        for compound, a, b in rules.compounds:
            if a in seen and b in seen and compound not in seen:
                pos = min(i for i, (t, _) in enumerate(out) if t in (a, b))
                out = [p for p in out if p[0] not in (a, b)]
                out.insert(pos, (compound, "compound"))
                seen = {t for t, _ in out}
    return out


# One int per (target, rule) pair: target index * _CODE_STRIDE + index in RULE_NAMES.
_CODE_STRIDE = 16
assert len(RULE_NAMES) <= _CODE_STRIDE


def _matcher_tables(rules: RuleSet) -> dict:
    """The tables _match_words reads, as the plain data (codes) the compiled matcher
    (tagfold.native._stage2.PhraseMatcher) is built from: it then returns, for a key, exactly
    the codes of _match_words(key, rules)."""
    target = {t: i for i, t in enumerate(rules.selected.tags)}
    rule = {r: i for i, r in enumerate(RULE_NAMES)}
    merge = rules.config.merge_compounds
    return {
        # a blocker ('blocked', no targets) reports no rule: -1
        "phrases": {key: (tuple(target[t] for t in p.targets), rule[p.rule] if p.targets else -1)
                    for key, p in rules.phrases.items()},
        "negators": rules.negators,
        "descriptors": rules.descriptors,
        "word_rules": {r: rule[r] for r in sorted(_WORD_RULE_RANK, key=_WORD_RULE_RANK.__getitem__)},
        "compounds": [(target[c], target[a], target[b]) for c, a, b in rules.compounds] if merge else [],
        "n_targets": len(target), "code_stride": _CODE_STRIDE,
        "exact_rule": rule["exact"], "phrase_rule": rule["phrase"], "compound_rule": rule["compound"],
        "separator": SEPARATOR, "name_gap": _NAME_RULE, "pronoun": _PRONOUN, "exact_word": "exact",
    }


def _readings(analysed: dict[str, tuple], in_parts: set[str], rules: RuleSet) -> tuple[set, dict]:
    """(relevant, reduced) for the reference matcher: the tokens holding a lexicon word (the
    others let a tag skip matching), and each token's words with those that cannot matter
    reduced to gaps, marked tokens (_IN_PARTS) included. _match_words reads a reduced reading
    as the whole one; tags that differ only in gap words then share one result."""
    lexicon, negators = rules.lexicon, rules.negators
    relevant = {tok for tok, words in analysed.items() if any(w in lexicon for w, _ in words)}
    relevant |= {tok + _IN_PARTS for tok in relevant & in_parts}
    # Words outside the lexicon only matter as gaps between phrases, so tags that differ
    # only in such words ('swiss metal', 'fresh metal') share one match result. In a
    # separated tag the gap keeps one bit: whether the word describes music (a part
    # holding a word that does not is a name or a title, see _match_words).
    gap, name_gap = ("", ""), ("", _NAME_RULE)
    descriptors = rules.descriptors
    reduced = {tok: tuple(wr if wr[0] in lexicon or wr[0] in negators or wr[0] == SEPARATOR else gap
                          for wr in words)
               for tok, words in analysed.items()}
    reduced.update((tok + _IN_PARTS, tuple(wr if wr[0] in lexicon or wr[0] in negators
                                           else gap if wr[0] in descriptors or not wr[0] else name_gap
                                           for wr in words))
                   for tok, words in analysed.items() if tok in in_parts)
    return relevant, reduced


# Worker processes are forked and read the shared state below instead of receiving it pickled.
# They run pure Python only: the Jaro-Winkler kernel (OpenMP) stays in the parent, because
# an OpenMP runtime used before fork() can hang in the child.
_FORK_STATE: dict = {}


def _segment_chunk(pieces: list[str], rules: RuleSet | None = None) -> list[list[str]]:
    """Segmentation of each piece; [] for pieces holding no lexicon word (nothing to find)."""
    rules = rules or _FORK_STATE["rules"]
    search, segment = rules.stem_re.search, rules.segmenter.compiled()
    return [segment(p) if search(p) else [] for p in pieces]


def _match_range(bounds: tuple[int, int], state: dict | None = None):
    """(tag ids, target codes, rule codes) for tags[start:stop], as compact arrays.

    Codes index rules.selected.tags and RULE_NAMES, so workers send back numbers, not strings.
    """
    state = state or _FORK_STATE
    rules, analysed = state["rules"], state["analysed"]
    target_code = {t: i * _CODE_STRIDE for i, t in enumerate(rules.selected.tags)}
    rule_code = {r: i for i, r in enumerate(RULE_NAMES)}
    # Native: the compiled matcher built from the rule tables (tagfold.native.stage2); the
    # reference reads each distinct reduced reading with _match_words.
    ids, codes = match_codes(
        state["token_lists"], bounds[0], bounds[1], analysed, _IN_PARTS, _matcher_tables(rules),
        lambda: _readings(analysed, state["in_parts"], rules),
        lambda key: [target_code[t] + rule_code[r] for t, r in _match_words(key, rules)])
    return ids, (codes // _CODE_STRIDE).astype(np.int16), (codes % _CODE_STRIDE).astype(np.int8)


def _chunks(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts) if n else 1
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def collapse(tags: Sequence[str] | pa.Array | pa.ChunkedArray, selected: SelectedTags | None = None,
             config: CollapseConfig = CollapseConfig(), workers: int | None = None) -> pa.Table:
    """Stage II rows (tag_id, tag, target, rule), one per raw tag and target; tag_id = position.

    `tags` may be an Arrow string array (the pipeline's tags column): the rows' tag column is then
    taken from it rather than from a new Arrow copy of 522k Python strings.

    `workers` processes share the pure-Python steps (None: 2 for 100,000+ tags where fork()
    exists, else 1). The result never depends on it: every token and tag is read on its own.
    """
    tag_column = tags if isinstance(tags, (pa.Array, pa.ChunkedArray)) else None
    if tag_column is not None:
        tags = tag_column.to_pylist()
    selected = selected or load_selected()
    rules = _ruleset(selected, config)
    if workers is None:
        workers = 2 if len(tags) >= 100_000 else 1
    if workers > 1 and "fork" not in mp.get_all_start_methods():
        workers = 1
    token_lists = tag_tokens(tags)
    completions = rules.completions
    completed = {last for _, last in completions}   # a cheap test first: most tags end otherwise
    for toks in token_lists:
        if len(toks) >= 2 and toks[-1] in completed and (toks[-2], toks[-1]) in completions:
            toks[-1] = completions[toks[-2], toks[-1]]
    unique = set(chain.from_iterable(token_lists))
    unique.discard(SEPARATOR)
    # In separated tags each token carries a mark, so that only they pay for telling names from
    # descriptors in their gaps; the other tags keep sharing one match result per reading.
    separated = [k for k, toks in enumerate(token_lists) if SEPARATOR in toks]
    in_parts = set(chain.from_iterable(token_lists[k] for k in separated))
    in_parts.discard(SEPARATOR)
    marked = {t: t + _IN_PARTS for t in in_parts}   # one marked str per distinct token
    for k in separated:
        toks = token_lists[k]
        token_lists[k] = list(map(marked.get, toks, toks))   # marked.get(t, t) per token, in C
    state = {"rules": rules, "token_lists": token_lists}
    pool = None
    try:
        if workers > 1:
            # The segmenter (the trie) is built here, once, and shared by the forked workers:
            # built in each worker instead, it cost ~0.2 s more worker CPU on the phrases job.
            rules.segmenter.compiled()
            _FORK_STATE.update(state)
            pool = worker_pool(workers, "fork")

            def pool_map(fn, items):
                size = max(1, -(-len(items) // (4 * workers)))
                parts = pool.map(fn, [items[i:i + size] for i in range(0, len(items), size)])
                return [x for part in parts for x in part]
        else:
            pool_map = None
        analysed = _analyse_tokens(unique, rules, pool_map)
        analysed[SEPARATOR] = ((SEPARATOR, "separator"),)
        state["analysed"], state["in_parts"] = analysed, in_parts
        if pool is not None:
            # The matching state exists only now: fork fresh workers that see it.
            pool.close()
            pool.join()
            _FORK_STATE.update(state)
            pool = worker_pool(workers, "fork")
            parts = pool.map(_match_range, _chunks(len(tags), workers))
        else:
            parts = [_match_range((0, len(tags)), state)]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _FORK_STATE.clear()
    id_array = pa.array(np.concatenate([p[0] for p in parts]), pa.int32())
    targets = pa.DictionaryArray.from_arrays(
        pa.array(np.concatenate([p[1] for p in parts]).astype(np.int32)), pa.array(rules.selected.tags, pa.string()))
    rule_names = pa.DictionaryArray.from_arrays(
        pa.array(np.concatenate([p[2] for p in parts])), pa.array(RULE_NAMES, pa.string()))
    return pa.table({
        "tag_id": id_array,
        "tag": (pa.array(tags, pa.string()) if tag_column is None else tag_column).take(id_array),
        "target": targets,
        "rule": rule_names,
    }, schema=STAGE2_SCHEMA)


def explain(tag: str, selected: SelectedTags | None = None, config: CollapseConfig = CollapseConfig()):
    """The canonical words Stage II read in `tag` (for debugging rules)."""
    rules = _ruleset(selected or load_selected(), config)
    toks = tokens_with_separators(tag)
    if len(toks) >= 2 and (toks[-2], toks[-1]) in rules.completions:
        toks[-1] = rules.completions[toks[-2], toks[-1]]
    analysed = _analyse_tokens(set(toks) - {SEPARATOR}, rules)
    analysed[SEPARATOR] = ((SEPARATOR, "separator"),)
    return [w for tok in toks for w in analysed[tok]]


# ---------------------------------------------------------------------------------------------
# CLI

def _read_tags(path: Path) -> tuple[list[str], pa.Array | None]:
    """Tags and, from a tags.parquet, their tag_id column (None for a plain one-per-line file)."""
    if path.suffix == ".parquet":
        from tagfold.pipeline.io import read_input_table

        table = read_input_table(path)
        if "tag" not in table.column_names:
            raise UserError(f"{path}: no 'tag' column (columns: {', '.join(table.column_names)})")
        ids = table.column("tag_id").combine_chunks() if "tag_id" in table.column_names else None
        return table.column("tag").to_pylist(), ids
    return path.read_text("utf-8").splitlines(), None


def main(argv: list[str]) -> int:
    from tagfold.pipeline.options import SCORE_LEVEL, parser
    from tagfold.pipeline.tags.options import add_selected

    p = parser("tagfold collapse", __doc__.splitlines()[0])
    p.add_argument("--tags", required=True, type=Path, help="tags.parquet (tag_id, tag) or one tag per line")
    p.add_argument("--out", required=True, type=Path, help="output folder for stage2.parquet")
    add_selected(p)
    p.add_argument("--rules-dir", help="folder of rule tables replacing the package's")
    p.add_argument("--typo-cutoff", type=SCORE_LEVEL, default=CollapseConfig.typo_cutoff,
                   help="Jaro-Winkler score a typo must reach to be repaired")
    args = p.parse_args(argv)
    from tagfold.pipeline.io import continue_run, output_lock

    config = CollapseConfig(typo_cutoff=args.typo_cutoff, rules_dir=args.rules_dir)
    with output_lock(args.out):
        continue_run(args.out, [args.tags])   # its outputs belong to its input's run (never a mix)
        return _run(args, config)


def _run(args, config: CollapseConfig) -> int:
    from tagfold.pipeline.io import write_parquet

    print(f"Stage II: typo cutoff {config.typo_cutoff}, rule tables from {config.rules_dir or 'the package'}",
          file=sys.stderr)
    tags, tag_ids = _read_tags(args.tags)
    selected = load_selected(args.selected)
    start = time.perf_counter()
    table = collapse(tags, selected, config)
    if tag_ids is not None:
        # Keep the ingest's ids: row positions become the tag_id stored for that row.
        from tagfold.pipeline.tags.ids import to_ingest_ids

        table = to_ingest_ids(table, tag_ids)
    seconds = time.perf_counter() - start
    path = write_parquet(table, args.out / "stage2.parquet", {"stage": 2, **config.__dict__,
                                                             "selected": list(selected.tags)})
    mapped = len(set(table.column("tag_id").to_pylist()))
    print(f"Stage II: {len(tags):,} tags read, {mapped:,} mapped to >= 1 selected tag, "
          f"{len(tags) - mapped:,} to none; {table.num_rows:,} rows in {seconds:.2f} s -> {path}")
    return 0
