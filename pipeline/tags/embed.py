"""Stage III: word-embedding collapse onto the selected tags (the thesis's word_embedder.py).

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

import argparse
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from tagfold.pipeline.selected import SelectedTags, load_selected

TOKEN = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")

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


@dataclass(frozen=True)
class EmbedConfig:
    percentile: float = 0.001   # the thesis's 0.1% cut
    pooling: str = "mean"       # mean | sqrt (sum / sqrt(n))
    require_all_known: bool = True
    vectors: str = "glove"

    def __post_init__(self):
        if not 0.0 < self.percentile < 0.5:
            raise ValueError(f"percentile must be in (0, 0.5), got {self.percentile}")
        if self.pooling not in ("mean", "sqrt"):
            raise ValueError(f"pooling must be 'mean' or 'sqrt', got {self.pooling!r}")


@dataclass
class EmbedReport:
    tags: int
    with_vector: int
    all_tokens_known: int
    tokens: int
    oov_tokens: int
    unique_oov: int
    folded_by_embedding: int

    def __str__(self) -> str:
        return (f"Stage III: {self.with_vector:,}/{self.tags:,} tags have a vector "
                f"({self.all_tokens_known:,} with every token known); OOV tokens {self.oov_tokens:,}"
                f"/{self.tokens:,} ({self.unique_oov:,} distinct); {self.folded_by_embedding:,} tags folded by embedding")


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


def embed_distances(tags: Sequence[str], selected: SelectedTags | None = None, kv=None,
                    config: EmbedConfig = EmbedConfig()) -> EmbedDistances:
    """Tag vectors, L2 distances to the selected tags, normal fits, cuts and nearest targets."""
    from tagfold.native.l2 import l2_distances, nearest_under_cut
    from tagfold.pipeline.tags.vectors import load_vectors

    selected = selected or load_selected()
    kv = kv if kv is not None else load_vectors(config.vectors)
    tags = list(tags)
    vectors, has_vector, all_known, stats = tag_vectors(tags, kv, config.pooling)
    target_vectors, target_has, _, _ = tag_vectors(list(selected.tags), kv, config.pooling)
    if not target_has.all():
        missing = [t for t, ok in zip(selected.tags, target_has) if not ok]
        raise ValueError(f"the vectors know no word of the selected tag(s) {missing}; Stage III cannot place them")

    rows = np.nonzero(has_vector)[0]
    D = l2_distances(vectors[rows], target_vectors)
    mean, std, cuts = fit_cuts(D, config.percentile)
    nearest, nearest_d = nearest_under_cut(D, cuts)
    return EmbedDistances(len(tags), rows, D, has_vector, all_known, stats, mean, std, cuts, nearest, nearest_d,
                          pa.array(tags, pa.string()))


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
    s2_dist = np.where(s2_rows >= 0, D[np.maximum(s2_rows, 0), s2_targets], np.nan).astype(np.float32)

    ids = np.concatenate([stage2_ids, emb_ids]).astype(np.int32)
    targets = np.concatenate([s2_targets, emb_targets])
    source = np.concatenate([np.zeros(len(stage2_ids), np.int8), np.ones(len(emb_ids), np.int8)])
    dist = np.concatenate([s2_dist, emb_dist])
    order = np.lexsort((targets, ids))
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
                         folded_by_embedding=int(len(emb_ids)), **pre.stats)
    return EmbedResult(table, fits, report, D, pre.has_vector)


def draw_distance_grid(distances: np.ndarray, mean: Sequence[float], std: Sequence[float], cuts: Sequence[float],
                       selected: SelectedTags):
    """The figure of plot_distance_grid before its panel titles get the folded counts (those
    need Stage II), so `tagfold pipeline` can draw and lay it out while Stage II still runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    n = len(selected)
    cols = 10 if n > 20 else 5
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.2 * cols, 1.8 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        d = distances[:, k]
        counts, edges = np.histogram(d, bins=60)
        width = edges[1] - edges[0]
        # One filled step artist per panel: ax.bar made 60 Patch objects per panel (3,000 in
        # all) and took seconds to build and draw; the picture is the same histogram.
        ax.stairs(counts, edges, fill=True, color="#9ab", linewidth=0)
        x = np.linspace(edges[0], edges[-1], 200)
        ax.plot(x, norm.pdf(x, mean[k], std[k]) * len(d) * width, color="#c33", lw=1)
        ax.axvline(cuts[k], color="k", lw=1, ls="--")
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        # The folded count is filled in by plot_distance_grid; laying out with a one-digit
        # placeholder already makes the layout (tight_layout, ~0.3 s) independent of Stage II.
        ax.set_title(f"{selected.tags[k]} (0)", fontsize=8)
    fig.suptitle("Stage III: L2 distance of every tag to each selected tag; red: normal fit; dashed: cut "
                 "(in brackets: tags folded by embedding)", fontsize=9)
    fig.tight_layout()
    return fig


GRID_DPI = 80


def distance_grid_figure(result: EmbedResult, selected: SelectedTags, figure=None):
    """The figure of plot_distance_grid; `figure`: draw_distance_grid's, when already drawn."""
    fits = result.fits.to_pydict()
    fig = figure if figure is not None else draw_distance_grid(
        result.distances, fits["mean"], fits["std"], fits["cut"], selected)
    for k, ax in enumerate(fig.axes[:len(selected)]):
        ax.set_title(f"{selected.tags[k]} ({fits['folded'][k]})", fontsize=8)
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


def write_outputs(result: EmbedResult, selected: SelectedTags, out_dir: str | Path, config: EmbedConfig,
                  plot: bool = True) -> list[Path]:
    from tagfold.pipeline.io import write_parquet

    out_dir = Path(out_dir)
    meta = {"embed": asdict(config), "report": asdict(result.report)}
    paths = [write_parquet(result.table, out_dir / "stage3.parquet", meta),
             write_parquet(result.fits, out_dir / "fits.parquet", meta)]
    if plot:
        paths.append(plot_distance_grid(result, selected, out_dir / "stage3_distances.png"))
    return paths


def main(argv: list[str]) -> int:
    import pyarrow.parquet as pq

    from tagfold.pipeline.io import output_lock

    p = argparse.ArgumentParser(prog="tagfold embed", description=__doc__.splitlines()[0])
    p.add_argument("--tags", required=True, type=Path, help="tags.parquet (tag_id, tag)")
    p.add_argument("--stage2", required=True, type=Path, help="stage2.parquet from `tagfold collapse`")
    p.add_argument("--out", required=True, type=Path, help="output folder (stage3.parquet, fits.parquet, PNG)")
    p.add_argument("--vectors", default="glove", help="glove (default), word2vec (needs --track-tags) or a vectors file")
    p.add_argument("--track-tags", type=Path, help="track_tags.parquet, for --vectors word2vec")
    p.add_argument("--percentile", type=float, default=EmbedConfig.percentile)
    p.add_argument("--pooling", choices=("mean", "sqrt"), default="mean")
    p.add_argument("--allow-partial", action="store_true",
                   help="also fold tags with tokens the vectors do not know (lower precision)")
    p.add_argument("--selected", type=Path, help="CSV 'tag,category' (default: the thesis's 50)")
    args = p.parse_args(argv)
    try:
        config = EmbedConfig(args.percentile, args.pooling, not args.allow_partial, args.vectors)
    except ValueError as e:
        p.error(str(e))
    tags_table = pq.read_table(args.tags, columns=["tag_id", "tag"])
    stage2 = pq.read_table(args.stage2)
    # Stage II stores ingest tag_ids; embed works on positions in tags.parquet.
    position = {tid: i for i, tid in enumerate(tags_table.column("tag_id").to_pylist())}
    stage2_pos = stage2.set_column(0, "tag_id", pa.array([position[t] for t in stage2.column("tag_id").to_pylist()],
                                                         pa.int32()))
    from tagfold.pipeline.tags.vectors import load_vectors

    track_tags = pq.read_table(args.track_tags) if args.track_tags else None
    selected = load_selected(args.selected)
    with output_lock(args.out):
        t0 = time.perf_counter()
        kv = load_vectors(config.vectors, track_tags=track_tags, tags=tags_table)
        result = embed_collapse(tags_table.column("tag").to_pylist(), stage2_pos, selected, kv, config)
        ids = tags_table.column("tag_id").take(result.table.column("tag_id"))
        result.table = result.table.set_column(0, "tag_id", ids.cast(pa.int32()))
        paths = write_outputs(result, selected, args.out, config)
    print(result.report)
    print(f"Stage III in {time.perf_counter() - t0:.2f} s -> {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
