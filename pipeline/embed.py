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
    indptr = np.zeros(len(tags) + 1, dtype=np.int64)
    ids: list[int] = []
    n_tokens = np.zeros(len(tags), dtype=np.int32)
    n_oov = np.zeros(len(tags), dtype=np.int32)
    oov: set[str] = set()
    get = key_to_index.get
    for i, tag in enumerate(tags):
        whole = get(tag)
        if whole is not None:
            ids.append(whole)
            n_tokens[i] = 1
        else:
            for tok in TOKEN.findall(tag.lower()):
                j = get(tok)
                if j is None and ("-" in tok or "'" in tok):
                    parts = re.split(r"['-]", tok)
                    js = [get(p) for p in parts]
                    n_tokens[i] += len(parts)
                    for p, jp in zip(parts, js):
                        if jp is None:
                            n_oov[i] += 1
                            oov.add(p)
                        else:
                            ids.append(jp)
                    continue
                n_tokens[i] += 1
                if j is None:
                    n_oov[i] += 1
                    oov.add(tok)
                else:
                    ids.append(j)
        indptr[i + 1] = len(ids)
    return indptr, np.asarray(ids, dtype=np.int64), n_tokens, n_oov, oov


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


def fit_cuts(distances: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean, std (ddof=0, scipy.stats.norm.fit's MLE) and norm.ppf(percentile, mean, std)."""
    from scipy.stats import norm

    d = distances.astype(np.float64, copy=False)
    mean = d.mean(axis=0)
    std = d.std(axis=0)
    return mean, std, norm.ppf(percentile, loc=mean, scale=std)


@dataclass
class EmbedResult:
    table: pa.Table          # STAGE3_SCHEMA
    fits: pa.Table           # FITS_SCHEMA
    report: EmbedReport
    distances: np.ndarray    # [tags with a vector, targets], for the histogram plot
    has_vector: np.ndarray


def embed_collapse(tags: Sequence[str], stage2: pa.Table, selected: SelectedTags | None = None, kv=None,
                   config: EmbedConfig = EmbedConfig()) -> EmbedResult:
    """Stage III rows for `tags` (tag_id = position), given Stage II rows keyed by the same tag_id."""
    from tagfold.native.l2 import l2_distances, nearest_under_cut
    from tagfold.pipeline.vectors import load_vectors

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

    stage2_ids = np.asarray(stage2.column("tag_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    mapped = np.zeros(len(tags), dtype=bool)
    mapped[stage2_ids] = True
    eligible = (nearest >= 0) & ~mapped[rows]
    if config.require_all_known:
        eligible &= all_known[rows]
    emb_ids = rows[eligible]
    emb_targets = nearest[eligible].astype(np.int32)
    emb_dist = nearest_d[eligible]

    # Stage II rows carry their distance to the target too, where the tag has a vector.
    row_of = np.full(len(tags), -1, dtype=np.int64)
    row_of[rows] = np.arange(len(rows))
    target_index = {t: i for i, t in enumerate(selected.tags)}
    s2_targets = np.array([target_index[t] for t in stage2.column("target").to_pylist()], dtype=np.int32)
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
        "tag": pa.array(tags, pa.string()).take(pa.array(ids)),
        "target": pa.DictionaryArray.from_arrays(pa.array(targets, pa.int32()), pa.array(selected.tags, pa.string())),
        "source": pa.DictionaryArray.from_arrays(pa.array(source, pa.int8()), pa.array(SOURCES, pa.string())),
        "distance": pa.array(dist, pa.float32(), from_pandas=True),
        "cut": pa.array(cuts[targets].astype(np.float32), pa.float32()),
    }, schema=STAGE3_SCHEMA)
    folded = np.bincount(emb_targets, minlength=len(selected))
    fits = pa.table({"target": list(selected.tags), "mean": mean, "std": std, "cut": cuts,
                     "n": np.full(len(selected), len(rows), dtype=np.int64), "folded": folded.astype(np.int64)},
                    schema=FITS_SCHEMA)
    report = EmbedReport(tags=len(tags), with_vector=int(has_vector.sum()), all_tokens_known=int(all_known.sum()),
                         folded_by_embedding=int(len(emb_ids)), **stats)
    return EmbedResult(table, fits, report, D, has_vector)


def plot_distance_grid(result: EmbedResult, selected: SelectedTags, path: str | Path) -> Path:
    """One panel per selected tag: histogram of all tags' distances, the fitted normal, the cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from tagfold.pipeline.io import atomic_path

    n = len(selected)
    cols = 10 if n > 20 else 5
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.2 * cols, 1.8 * nrows), squeeze=False)
    fits = result.fits.to_pydict()
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        d = result.distances[:, k]
        counts, edges = np.histogram(d, bins=60)
        width = edges[1] - edges[0]
        ax.bar(edges[:-1], counts, width=width, align="edge", color="#9ab", linewidth=0)
        x = np.linspace(edges[0], edges[-1], 200)
        ax.plot(x, norm.pdf(x, fits["mean"][k], fits["std"][k]) * len(d) * width, color="#c33", lw=1)
        ax.axvline(fits["cut"][k], color="k", lw=1, ls="--")
        ax.set_title(f"{selected.tags[k]} ({fits['folded'][k]})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    fig.suptitle("Stage III: L2 distance of every tag to each selected tag; red: normal fit; dashed: cut "
                 "(in brackets: tags folded by embedding)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
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
    from tagfold.pipeline.vectors import load_vectors

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
