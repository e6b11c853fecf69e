"""Stage I vocabularies (genres, emotions, descriptive words, known junk) and the text
normalisation that tags and vocabulary entries share.

The package's own lists live in pipeline/data/vocab/ (documented in its README.md). A user
directory overrides them file by file: every one of genres.txt, emotions.txt,
descriptive.txt, junk.txt found there replaces the package's file of that name.
"""
from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import compress
from importlib import resources
from pathlib import Path

from tagfold.pipeline.errors import UserError

# file name -> Vocabularies field
VOCAB_FILES = {
    "genres.txt": "genre",
    "emotions.txt": "emotion",
    "descriptive.txt": "descriptive",
    "junk.txt": "junk",
}


@lru_cache(maxsize=1)
def _format_characters() -> dict[int, None]:
    """str.translate table deleting every Unicode format character (category Cf: zero-width
    space and joiners, bidi marks and embeddings, soft hyphen, BOM, language tags).

    Format characters live in planes 0, 1 and 14 only (planes 2-3 are ideographs, 4-13
    unassigned, 15-16 private use), so only those are scanned: 0.05 s instead of 0.4 s."""
    planes = (range(0, 0x20000), range(0xE0000, 0xF0000))
    return {cp: None for plane in planes for cp in plane if unicodedata.category(chr(cp)) == "Cf"}


def normalize_tag(text: str, casefold: bool = True) -> str:
    """Format characters (Unicode category Cf) removed, NFKC, casefolded (then NFKC again, as
    casefolding can leave a decomposed form), whitespace runs collapsed to one space and stripped.

    Tags and vocabulary entries both go through this, so 'Hip  Hop', 'ro<ZWSP>ck', a
    bidi-wrapped 'rock' and the full-width 'ｒｏｃｋ' meet their plain forms; a tag made only of
    format characters becomes '' (ingest rejects it as empty). Idempotent.
    """
    if not text.isascii():  # ASCII holds no format characters and is already NFKC
        text = unicodedata.normalize("NFKC", text.translate(_format_characters()))
        if casefold:
            text = unicodedata.normalize("NFKC", text.casefold())
        return " ".join(text.split())
    text = " ".join(text.split())
    return text.casefold() if casefold else text


# What str.split() splits on (str.isspace): tests/test_ingest.py checks it against every code point.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"


def _re2_class(code_points) -> str:
    """An RE2 character class matching exactly these code points, as ranges."""
    cps = sorted(set(code_points))
    ranges, start = [], cps[0]
    for prev, cp in zip(cps, cps[1:] + [None]):
        if cp != prev + 1:
            ranges.append(f"\\x{{{start:x}}}" + ("" if prev == start else f"-\\x{{{prev:x}}}"))
            start = cp
    return "[" + "".join(ranges) + "]"


@lru_cache(maxsize=1)
def _bulk_patterns() -> tuple[str, str]:
    """RE2 patterns: (a format character or a C0 control character (NUL, tab, CR, line feed,
    \\x1c-\\x1f), whitespace that " ".join(text.split()) would change)."""
    return (_re2_class([*_format_characters(), *range(0x20)]),
            _re2_class(map(ord, WHITESPACE.replace(" ", ""))) + "|^ | $|  ")


def normalize_tags(texts, casefold: bool = True):
    """[normalize_tag(t, casefold) for t in texts] for a pyarrow string array without nulls, in
    bulk (a call per text costs ~1 us of Python; a 522k-tag job has that many texts):
    - plain ASCII (no control character, single inner spaces only): lowered by Arrow;
    - other text without format or control characters, already NFKC (nearly all non-ASCII
      tags): casefolded in one call over the texts joined by '\\n' (casefolding is per
      character and maps nothing to or from '\\n'), NFKC again only where that left a form that
      is not, whitespace collapsed only where Arrow finds some to collapse;
    - the rest (format characters, control characters, compatibility forms): normalize_tag."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    plain = pc.and_(pc.string_is_ascii(texts), pc.invert(pc.match_substring_regex(texts, r"[\x00-\x1f]|^ | $|  ")))
    out = pc.ascii_lower(texts) if casefold else texts
    others = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
    if not len(others):
        return out
    format_or_control, spacing = _bulk_patterns()
    rest = texts.take(others)
    is_nfkc = partial(unicodedata.is_normalized, "NFKC")
    simple = ~pc.match_substring_regex(rest, format_or_control).to_numpy(zero_copy_only=False)
    rest = rest.to_pylist()
    simple &= np.fromiter(map(is_nfkc, rest), bool, len(rest))  # NFKC(t) == t: the first NFKC is a no-op
    folded = list(compress(rest, simple.tolist()))
    if casefold and folded:
        folded = "\n".join(folded).casefold().split("\n")
        for i in compress(range(len(folded)), [not ok for ok in map(is_nfkc, folded)]):
            folded[i] = unicodedata.normalize("NFKC", folded[i])
    folded = pa.array(folded, texts.type)
    spaced = np.flatnonzero(pc.match_substring_regex(folded, spacing).to_numpy(zero_copy_only=False))
    if len(spaced):
        mask = np.zeros(len(folded), bool)
        mask[spaced] = True
        folded = pc.replace_with_mask(folded, mask, pa.array(
            [" ".join(t.split()) for t in folded.take(spaced).to_pylist()], texts.type))
    odd = [normalize_tag(t, casefold) for t in compress(rest, (~simple).tolist())]
    for subset, done in ((others[simple], folded), (others[~simple], pa.array(odd, texts.type))):
        if len(subset):
            mask = np.zeros(len(texts), bool)
            mask[subset] = True
            out = pc.replace_with_mask(out, mask, done)
    return out


@dataclass(frozen=True)
class Vocabularies:
    genre: tuple[str, ...]
    emotion: tuple[str, ...]
    descriptive: tuple[str, ...]
    junk: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # where each list came from, for the saved config

    def fingerprint(self) -> str:
        """sha256 over all entries: tells two runs' vocabularies apart in saved configs."""
        h = hashlib.sha256()
        for name in ("genre", "emotion", "descriptive", "junk"):
            h.update(name.encode() + b"\0" + "\n".join(getattr(self, name)).encode() + b"\0")
        return h.hexdigest()[:16]


def parse_vocab(text: str, source: str) -> tuple[str, ...]:
    """Entries of one vocabulary file: one per line, '#' comments and blank lines skipped,
    normalised like tags, first occurrence kept."""
    seen: dict[str, None] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if "\0" in line:
            raise UserError(f"{source}:{lineno}: NUL byte in vocabulary entry")
        entry = normalize_tag(line)
        if not entry or entry.startswith("#"):
            continue
        seen.setdefault(entry, None)
    return tuple(seen)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 ({e.reason})") from None


def load_vocabularies(vocab_dir: str | Path | None = None) -> Vocabularies:
    """The package vocabularies, with any of genres.txt / emotions.txt / descriptive.txt /
    junk.txt found in `vocab_dir` replacing the package file of the same name."""
    package = resources.files("tagfold.pipeline").joinpath("data/vocab")
    user = None
    if vocab_dir is not None:
        user = Path(vocab_dir)
        if not user.is_dir():
            raise FileNotFoundError(f"vocabulary directory {user} does not exist")
        if not any((user / name).is_file() for name in VOCAB_FILES):
            raise FileNotFoundError(
                f"vocabulary directory {user} holds none of {', '.join(VOCAB_FILES)}")
    lists, sources = {}, []
    for name, field in VOCAB_FILES.items():
        if user is not None and (user / name).is_file():
            path = user / name
            lists[field] = parse_vocab(_read(path), str(path))
            sources.append(str(path))
        else:
            lists[field] = parse_vocab(package.joinpath(name).read_text("utf-8"), f"package data vocab/{name}")
            sources.append(f"package:vocab/{name}")
    return Vocabularies(**lists, sources=tuple(sources))
