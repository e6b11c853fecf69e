"""Stage III: embedding collapse onto the selected tags (the thesis's word_embedder.py).

Default (`--vectors minilm --cut center`): meaning, for the tags spelling found nothing in.

- Candidates: tags in which Stage II's rules saw nothing: no token is a rule word (synonym,
  foreign word, blocker, negator ...) and no token contains a selected tag's word ('soulwax',
  'not jazz', 'hot hot heat' are Stage II's to judge, and it judged them names or negations).
  Tags Stage II mapped never fold again.
- Each candidate is encoded by a sentence encoder shipped in a wheel (pipeline/tags/encoders.py:
  all-MiniLM-L6-v2, word pieces, so 'beauteous' and 'spooky' get a vector), through a vector
  cache on disk keyed by (model, tag text) with a checksum (pipeline/tags/vector_cache.py).
- Fold rule 'center' (chosen on both dev gold files, README): a candidate folds into its most
  similar selected tag t when cos(tag, t) minus the tag's mean cosine to all selected tags is
  at least `threshold` (0.23). Subtracting the mean removes what every target shares with the
  tag (the template, 'music', a name's general sound), so generic tags ('ohio', 'iraq') that
  are a little similar to everything do not fold. Also measured: 'cosine' (cos >= threshold)
  and 'margin' (cos to t minus cos to the runner-up >= threshold).
- `--cut normal --percentile 0.001` is the thesis's rule, described below: with word vectors
  it runs over all tags as the thesis did; with an encoder the normal fit is over the
  candidates (the only tags encoded).

The thesis's rule (`--cut normal`; with `--vectors glove|word2vec|FILE`):

1. Each tag gets a vector: the whole tag if the vectors know it ('singer-songwriter',
   or any tag under in-domain word2vec), else the mean of its known tokens (sqrt-n pooling
   as an option). Built for all tags at once as a sparse (tags x words) matrix times the
   embedding matrix, not a Python loop of vector sums. OOV tokens are counted and reported.
2. L2 distance from every tag to every selected tag (native kernel).
3. Per selected tag t, a normal fit of all tags' distances to t, and the cut
   norm.ppf(percentile, mean_t, std_t) (default 0.1%, as in the thesis).
4. A tag that Stage II did not map folds into its nearest selected tag when its distance is
   under that tag's cut (source 'embedding'). Stage II rows are kept as they are (source
   'stage2'): Stage III = Stage II rows + embedding rows, the thesis's structure.

Precision guard (documented choice, on by default): a tag only folds by embedding when
every one of its tokens is known to the vectors. A vector averaged over half the words of
'alan menken - happy end in agrabah' says little about the tag; without the guard such
partial vectors add most of the wrong pairs (measured on the gold tags, see the README).
"""
from __future__ import annotations

import functools
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from tagfold.pipeline.selected import SelectedTags, load_selected
from tagfold.pipeline.errors import UserError
from tagfold.pipeline.tags import normalize

TOKEN = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
_DIGIT = re.compile(r"\d")

STAGE3_SCHEMA = pa.schema([
    ("tag_id", pa.int32()),
    ("tag", pa.string()),
    ("target", pa.dictionary(pa.int32(), pa.string())),
    ("source", pa.dictionary(pa.int8(), pa.string())),
    ("distance", pa.float32()),
    ("cut", pa.float32()),
])
FITS_SCHEMA = pa.schema([
    ("target", pa.string()), ("mean", pa.float64()), ("std", pa.float64()),
    ("cut", pa.float64()), ("n", pa.int64()), ("folded", pa.int64()),
])
SOURCES = ("stage2", "embedding")


CUTS = ("center", "cosine", "margin", "normal")
# Default threshold of each similarity rule, chosen on the dev gold files (README, Stage III).
DEFAULT_THRESHOLDS = {"center": 0.23, "cosine": 0.75, "margin": 0.10}


@dataclass(frozen=True)
class EmbedConfig:
    percentile: float = 0.001   # the thesis's 0.1% cut (--cut normal)
    pooling: str = "mean"       # mean | sqrt (sum / sqrt(n)), for word vectors
    require_all_known: bool = True
    vectors: str = "minilm"     # minilm (sentence encoder) | glove | word2vec | a vectors file
    cut: str = "center"         # fold rule: center | cosine | margin | normal
    threshold: float | None = None   # of the similarity rules; None: DEFAULT_THRESHOLDS[cut]
    cache_dir: str | None = None     # vector cache folder (encoders only); None: no cache

    def __post_init__(self):
        if not 0.0 < self.percentile < 0.5:
            raise ValueError(f"percentile must be in (0, 0.5), got {self.percentile}")
        if self.pooling not in ("mean", "sqrt"):
            raise ValueError(f"pooling must be 'mean' or 'sqrt', got {self.pooling!r}")
        if self.cut not in CUTS:
            raise ValueError(f"cut must be one of {', '.join(CUTS)}, got {self.cut!r}")
        if self.threshold is not None and not -1.0 <= self.threshold <= 2.0:
            raise ValueError(f"threshold must be in [-1, 2], got {self.threshold}")

    @property
    def fold_threshold(self) -> float | None:
        """The similarity rule's threshold (None under the normal cut)."""
        if self.cut == "normal":
            return None
        return DEFAULT_THRESHOLDS[self.cut] if self.threshold is None else self.threshold


@dataclass
class EmbedReport:
    tags: int
    with_vector: int
    all_tokens_known: int
    tokens: int
    oov_tokens: int
    unique_oov: int
    folded_by_embedding: int
    candidates: int = 0      # tags Stage III may fold (see the module doc); 0 under --cut normal
    encoded: int = 0         # encoder only: tags encoded this run (not found in the vector cache)

    def __str__(self) -> str:
        if self.candidates:
            return (f"Stage III: {self.candidates:,}/{self.tags:,} tags are candidates (no rule word in them), "
                    f"{self.with_vector:,} with a vector ({self.candidates - self.with_vector:,} without: "
                    f"no Latin letter), {self.encoded:,} texts encoded this run (with the selected tags; the rest "
                    f"came from the vector cache); "
                    f"{self.folded_by_embedding:,} tag{'' if self.folded_by_embedding == 1 else 's'} "
                    f"folded by embedding")
        return (f"Stage III: {self.with_vector:,}/{self.tags:,} tags have a vector "
                f"({self.all_tokens_known:,} with every token known); OOV tokens {self.oov_tokens:,}"
                f"/{self.tokens:,} ({self.unique_oov:,} distinct); {self.folded_by_embedding:,} "
                f"tag{'' if self.folded_by_embedding == 1 else 's'} folded by embedding")


def _token_rows(tags: Sequence[str], key_to_index: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, set]:
    """CSR pieces (indptr, word ids) of each tag's known words, tokens per tag, OOV per tag."""
    # Plain Python lists in the loop (numpy item assignment costs more than the work itself
    # over 522k tags); a tag whose tokens are all known takes one map() and one extend().
    ends: list[int] = []
    ids: list[int] = []
    n_tokens: list[int] = []
    n_oov: list[int] = []
    oov: set[str] = set()
    get = key_to_index.get
    findall = TOKEN.findall
    for tag in tags:
        whole = get(tag)
        if whole is not None:
            ids.append(whole)
            n_tokens.append(1)
            n_oov.append(0)
            ends.append(len(ids))
            continue
        toks = findall(tag.lower())
        js = list(map(get, toks))
        if None not in js:
            ids.extend(js)
            n_tokens.append(len(js))
            n_oov.append(0)
            ends.append(len(ids))
            continue
        n_tok = n_bad = 0
        for tok, j in zip(toks, js):
            if j is None and ("-" in tok or "'" in tok):
                parts = re.split(r"['-]", tok)
                n_tok += len(parts)
                for p in parts:
                    jp = get(p)
                    if jp is None:
                        n_bad += 1
                        oov.add(p)
                    else:
                        ids.append(jp)
                continue
            n_tok += 1
            if j is None:
                n_bad += 1
                oov.add(tok)
            else:
                ids.append(j)
        n_tokens.append(n_tok)
        n_oov.append(n_bad)
        ends.append(len(ids))
    indptr = np.zeros(len(tags) + 1, dtype=np.int64)
    indptr[1:] = ends
    return (indptr, np.asarray(ids, dtype=np.int64), np.asarray(n_tokens, dtype=np.int32),
            np.asarray(n_oov, dtype=np.int32), oov)


def tag_vectors(tags: Sequence[str], kv, pooling: str = "mean"):
    """(vectors float32 [n, d], has_vector bool [n], all_known bool [n], token stats) for `tags`."""
    import scipy.sparse as sp

    indptr, ids, n_tokens, n_oov, oov = _token_rows(tags, kv.key_to_index)
    counts = np.diff(indptr)
    weights = np.repeat(1.0 / np.maximum(counts, 1) if pooling == "mean" else 1.0 / np.sqrt(np.maximum(counts, 1)),
                        counts).astype(np.float32)
    # Only the rows of words that occur are gathered from the (memory-mapped) embedding matrix.
    used, local = np.unique(ids, return_inverse=True)
    pooled = sp.csr_matrix((weights, local, indptr), shape=(len(tags), len(used)))
    vectors = np.asarray(pooled @ np.asarray(kv.vectors[used], dtype=np.float32), dtype=np.float32)
    has_vector = counts > 0
    all_known = has_vector & (n_oov == 0)
    stats = {"tokens": int(n_tokens.sum()), "oov_tokens": int(n_oov.sum()), "unique_oov": len(oov)}
    return vectors, has_vector, all_known, stats


FIT_BLOCK = 8192   # rows per block of _mean_std


def _mean_std(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d.astype(float64).mean(axis=0) and .std(axis=0), bit for bit, a block of rows at a time.

    NumPy reduces axis 0 of a C-ordered (n, k >= 2) array row by row, so carrying the running
    sum into each block as its first row gives the very same sums, without the two float64
    copies of d (370 MB for the full job, most of the cost in fresh-page faults). With one
    column NumPy sums pairwise instead, so that case stays on the plain call.
    """
    n, k = d.shape
    if k < 2 or not d.flags.c_contiguous:
        d = d.astype(np.float64, copy=False)
        return d.mean(axis=0), d.std(axis=0)
    total = np.zeros(k)
    for lo in range(0, n, FIT_BLOCK):
        total = np.add.reduce(np.concatenate([total[None], d[lo:lo + FIT_BLOCK]]), axis=0)
    mean = total / n
    squares = np.zeros(k)
    for lo in range(0, n, FIT_BLOCK):
        x = np.subtract(d[lo:lo + FIT_BLOCK], mean, dtype=np.float64)
        np.multiply(x, x, out=x)
        squares = np.add.reduce(np.concatenate([squares[None], x]), axis=0)
    return mean, np.sqrt(squares / n)


def fit_cuts(distances: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean, std (ddof=0, scipy.stats.norm.fit's MLE) and norm.ppf(percentile, mean, std)."""
    from scipy.stats import norm

    mean, std = _mean_std(distances)
    return mean, std, norm.ppf(percentile, loc=mean, scale=std)


@dataclass
class EmbedResult:
    table: pa.Table          # STAGE3_SCHEMA
    fits: pa.Table           # FITS_SCHEMA
    report: EmbedReport
    distances: np.ndarray    # [tags with a vector, targets], for the histogram plot
    has_vector: np.ndarray
    measure: str = "L2 distance"   # what `distances` holds (EmbedDistances.measure)


@dataclass
class EmbedDistances:
    """Everything of Stage III that does not depend on Stage II (steps 1-3 of the module doc).

    Split from embed_collapse so that `tagfold pipeline` can compute it while Stage II runs.
    """
    n_tags: int
    rows: np.ndarray         # tag positions with a vector
    distances: np.ndarray    # [len(rows), targets] float32
    has_vector: np.ndarray
    all_known: np.ndarray
    stats: dict
    mean: np.ndarray
    std: np.ndarray
    cuts: np.ndarray
    nearest: np.ndarray      # per row of distances: nearest target under its cut, or -1
    nearest_d: np.ndarray
    tags_array: pa.Array     # the tags as Arrow strings, for the output's tag column
    # Similarity rules: `distances` holds the rule's score per (row, target), higher folds;
    # `cosine` the plain cosine similarity (the output's distance column is 1 - cosine).
    measure: str = "L2 distance"
    cosine: np.ndarray | None = None
    candidates: int = 0
    encoded: int = 0


@dataclass(frozen=True)
class CandidateRules:
    """What decides whether Stage III may fold a tag (see stage3_candidates)."""
    rule_words: frozenset   # Stage II's rule words (lexicon and negators)
    pattern: str            # the selected tags' words of 3+ letters, longest first, as one alternation

    def is_candidate(self, tag: str) -> bool:
        """The rule for one tag, in plain Python: stage3_candidates' reference, and its path
        for the tags its bulk tests leave."""
        # Digits are Stage II's too (decades, years): an encoder reads 'italia 90' as the 90s.
        if self._selected_word(tag.lower()) or _DIGIT.search(tag):
            return False
        toks = normalize.tokenize(tag)
        return bool(toks) and not self.rule_words.intersection(toks) and not self._selected_word(" ".join(toks))

    @functools.cached_property
    def rule_words_array(self) -> pa.Array:
        return pa.array(sorted(self.rule_words), pa.string())

    @functools.cached_property
    def _selected_word(self):
        return re.compile(self.pattern).search if self.pattern else (lambda _: None)


@functools.lru_cache(maxsize=4)
def candidate_rules(selected: SelectedTags) -> CandidateRules:
    """Built once per selected list (Stage II's rule set takes ~0.2 s), so `tagfold pipeline`
    builds it while the tags are still being read."""
    from tagfold.pipeline.tags.collapse import CollapseConfig, _ruleset

    rules = _ruleset(selected, CollapseConfig())
    words = sorted({w for t in selected.tags for w in normalize.tokenize(t) if len(w) >= 3}, key=len, reverse=True)
    return CandidateRules(rules.lexicon | rules.negators, "|".join(map(re.escape, words)))


def stage3_candidates(tags: Sequence[str], selected: SelectedTags, tags_array: pa.Array | None = None) -> np.ndarray:
    """bool [n]: the tags Stage III may fold: none of its tokens is a Stage II rule word and
    none contains a word of a selected tag (those are Stage II's to judge), and it has a letter.

    tags_array: the same tags as an Arrow array, when the caller has one.
    """
    import pyarrow.compute as pc

    rules = candidate_rules(selected)
    # The raw-text tests in bulk, in Arrow, on what they surely rule out: an ASCII digit, or a
    # selected word (when all are ASCII) in the tag with its ASCII letters lowered, which
    # tag.lower() then holds too. That is most tags; the rest take the per-tag rule, which decides.
    arr = tags_array if tags_array is not None else pa.array(tags, pa.string())
    ruled_out = pc.match_substring_regex(arr, "[0-9]")
    in_bulk = rules.pattern.isascii()
    if rules.pattern and in_bulk:
        ruled_out = pc.or_(ruled_out, pc.match_substring_regex(pc.ascii_lower(arr), rules.pattern))
    left = np.flatnonzero(~ruled_out.to_numpy(zero_copy_only=False))
    out = np.zeros(len(tags), dtype=bool)
    if in_bulk and len(left):
        # Plain tags left (lowercase ASCII words and spaces) are their own tokens and hold no
        # selected word: a candidate unless one of the words is a rule word, tested in bulk.
        plain = pc.match_substring_regex(arr.take(pa.array(left)), "^[a-z ]*[a-z][a-z ]*$").to_numpy(
            zero_copy_only=False)
        words = pc.ascii_split_whitespace(arr.take(pa.array(left[plain])))
        rule_word = pc.is_in(pc.list_flatten(words), value_set=rules.rule_words_array).to_numpy(zero_copy_only=False)
        has_rule_word = np.zeros(int(plain.sum()), dtype=bool)
        has_rule_word[pc.list_parent_indices(words).to_numpy()[rule_word]] = True
        out[left[plain]] = ~has_rule_word
        left = left[~plain]
    for i in left.tolist():
        out[i] = rules.is_candidate(tags[i])
    return out


def similarity_scores(cosine: np.ndarray, cut: str) -> np.ndarray:
    """The score each similarity rule thresholds, per (tag, target): higher is closer.

    cosine: the cosine itself; center: minus the tag's mean cosine over all targets; margin:
    minus the best cosine among the other targets (positive only for the nearest target).
    """
    if cut == "cosine":
        return cosine
    # float64: subtracting a row's mean or runner-up in float32 can tie the best target with
    # another one and so change which target a tag folds into.
    cosine = cosine.astype(np.float64)
    if cut == "center":
        return cosine - cosine.mean(axis=1, keepdims=True)
    if cut == "margin":
        if cosine.shape[1] < 2:
            return cosine
        top2 = np.partition(cosine, -2, axis=1)[:, -2:]
        best, second = top2.max(axis=1, keepdims=True), top2.min(axis=1, keepdims=True)
        return cosine - np.where(cosine >= best, second, best)
    raise ValueError(f"not a similarity rule: {cut!r}")


def fold_by_similarity(scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(target index or -1, its score) per row: the best-scoring target when >= threshold."""
    if scores.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(best)), best]
    return np.where(best_score >= threshold, best, -1), best_score.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    """float32 x with each row scaled to unit length, in place when x already is a float32
    array (every caller hands over a fresh one: no second copy of the encoder's vectors)."""
    x = np.asarray(x, dtype=np.float32)
    if not x.flags.writeable:
        x = x.copy()
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, np.maximum(norms, 1e-12), out=x)


def _is_encoder(kv) -> bool:
    return hasattr(kv, "encode")


def embed_distances(tags: Sequence[str], selected: SelectedTags | None = None, kv=None,
                    config: EmbedConfig = EmbedConfig(), cache: tuple | None = None) -> EmbedDistances:
    """Tag vectors, L2 distances to the selected tags, normal fits, cuts and nearest targets.

    cache: an encoder's vector cache (vector_cache.read_cache) when already read."""
    from tagfold.native.l2 import l2_distances, nearest_under_cut
    from tagfold.pipeline.tags.vectors import load_vectors

    selected = selected or load_selected()
    kv = kv if kv is not None else load_vectors(config.vectors)
    tags = list(tags)
    if _is_encoder(kv) or config.cut != "normal":
        return _similarity_distances(tags, selected, kv, config, cache)
    vectors, has_vector, all_known, stats = tag_vectors(tags, kv, config.pooling)
    target_vectors, target_has, _, _ = tag_vectors(list(selected.tags), kv, config.pooling)
    if not target_has.all():
        missing = [t for t, ok in zip(selected.tags, target_has) if not ok]
        raise UserError(f"the vectors know no word of the selected tag(s) {missing}; Stage III cannot place them")

    rows = np.nonzero(has_vector)[0]
    D = l2_distances(vectors[rows], target_vectors)
    mean, std, cuts = fit_cuts(D, config.percentile)
    nearest, nearest_d = nearest_under_cut(D, cuts)
    return EmbedDistances(len(tags), rows, D, has_vector, all_known, stats, mean, std, cuts, nearest, nearest_d,
                          pa.array(tags, pa.string()))


def _similarity_distances(tags: list[str], selected: SelectedTags, kv, config: EmbedConfig,
                          cache: tuple | None = None) -> EmbedDistances:
    """embed_distances for the candidates only: an encoder's vectors (cached) or pooled word
    vectors, cosine to each selected tag, then the fold rule (a similarity rule, or the normal
    fit over the candidates' L2 distances)."""
    from tagfold.native.l2 import nearest_under_cut

    tags_array = pa.array(tags, pa.string())
    candidates = stage3_candidates(tags, selected, tags_array)
    encoded = 0
    if _is_encoder(kv):
        from tagfold.pipeline.tags.encoders import encodable
        from tagfold.pipeline.tags.vector_cache import cached_vectors

        has_vector = candidates.copy()
        has_vector[candidates] = [encodable(tags[i]) for i in np.flatnonzero(candidates)]
        all_known = has_vector
        rows = np.flatnonzero(has_vector)
        texts = [tags[i] for i in rows] + list(selected.tags)
        vectors, encoded = cached_vectors(texts, kv.key, kv.dim, kv.encode, config.cache_dir, cache)
        vectors = _unit(vectors)
        tag_vecs, target_vecs = vectors[:len(rows)], vectors[len(rows):]
        stats = {"tokens": int(candidates.sum()), "oov_tokens": int((candidates & ~has_vector).sum()),
                 "unique_oov": int((candidates & ~has_vector).sum())}
    else:
        sub = np.flatnonzero(candidates)
        vecs, has, known, stats = tag_vectors([tags[i] for i in sub], kv, config.pooling)
        target_vecs, target_has, _, _ = tag_vectors(list(selected.tags), kv, config.pooling)
        if not target_has.all():
            missing = [t for t, ok in zip(selected.tags, target_has) if not ok]
            raise UserError(f"the vectors know no word of the selected tag(s) {missing}; Stage III cannot place them")
        has_vector = np.zeros(len(tags), dtype=bool)
        all_known = np.zeros(len(tags), dtype=bool)
        has_vector[sub] = has
        all_known[sub] = known
        rows = np.flatnonzero(has_vector)
        tag_vecs, target_vecs = _unit(vecs[has]), _unit(target_vecs)
    cosine = (tag_vecs @ target_vecs.T).astype(np.float32)
    if config.cut == "normal":
        D = np.sqrt(np.maximum(2.0 - 2.0 * cosine, 0.0)).astype(np.float32)  # L2 between unit vectors
        mean, std, cuts = fit_cuts(D, config.percentile)
        nearest, nearest_d = nearest_under_cut(D, cuts)
        measure, scores = "L2 distance", D
    else:
        scores = similarity_scores(cosine, config.cut)
        threshold = config.fold_threshold
        nearest, _ = fold_by_similarity(scores, threshold)
        nearest_d = (1.0 - cosine[np.arange(len(rows)), np.maximum(nearest, 0)]).astype(np.float32)
        mean, std = scores.mean(axis=0), scores.std(axis=0)
        if not len(rows):
            mean = std = np.zeros(len(selected))
        cuts = np.full(len(selected), threshold)
        measure = {"center": "cosine - tag's mean cosine to all selected tags",
                   "cosine": "cosine similarity",
                   "margin": "cosine - best other selected tag's cosine"}[config.cut]
    return EmbedDistances(len(tags), rows, scores, has_vector, all_known, stats, mean, std, cuts, nearest,
                          nearest_d, tags_array, measure, cosine, int(candidates.sum()), encoded)


def _target_codes(column: pa.ChunkedArray, selected: SelectedTags) -> np.ndarray:
    """Index in selected.tags of every value of a Stage II target column."""
    target_index = {t: i for i, t in enumerate(selected.tags)}
    if not pa.types.is_dictionary(column.type):
        return np.array([target_index[t] for t in column.to_pylist()], dtype=np.int32)
    # Map each chunk's small dictionary once instead of 700k Python strings one by one.
    parts = []
    for chunk in column.chunks:
        names = chunk.dictionary.to_pylist()
        lookup = np.array([target_index.get(t, -1) for t in names] + [-1], dtype=np.int32)
        codes = lookup[np.asarray(chunk.indices.fill_null(len(names)).to_numpy(zero_copy_only=False), dtype=np.int64)]
        if (codes < 0).any():
            bad = chunk.to_pylist()[int(np.flatnonzero(codes < 0)[0])]
            raise KeyError(bad)
        parts.append(codes)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def embed_collapse(tags: Sequence[str], stage2: pa.Table, selected: SelectedTags | None = None, kv=None,
                   config: EmbedConfig = EmbedConfig(), distances: EmbedDistances | None = None) -> EmbedResult:
    """Stage III rows for `tags` (tag_id = position), given Stage II rows keyed by the same tag_id.

    `distances`: embed_distances(tags, selected, kv, config) when already computed.
    """
    selected = selected or load_selected()
    tags = list(tags)
    pre = distances if distances is not None else embed_distances(tags, selected, kv, config)
    if pre.n_tags != len(tags):
        raise ValueError(f"distances were computed for {pre.n_tags:,} tags, not {len(tags):,}")
    rows, D, cuts, nearest, nearest_d = pre.rows, pre.distances, pre.cuts, pre.nearest, pre.nearest_d

    stage2_ids = np.asarray(stage2.column("tag_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    mapped = np.zeros(len(tags), dtype=bool)
    mapped[stage2_ids] = True
    eligible = (nearest >= 0) & ~mapped[rows]
    if config.require_all_known:
        eligible &= pre.all_known[rows]
    emb_ids = rows[eligible]
    emb_targets = nearest[eligible].astype(np.int32)
    emb_dist = nearest_d[eligible]

    # Stage II rows carry their distance to the target too, where the tag has a vector.
    row_of = np.full(len(tags), -1, dtype=np.int64)
    row_of[rows] = np.arange(len(rows))
    s2_targets = _target_codes(stage2.column("target"), selected)
    s2_rows = row_of[stage2_ids]
    # (1 - cosine under the similarity rules; NaN for a tag that was no Stage III candidate.)
    distance_of = D if pre.measure == "L2 distance" else 1.0 - pre.cosine
    s2_dist = (np.where(s2_rows >= 0, distance_of[np.maximum(s2_rows, 0), s2_targets], np.nan).astype(np.float32)
               if len(rows) else np.full(len(stage2_ids), np.nan, dtype=np.float32))

    ids = np.concatenate([stage2_ids, emb_ids]).astype(np.int32)
    targets = np.concatenate([s2_targets, emb_targets])
    source = np.concatenate([np.zeros(len(stage2_ids), np.int8), np.ones(len(emb_ids), np.int8)])
    dist = np.concatenate([s2_dist, emb_dist])
    # Rows by (tag_id, target): one stable sort of a combined key, which finds the Stage II
    # rows already in order and merges the few embedding rows in (lexsort: ~10x the time).
    order = np.argsort(ids.astype(np.int64) * max(len(selected), 1) + targets, kind="stable")
    ids, targets, source, dist = ids[order], targets[order], source[order], dist[order]
    table = pa.table({
        "tag_id": pa.array(ids, pa.int32()),
        "tag": pre.tags_array.take(pa.array(ids)),
        "target": pa.DictionaryArray.from_arrays(pa.array(targets, pa.int32()), pa.array(selected.tags, pa.string())),
        "source": pa.DictionaryArray.from_arrays(pa.array(source, pa.int8()), pa.array(SOURCES, pa.string())),
        "distance": pa.array(dist, pa.float32(), from_pandas=True),
        "cut": pa.array(cuts[targets].astype(np.float32), pa.float32()),
    }, schema=STAGE3_SCHEMA)
    folded = np.bincount(emb_targets, minlength=len(selected))
    fits = pa.table({"target": list(selected.tags), "mean": pre.mean, "std": pre.std, "cut": cuts,
                     "n": np.full(len(selected), len(rows), dtype=np.int64), "folded": folded.astype(np.int64)},
                    schema=FITS_SCHEMA)
    report = EmbedReport(tags=len(tags), with_vector=int(pre.has_vector.sum()),
                         all_tokens_known=int(pre.all_known.sum()),
                         folded_by_embedding=int(len(emb_ids)), candidates=pre.candidates,
                         encoded=pre.encoded, **pre.stats)
    return EmbedResult(table, fits, report, D, pre.has_vector, pre.measure)


def draw_distance_grid(distances: np.ndarray, mean: Sequence[float], std: Sequence[float], cuts: Sequence[float],
                       selected: SelectedTags, measure: str = "L2 distance"):
    """The figure of plot_distance_grid before its panel titles get the folded counts (those
    need Stage II), so `tagfold pipeline` can draw and lay it out while Stage II still runs.

    Five panels a row, each with its own count axis on a log scale (the folds are the thin tail
    beyond the dashed cut, invisible on a linear axis) and the measure on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(selected)
    cols = min(5, max(n, 1))
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 2.3 * nrows + 0.8), squeeze=False)
    lower_is_closer = measure == "L2 distance"
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        d = distances[:, k]
        if len(d):
            counts, edges = np.histogram(d, bins=60)
            # One filled step artist per panel: ax.bar made 60 Patch objects per panel (3,000
            # in all) and took seconds to build and draw; the picture is the same histogram.
            # log10(1 + count) on a linear axis, labelled as counts: a log-scale axis shows the
            # same picture but its transforms and mathtext labels cost most of the drawing time.
            ax.stairs(np.log10(1 + counts), edges, fill=True, color="#9ab", linewidth=0)
            if lower_is_closer and std[k] > 0:
                from scipy.stats import norm as normal   # only the normal cut draws its fit

                x = np.linspace(edges[0], edges[-1], 200)
                fit = normal.pdf(x, mean[k], std[k]) * len(d) * (edges[1] - edges[0])
                ax.plot(x, np.log10(1 + fit), color="#c33", lw=1)
            top = max(int(np.ceil(np.log10(1 + counts.max()))), 1)
            ax.set_ylim(0, top)
            # Every other power of ten once there are more than three, and at most five
            # measure ticks: matplotlib's ticks cost most of this figure's ~1 s of drawing,
            # and these fewer (~350 instead of ~580) draw it ~20% faster.
            decades = range(0, top + 1, 1 if top <= 3 else 2)
            ax.set_yticks(decades, [f"{10 ** p:g}" for p in decades])
        ax.axvline(cuts[k], color="k", lw=1, ls="--")
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        if k % cols == 0:
            ax.set_ylabel("tags (log scale)", fontsize=8)
        if k >= n - cols:
            ax.set_xlabel(measure, fontsize=7)
        # The folded count is filled in by plot_distance_grid; laying out with a one-digit
        # placeholder already makes the layout (tight_layout, ~0.3 s) independent of Stage II.
        ax.set_title(f"{selected.tags[k]} (0)", fontsize=9)
    side = "left of" if lower_is_closer else "right of"
    fit = "; red: normal fit" if lower_is_closer else ""
    fig.suptitle(f"Stage III: {measure} of the tags Stage III scores, to each selected tag{fit}\n"
                 f"dashed: cut (tags {side} it fold into the panel's tag when it is their nearest); "
                 f"in brackets: tags folded by embedding", fontsize=10)
    # Fixed margins in inches: tight_layout would render every label once more to measure it.
    height, width = fig.get_figheight(), fig.get_figwidth()
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 1.35 / height,
                        hspace=0.5, wspace=0.28)
    return fig


GRID_DPI = 72


def distance_grid_figure(result: EmbedResult, selected: SelectedTags, figure=None):
    """The figure of plot_distance_grid; `figure`: draw_distance_grid's, when already drawn."""
    fits = result.fits.to_pydict()
    fig = figure if figure is not None else draw_distance_grid(
        result.distances, fits["mean"], fits["std"], fits["cut"], selected, result.measure)
    for k, ax in enumerate(fig.axes[:len(selected)]):
        ax.set_title(f"{selected.tags[k]} ({fits['folded'][k]})", fontsize=9)
    return fig


def plot_distance_grid(result: EmbedResult, selected: SelectedTags, path: str | Path, figure=None) -> Path:
    """One panel per selected tag: histogram of all tags' distances, the fitted normal, the cut."""
    import matplotlib.pyplot as plt

    from tagfold.pipeline.io import atomic_path

    fig = distance_grid_figure(result, selected, figure)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=GRID_DPI)
    plt.close(fig)
    return path


def report_fields(report: "EmbedReport") -> dict:
    """The report as stored with the outputs: results only. How many texts the encoder had to
    encode depends on what the vector cache already held, not on the input, so it is left out
    and a warm and a cold run write the same files."""
    fields = asdict(report)
    fields.pop("encoded")
    return fields


def write_outputs(result: EmbedResult, selected: SelectedTags, out_dir: str | Path, config: EmbedConfig,
                  plot: bool = True) -> list[Path]:
    from tagfold.pipeline.io import write_parquet

    out_dir = Path(out_dir)
    meta = {"embed": asdict(config), "report": report_fields(result.report)}
    paths = [write_parquet(result.table, out_dir / "stage3.parquet", meta),
             write_parquet(result.fits, out_dir / "fits.parquet", meta)]
    if plot:
        paths.append(plot_distance_grid(result, selected, out_dir / "stage3_distances.png"))
    return paths


def main(argv: list[str]) -> int:
    from tagfold.pipeline.io import continue_run, output_lock, read_input_table
    from tagfold.pipeline.options import parser
    from tagfold.pipeline.tags.ids import to_ingest_ids, to_positions
    from tagfold.pipeline.tags.options import add_selected, add_stage3

    p = parser("tagfold embed", __doc__.splitlines()[0])
    p.add_argument("--tags", required=True, type=Path, help="tags.parquet (tag_id, tag)")
    p.add_argument("--stage2", required=True, type=Path, help="stage2.parquet from `tagfold collapse`")
    p.add_argument("--out", required=True, type=Path, help="output folder (stage3.parquet, fits.parquet, PNG)")
    add_stage3(p)
    p.add_argument("--track-tags", type=Path, help="track_tags.parquet, for --vectors word2vec")
    p.add_argument("--allow-partial", action="store_true",
                   help="also fold tags with tokens the vectors do not know (lower precision)")
    add_selected(p)
    args = p.parse_args(argv)
    config = EmbedConfig(args.percentile, args.pooling, not args.allow_partial, args.vectors, args.cut,
                         args.threshold)
    tags_table = read_input_table(args.tags, columns=["tag_id", "tag"])
    stage2 = read_input_table(args.stage2, columns=["tag_id", "target"])
    # Stage II stores ingest tag_ids; embed works on positions in tags.parquet.
    tag_ids = tags_table.column("tag_id").combine_chunks()
    stage2_pos = to_positions(stage2, tag_ids, source=str(args.stage2))
    from tagfold.pipeline.tags.vectors import load_vectors

    track_tags = read_input_table(args.track_tags) if args.track_tags else None
    selected = load_selected(args.selected)
    with output_lock(args.out):
        continue_run(args.out, [args.tags, args.stage2])   # its outputs belong to its input's run (never a mix)
        t0 = time.perf_counter()
        kv = load_vectors(config.vectors, track_tags=track_tags, tags=tags_table)
        tags = tags_table.column("tag").to_pylist()
        # The vector cache lives in the output folder (kept out of the saved config).
        pre = embed_distances(tags, selected, kv, replace(config, cache_dir=str(args.out / "vector_cache")))
        result = embed_collapse(tags, stage2_pos, selected, kv, config, pre)
        result.table = to_ingest_ids(result.table, tag_ids)
        paths = write_outputs(result, selected, args.out, config)
    print(result.report)
    print(f"Stage III in {time.perf_counter() - t0:.2f} s -> {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
