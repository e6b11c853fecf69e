"""Stage I: put every tag into one category: genre, emotion, descriptive, number or junk.

Steps (the thesis's `tag_filtering.py`, made deterministic and fast), first that applies wins:
1. exact: the whole tag is a vocabulary entry (genre > emotion > descriptive > junk when an
   entry sits in several lists). With containment='word' "whole" means the same sequence of
   words, so '-chill-' and 'hip-hop' are exact 'chill' / 'hip hop'; with 'substring' it means
   the same characters.
2. digit: the tag holds an ASCII digit 0-9 -> number ('80s', "'77 punk", 'top 10', '1985',
   'blink 182'); matched is the first word with a digit. As in the thesis this comes before
   containment, so '80s rock' is a number tag.
3. contains: a genre, emotion or descriptive entry occurs inside the tag. 'word' (default):
   as whole words ('school' does not contain 'cool', 'sad indie rock' contains 'indie rock');
   'substring': raw characters, the thesis's behaviour ('psychotic' contains 'hot').
   Genre > emotion > descriptive; within a category the longest match (in words, or in
   characters for 'substring'), then the leftmost, then the earlier entry.
4. jaro_winkler: typo correction of the whole tag against all genre, emotion and descriptive
   entries; the best-scoring entry counts when its score is > score_level (strictly, as the
   thesis), ties going to the earlier category. The thesis only tried moods and genres.
5. none: category junk (junk-list entries in step 1 are junk with method exact).
Words are maximal runs of letters, digits and combining marks; tags are lowercased before
matching. score is the Jaro-Winkler score for step 4, 1.0 for steps 1-3, 0.0 for none.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagfold.pipeline.tags.vocab import Vocabularies, load_vocabularies

CATEGORIES = ("genre", "emotion", "descriptive", "number", "junk")
METHODS = ("exact", "digit", "contains", "jaro_winkler", "none")
CONTAINMENT = ("word", "substring")
# Vocabulary lists in precedence order; junk only ever matches whole tags.
VOCAB_ORDER = ("genre", "emotion", "descriptive", "junk")
WORD_SPLIT = r"[^\p{L}\p{N}\p{M}]+"
# Queries per Jaro-Winkler call: bounds memory and drives the progress bar.
JW_CHUNK = 32768
# Tags per block of the trie pass (steps 1 and 3): bounds its temporaries (~25 MB a block).
TRIE_CHUNK = 65536

SCHEMA = pa.schema([
    ("tag_id", pa.int32()),
    ("tag", pa.string()),
    ("category", pa.string()),
    ("matched", pa.string()),
    ("method", pa.string()),
    ("score", pa.float64()),
])


@dataclass(frozen=True)
class CategorizeConfig:
    score_level: float = 0.9
    containment: str = "word"
    vocab_dir: str | None = None

    def __post_init__(self):
        from tagfold.pipeline.options import SCORE_LEVEL

        SCORE_LEVEL.check(self.score_level, "score_level")   # the range --score-level has
        if self.containment not in CONTAINMENT:
            raise ValueError(f"containment={self.containment!r}: expected one of {', '.join(CONTAINMENT)}")


@dataclass(frozen=True)
class _Entries:
    """All vocabulary entries in precedence order, with their category rank."""
    text: tuple[str, ...]
    rank: np.ndarray  # index into VOCAB_ORDER

    @classmethod
    def of(cls, vocab: Vocabularies) -> "_Entries":
        text, rank = [], []
        for r, name in enumerate(VOCAB_ORDER):
            entries = getattr(vocab, name)
            text += entries
            rank += [r] * len(entries)
        return cls(tuple(text), np.asarray(rank, dtype=np.int64))


# ---------------------------------------------------------------- symbol sequences

@dataclass
class _Symbols:
    """Every tag as a run of integer symbols (word ids or code points) in one flat array."""
    sym: np.ndarray     # int64, -1 for a symbol no vocabulary entry uses
    owner: np.ndarray   # int64 tag index of each symbol
    first: np.ndarray   # int64[n_tags] index of each tag's first symbol
    length: np.ndarray  # int64[n_tags] number of symbols per tag


def _words(strings: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Flat word array and the index of the string each word came from."""
    lists = pc.split_pattern_regex(strings, WORD_SPLIT)
    flat = pc.list_flatten(lists)
    owner = pc.list_parent_indices(lists).to_numpy()
    keep = pc.not_equal(pc.utf8_length(flat), 0)  # a leading / trailing separator leaves ''
    return pc.filter(flat, keep), owner[keep.to_numpy(zero_copy_only=False)]


def _code_points(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    buf = np.frombuffer("".join(strings).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return buf.astype(np.int64), np.repeat(np.arange(len(strings), dtype=np.int64), lengths)


def _entry_symbols(entries: tuple[str, ...], containment: str) -> tuple[list[np.ndarray], pa.Array | np.ndarray]:
    """Each entry as a symbol sequence, and the alphabet that numbers the symbols: the entries'
    distinct words (Arrow) or their sorted code points (NumPy)."""
    if containment == "word":
        e_words, e_owner = _words(pa.array(entries, pa.string()))
        alphabet = pc.unique(e_words)
        e_sym = pc.index_in(e_words, value_set=alphabet).to_numpy().astype(np.int64)
    else:
        e_cp, e_owner = _code_points(entries)
        alphabet, e_sym = np.unique(e_cp, return_inverse=True)
    e_split = np.split(np.asarray(e_sym, dtype=np.int64), np.flatnonzero(np.diff(e_owner)) + 1)
    e_seqs: list[np.ndarray] = [np.zeros(0, np.int64)] * len(entries)
    for seq, i in zip(e_split, np.unique(e_owner)):
        e_seqs[i] = seq
    return e_seqs, alphabet


def _symbolize(tags: pa.Array, alphabet: pa.Array | np.ndarray, containment: str) -> _Symbols:
    """Tags as symbol sequences over the entries' alphabet (_entry_symbols)."""
    if containment == "word":
        t_words, owner = _words(tags)
        sym = pc.fill_null(pc.index_in(t_words, value_set=alphabet), -1).to_numpy()
    else:
        cp, owner = _code_points(tags.to_pylist())
        pos = np.minimum(np.searchsorted(alphabet, cp), max(len(alphabet) - 1, 0))
        sym = np.where(alphabet[pos] == cp, pos, -1) if len(alphabet) else np.full(len(cp), -1)
    n = len(tags)
    length = np.bincount(owner, minlength=n).astype(np.int64)
    first = np.zeros(n, dtype=np.int64)
    np.cumsum(length[:-1], out=first[1:])
    return _Symbols(sym.astype(np.int64), owner.astype(np.int64), first, length)


# ---------------------------------------------------------------- trie matching

# Largest dense transition table (nodes x alphabet, int32) before falling back to a sorted key
# array; the package vocabularies need ~0.4 M (substring) / ~5 M (word) cells.
DENSE_CELLS = 1 << 24


class _Trie:
    """Entries as a trie over symbols, stepped for every active start position at once.

    Symbols are shifted by one so that 0 is a dead symbol (a tag boundary, or a word /
    character no entry uses) that has no transition out of any node.
    """

    def __init__(self, seqs: list[np.ndarray], n_alpha: int, dense_cells: int = DENSE_CELLS):
        self.stride = n_alpha + 1
        children: dict[tuple[int, int], int] = {}
        terminal = [-1]
        for entry, seq in enumerate(seqs):
            if len(seq) == 0:
                continue  # an entry with no word characters ('&') can never match
            node = 0
            for sym in (seq + 1).tolist():
                nxt = children.get((node, sym))
                if nxt is None:
                    nxt = children[(node, sym)] = len(terminal)
                    terminal.append(-1)
                node = nxt
            if terminal[node] < 0:  # same symbols as an earlier entry: the earlier one wins
                terminal[node] = entry
        keys = np.array([p * self.stride + sym for p, sym in children], dtype=np.int64)
        child = np.array(list(children.values()), dtype=np.int64)
        self.terminal = np.asarray(terminal, dtype=np.int64)
        self.depth = max((len(seq) for seq in seqs), default=0)
        self.dense = None
        if len(terminal) * self.stride <= dense_cells:
            self.dense = np.full(len(terminal) * self.stride, -1, dtype=np.int32)
            self.dense[keys] = child
        else:
            order = np.argsort(keys)
            self.keys, self.child = keys[order], child[order]

    def _step(self, state: np.ndarray, sym: np.ndarray) -> np.ndarray:
        key = state * self.stride + sym
        if self.dense is not None:
            return self.dense[key]
        if len(self.keys) == 0:
            return np.full(len(key), -1, dtype=np.int64)
        j = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return np.where(self.keys[j] == key, self.child[j], -1)

    def matches(self, syms: "_Symbols") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every (tag, start symbol, length in symbols, entry) where an entry occurs in a tag."""
        # One flat sequence with a dead symbol after every tag (and so at the very end):
        # a walk can then never run into the next tag or off the array.
        n_tags = len(syms.length)
        seq = np.zeros(len(syms.sym) + n_tags, dtype=np.int64)
        seq[np.arange(len(syms.sym)) + syms.owner] = syms.sym + 1
        seq_first = syms.first + np.arange(n_tags)
        start = np.flatnonzero(seq)
        state = np.zeros(len(start), dtype=np.int64)
        out = []
        for step in range(self.depth):
            if len(start) == 0:
                break
            nxt = self._step(state, seq[start + step])
            alive = nxt >= 0
            start, state = start[alive], nxt[alive].astype(np.int64)
            entry = self.terminal[state]
            hit = entry >= 0
            if hit.any():
                tag = np.searchsorted(seq_first, start[hit], side="right") - 1
                out.append((tag, start[hit] - seq_first[tag], np.full(int(hit.sum()), step + 1), entry[hit]))
        if not out:
            z = np.zeros(0, dtype=np.int64)
            return z, z, z, z
        return tuple(np.concatenate([o[i] for o in out]).astype(np.int64) for i in range(4))


def _best_per_tag(tag: np.ndarray, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tags, row of the best match per tag): lowest keys, compared left to right."""
    order = np.argsort(_packed(tag, *keys), kind="stable") if len(tag) else np.zeros(0, np.int64)
    tag_sorted = tag[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = tag_sorted[1:] != tag_sorted[:-1]
    return tag_sorted[first], order[first]


def _packed(*keys: np.ndarray) -> np.ndarray:
    """One int64 per row that orders the rows as `keys` compared left to right do (each key
    shifted to start at 0, then mixed radix): one sort instead of a lexsort over every key,
    ~3x faster. Falls back to each row's lexsort rank when the ranges do not fit in 63 bits."""
    packed, span = np.zeros(len(keys[0]), dtype=np.int64), 1
    for key in keys:
        lo, width = int(key.min()), int(key.max()) - int(key.min()) + 1
        span *= width
        if span >= 1 << 62:
            rank = np.empty(len(keys[0]), dtype=np.int64)
            rank[np.lexsort(tuple(reversed(keys)))] = np.arange(len(rank))
            return rank
        packed = packed * width + (key - lo)
    return packed


# ---------------------------------------------------------------- Stage I

def categorize(tags: Sequence[str], config: CategorizeConfig = CategorizeConfig(), *,
               vocab: Vocabularies | None = None, progress: bool = False) -> pa.Table:
    """categories table (SCHEMA) for `tags`; tag_id is the position in `tags`."""
    from tagfold.native.jaro_winkler import best_match

    vocab = vocab or load_vocabularies(config.vocab_dir)
    entries = _Entries.of(vocab)
    tags_list = list(tags)
    n = len(tags_list)
    raw = pa.array(tags_list, pa.string())
    lowered = pc.utf8_lower(raw)

    category = np.full(n, CATEGORIES.index("junk"), dtype=np.int8)
    method = np.full(n, METHODS.index("none"), dtype=np.int8)
    matched = np.full(n, -1, dtype=np.int64)      # entry index, or -1
    score = np.zeros(n, dtype=np.float64)
    resolved = np.zeros(n, dtype=bool)

    rank_to_category = np.array([CATEGORIES.index(name) for name in VOCAB_ORDER], dtype=np.int8)

    def settle(idx, entry_idx, how, scores=None):
        category[idx] = rank_to_category[entries.rank[entry_idx]]
        method[idx] = METHODS.index(how)
        matched[idx] = entry_idx
        score[idx] = 1.0 if scores is None else scores
        resolved[idx] = True

    # 1 + 3: one trie pass finds every occurrence of every entry; whole-tag ones are exact.
    # Each block of tags keeps only its best exact and best containing match per tag, so the
    # pass's temporaries (symbols, walk states, all matches) never exceed one block's.
    e_seqs, alphabet = _entry_symbols(entries.text, config.containment)
    trie = _Trie(e_seqs, len(alphabet))
    junk_rank = VOCAB_ORDER.index("junk")
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    exact_best, contains_best = [none], [none]    # (tags, entry) per block
    for lo in range(0, n, TRIE_CHUNK):
        syms = _symbolize(lowered.slice(lo, TRIE_CHUNK), alphabet, config.containment)
        m_tag, m_start, m_len, m_entry = trie.matches(syms)
        exact = (m_start == 0) & (m_len == syms.length[m_tag])
        t, row = _best_per_tag(m_tag[exact], entries.rank[m_entry[exact]], m_entry[exact])
        exact_best.append((t + lo, m_entry[exact][row]))
        # containment (step 3) never counts junk entries; the best per tag of the rest, for
        # the tags that steps 1 and 2 leave
        keep = entries.rank[m_entry] != junk_rank
        ct, cs, cl, ce = m_tag[keep], m_start[keep], m_len[keep], m_entry[keep]
        t, row = _best_per_tag(ct, entries.rank[ce], -cl, cs, ce)
        contains_best.append((t + lo, ce[row]))
    settle(*(np.concatenate(part) for part in zip(*exact_best)), "exact")

    # 2: digits
    has_digit = pc.match_substring_regex(raw, "[0-9]").to_numpy(zero_copy_only=False) & ~resolved
    digit_idx = np.flatnonzero(has_digit)
    word = pc.extract_regex(raw.take(pa.array(digit_idx, pa.int64())),
                            r"(?P<w>[\p{L}\p{N}\p{M}]*[0-9][\p{L}\p{N}\p{M}]*)")
    digit_words = pc.struct_field(word, [0])
    category[digit_idx] = CATEGORIES.index("number")
    method[digit_idx] = METHODS.index("digit")
    score[digit_idx] = 1.0
    resolved[digit_idx] = True

    # 3: containment, junk entries excluded (found in the trie pass above)
    t, entry = (np.concatenate(part) for part in zip(*contains_best))
    left = ~resolved[t]
    settle(t[left], entry[left], "contains")

    # 4: Jaro-Winkler on what is left, each distinct (lowered) tag once
    jw_vocab_n = int(np.sum(entries.rank != junk_rank))
    left = np.flatnonzero(~resolved)
    if len(left) and jw_vocab_n:
        left_low = pc.take(lowered, pa.array(left))
        uniq = pc.unique(left_low)
        inverse = pc.index_in(left_low, value_set=uniq).to_numpy()
        queries = uniq.to_pylist()
        jw_vocab = list(entries.text[:jw_vocab_n])  # junk entries come last in precedence order
        from tqdm import tqdm
        with tqdm(total=len(queries), desc="Stage I jaro-winkler", unit="tag", file=sys.stderr,
                  disable=not progress or len(queries) <= JW_CHUNK) as bar:
            # thesis: strictly above score_level
            best, best_score = best_match(queries, jw_vocab, config.score_level, strict=True,
                                          chunk_size=JW_CHUNK, on_chunk=bar.update)
        hit = (best >= 0)[inverse]
        settle(left[hit], best[inverse][hit].astype(np.int64), "jaro_winkler", best_score[inverse][hit])

    # matched: the entry's text, the digit word of a number tag, else null; built in Arrow
    # (take, replace_with_mask) rather than through a Python string per tag.
    matched_text = pa.array(entries.text, pa.string()).take(pa.array(matched, mask=matched < 0))
    if len(digit_idx):
        is_digit = np.zeros(n, dtype=bool)
        is_digit[digit_idx] = True
        matched_text = pc.replace_with_mask(matched_text, pa.array(is_digit), digit_words)
    return pa.table({
        "tag_id": pa.array(np.arange(n, dtype=np.int32)),
        "tag": raw,
        # take() builds the string columns in Arrow, not through 522k Python strings each.
        "category": pa.array(CATEGORIES, pa.string()).take(pa.array(category)),
        "matched": matched_text,
        "method": pa.array(METHODS, pa.string()).take(pa.array(method)),
        "score": pa.array(score),
    }, schema=SCHEMA)


def _ref_words(text: str) -> tuple[str, ...]:
    """Maximal runs of letters, digits and combining marks (WORD_SPLIT's complement)."""
    import unicodedata

    words, cur = [], []
    for ch in text:
        if unicodedata.category(ch)[0] in "LNM":
            cur.append(ch)
        elif cur:
            words.append("".join(cur))
            cur = []
    if cur:
        words.append("".join(cur))
    return tuple(words)


def categorize_reference(tags: Sequence[str], config: CategorizeConfig = CategorizeConfig(), *,
                         vocab: Vocabularies | None = None) -> pa.Table:
    """Plain per-tag Python + rapidfuzz version of `categorize` (same rules, same output):
    the reference the vectorised version is tested against. Slow; for tests and benchmarks."""
    from rapidfuzz import process
    from rapidfuzz.distance import JaroWinkler

    vocab = vocab or load_vocabularies(config.vocab_dir)
    entries = _Entries.of(vocab)
    split = _ref_words if config.containment == "word" else tuple
    # Entries with the same symbols: the first (highest precedence) stands for all.
    first_of: dict[tuple, int] = {}
    for i, e in enumerate(entries.text):
        seq = split(e)
        if seq:
            first_of.setdefault(seq, i)
    junk_rank = VOCAB_ORDER.index("junk")
    jw_vocab = [e for e, r in zip(entries.text, entries.rank) if r != junk_rank]
    rows = []
    for tag_id, tag in enumerate(tags):
        seq = split(tag.lower())
        category, matched, method, score = "junk", None, "none", 0.0
        if seq in first_of:
            e = first_of[seq]
            category, matched, method, score = VOCAB_ORDER[entries.rank[e]], entries.text[e], "exact", 1.0
        elif any("0" <= ch <= "9" for ch in tag):
            digit_word = next(w for w in _ref_words(tag) if any("0" <= ch <= "9" for ch in w))
            category, matched, method, score = "number", digit_word, "digit", 1.0
        else:
            best = None
            for eseq, e in first_of.items():
                if entries.rank[e] == junk_rank:
                    continue
                k = len(eseq)
                for start in range(len(seq) - k + 1):
                    if seq[start:start + k] == eseq:
                        key = (entries.rank[e], -k, start, e)
                        best = key if best is None or key < best else best
                        break  # later starts of the same entry rank lower
            if best is not None:
                e = best[3]
                category, matched, method, score = VOCAB_ORDER[entries.rank[e]], entries.text[e], "contains", 1.0
            elif jw_vocab:
                hit = process.extractOne(tag.lower(), jw_vocab, scorer=JaroWinkler.similarity)
                if hit is not None and hit[1] > config.score_level:
                    e = hit[2]
                    category, matched, method, score = VOCAB_ORDER[entries.rank[e]], entries.text[e], "jaro_winkler", hit[1]
        rows.append((tag_id, tag, category, matched, method, float(score)))
    cols = list(zip(*rows)) if rows else [[]] * 6
    return pa.table([pa.array(list(c), t.type) for c, t in zip(cols, SCHEMA)], schema=SCHEMA)


def category_shares(table: pa.Table) -> dict[str, float]:
    """Fraction of tags per category, in CATEGORIES order."""
    counts = dict(zip(*np.unique(table["category"].to_numpy(zero_copy_only=False), return_counts=True)))
    n = max(table.num_rows, 1)
    return {c: counts.get(c, 0) / n for c in CATEGORIES}


def _counts(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Tags per category [CATEGORIES] and per (category, method) [CATEGORIES, METHODS],
    counted on integer codes rather than by comparing every string 30 times."""
    def codes(column: str, names: tuple[str, ...]) -> np.ndarray:
        return pc.fill_null(pc.index_in(table[column], value_set=pa.array(names, pa.string())), -1).to_numpy()

    cat, meth = codes("category", CATEGORIES), codes("method", METHODS)
    per_category = np.bincount(cat[cat >= 0], minlength=len(CATEGORIES))
    both = (cat >= 0) & (meth >= 0)
    per_method = np.bincount(cat[both] * len(METHODS) + meth[both], minlength=len(CATEGORIES) * len(METHODS))
    return per_category, per_method.reshape(len(CATEGORIES), len(METHODS))


def shares_text(table: pa.Table) -> str:
    per_category, per_method = _counts(table)
    n = max(table.num_rows, 1)
    lines = [f"{'category':<12} {'tags':>9} {'share':>7}   " + "  ".join(f"{m:>12}" for m in METHODS)]
    for i, c in enumerate(CATEGORIES):
        lines.append(f"{c:<12} {int(per_category[i]):>9,} {per_category[i] / n:>7.1%}   "
                     + "  ".join(f"{int(v):>12,}" for v in per_method[i]))
    lines.append(f"{'total':<12} {table.num_rows:>9,}")
    return "\n".join(lines)


SHARES_DPI = 120


def shares_figure(table: pa.Table, title: str = ""):
    """The matplotlib figure of plot_shares."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, per_method = _counts(table)
    n = table.num_rows
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(CATEGORIES))
    for j, m in enumerate(METHODS):
        vals = per_method[:, j].astype(float)
        if vals.any():
            ax.bar(CATEGORIES, vals, bottom=bottom, label=m)
            bottom += vals
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total / max(n, 1):.1%}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("tags")
    ax.set_title(title or f"Stage I categories ({n:,} tags)")
    ax.legend(title="method", fontsize=8)
    fig.tight_layout()
    return fig


def plot_shares(table: pa.Table, path: str | Path, title: str = "") -> Path:
    """Bar chart of tags per category, split by method, written atomically as PNG."""
    import matplotlib.pyplot as plt

    from tagfold.pipeline.io import atomic_path

    fig = shares_figure(table, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=SHARES_DPI)
    plt.close(fig)
    return Path(path)


def main(argv: list[str]) -> int:
    import time

    from tagfold.pipeline.io import continue_run, output_lock, read_input_table, write_parquet
    from tagfold.pipeline.options import parser
    from tagfold.pipeline.tags.ids import to_ingest_ids
    from tagfold.pipeline.tags.options import add_stage1

    p = parser("tagfold categorize", __doc__.split("\n")[0])
    p.add_argument("--tags", required=True, help="tags.parquet from `tagfold ingest`")
    p.add_argument("--out", required=True, help="output directory (categories.parquet, categories.png)")
    add_stage1(p)
    p.add_argument("--vocab-dir", default=None,
                   help="directory whose genres.txt / emotions.txt / descriptive.txt / junk.txt replace the package's")
    args = p.parse_args(argv)
    config = CategorizeConfig(args.score_level, args.containment, args.vocab_dir)
    vocab = load_vocabularies(config.vocab_dir)
    tags_table = read_input_table(args.tags, columns=["tag_id", "tag"])
    print(f"Stage I: score level {config.score_level}, {config.containment} containment, "
          f"vocabularies from {config.vocab_dir or 'the package'}", file=sys.stderr)
    with output_lock(args.out):
        continue_run(args.out, [args.tags])   # its outputs belong to its input's run (never a mix)
        t0 = time.perf_counter()
        table = categorize(tags_table["tag"].to_pylist(), config, vocab=vocab, progress=True)
        table = to_ingest_ids(table, tags_table["tag_id"].combine_chunks())
        elapsed = time.perf_counter() - t0
        meta = {"categorize": asdict(config), "vocab_sources": list(vocab.sources),
                "vocab_fingerprint": vocab.fingerprint(),
                "vocab_sizes": {k: len(getattr(vocab, k)) for k in VOCAB_ORDER},
                "tags": str(args.tags)}
        out = write_parquet(table, Path(args.out) / "categories.parquet", meta)
        png = plot_shares(table, Path(args.out) / "categories.png")
    print(shares_text(table))
    print(f"Stage I: {table.num_rows:,} tags in {elapsed:.2f} s -> {out}, {png}")
    return 0
