"""A Last.fm SQLite database of the Million Song Dataset's shape and size, generated (seeded).

The MSD's `lastfm_tags.db` has 505,216 tracks, 522,366 tags and 9,117,607 track-tag links in
three tables: `tids(tid)`, `tags(tag)`, `tid_tag(tid, tag, val)` where tid_tag.tid and
tid_tag.tag are rowids into tids and tags, and val (0..100) is Last.fm's tag weight (100 for a
track's top tag). The file itself is not available offline, so `write_msd_database` makes one
with the same schema and counts, for benchmarks and tests at full scale:

- tags: the given list in order (e.g. synth.grow_tags: the real tags, then seeded variants);
- tids: 'TR' + 16 seeded characters of [A-Z0-9], unique, like 'TRAAAAW128F429D538';
- links: every tag is carried by at least one track (in the MSD a tag exists because a track
  carries it); the other links draw tags with Zipf-like popularity, p(rank r) ~ 1 / (r + 10)^1.1,
  ranking tags by list position times U(0, 1)^2 plus a small jitter, so the front of the list
  (the real tags) tends to be popular without the order being exact. Tags per track follow a
  lognormal (median ~10, long tail, at least 1), scaled so the total is exact.
  A track never carries a tag twice (pairs are distinct, as in the MSD);
- val: 100 for each track's first link, the others uniform integers 1..100;
- rows of tid_tag ordered by track, as in the MSD file. No indexes (ingest reads whole tables).

Deterministic for a seed: same arguments, same database bytes' content (row for row).
"""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

MSD_TRACKS = 505_216
MSD_TAGS = 522_366
MSD_LINKS = 9_117_607
ZIPF_EXPONENT = 1.1
ZIPF_OFFSET = 10.0
_ID_CHARS = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)


def track_ids(n: int, rng: np.random.Generator) -> list[str]:
    """n unique MSD-style track ids ('TR' + 16 characters of [A-Z0-9]), in a seeded order."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        codes = _ID_CHARS[rng.integers(len(_ID_CHARS), size=(n - len(ids), 16))]
        for row in codes.view("S16").ravel():
            ids["TR" + row.decode()] = None
    return list(ids)[:n]


def _popularity_ranks(n_tags: int, rng: np.random.Generator) -> np.ndarray:
    """Popularity rank of each tag (0 = most popular): mostly by list position, shuffled locally,
    so early (real) tags tend to be popular without the order being exact."""
    key = np.arange(n_tags) * rng.uniform(0.0, 1.0, n_tags) ** 2 + rng.uniform(0.0, n_tags * 0.01, n_tags)
    ranks = np.empty(n_tags, dtype=np.int64)
    ranks[np.argsort(key, kind="stable")] = np.arange(n_tags)
    return ranks


def links(n_tracks: int, n_tags: int, n_links: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(track index, tag index, val) arrays of n_links distinct pairs, sorted by track."""
    if not n_tags <= n_links <= n_tracks * n_tags:
        raise ValueError(f"n_links={n_links:,} must lie in [n_tags={n_tags:,}, n_tracks * n_tags]")
    if n_tracks > n_links:
        raise ValueError(f"n_tracks={n_tracks:,} exceeds n_links={n_links:,}: every track carries a tag")
    rng = np.random.default_rng(seed)
    ranks = _popularity_ranks(n_tags, rng)
    weight = 1.0 / (ranks + ZIPF_OFFSET) ** ZIPF_EXPONENT
    cdf = np.cumsum(weight)
    cdf /= cdf[-1]
    # tags per track: lognormal, scaled to the exact total
    per_track = np.maximum(1, np.round(rng.lognormal(np.log(10.0), 0.9, n_tracks))).astype(np.int64)
    per_track = np.maximum(1, np.floor(per_track * (n_links / per_track.sum()))).astype(np.int64)
    short = n_links - int(per_track.sum())
    if short > 0:
        np.add.at(per_track, rng.integers(n_tracks, size=short), 1)
    else:
        while short < 0:  # floor of a scale-down cannot overshoot by much; trim the largest
            big = np.argsort(per_track)[short:]
            per_track[big] -= 1
            short = n_links - int(per_track.sum())
    per_track = np.minimum(per_track, n_tags)
    track = np.repeat(np.arange(n_tracks, dtype=np.int64), per_track)
    # Each tag once on a random track, the rest drawn by popularity; redraw repeated pairs.
    tag = np.searchsorted(cdf, rng.random(len(track)))
    first_use = rng.permutation(len(track))[:n_tags]
    tag[first_use] = rng.permutation(n_tags)
    fixed = np.zeros(len(track), dtype=bool)
    fixed[first_use] = True
    for _ in range(50):
        key = track * n_tags + tag
        order = np.lexsort((~fixed, key))  # within a repeated pair the fixed link comes first
        dup = np.zeros(len(key), dtype=bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        if not dup.any():
            break
        tag[dup] = np.searchsorted(cdf, rng.random(int(dup.sum())))
    else:
        raise RuntimeError("could not draw distinct track-tag pairs; lower n_links")
    tag = np.minimum(tag, n_tags - 1)
    val = rng.integers(1, 101, size=len(track)).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(per_track)[:-1]])
    val[starts] = 100.0
    return track, tag, val


def write_msd_database(path: str | Path, tags: Sequence[str], n_tracks: int = MSD_TRACKS,
                       n_links: int = MSD_LINKS, seed: int = 0, progress: bool = True) -> Path:
    """Write the database (see module doc) to `path` atomically; returns the path."""
    from tqdm import tqdm

    from tagfold.pipeline.io import atomic_path

    rng = np.random.default_rng([seed, 1])
    tids = track_ids(n_tracks, rng)
    track, tag, val = links(n_tracks, len(tags), n_links, seed)
    with atomic_path(Path(path)) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                              "CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                              "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);")
            con.executemany("INSERT INTO tids VALUES (?)", ((t,) for t in tids))
            con.executemany("INSERT INTO tags VALUES (?)", ((t,) for t in tags))
            block = 1_000_000
            with tqdm(total=len(track), desc="tid_tag rows", unit="row", file=sys.stderr,
                      disable=not progress) as bar:
                for lo in range(0, len(track), block):
                    hi = lo + block
                    # rowids are 1-based
                    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)",
                                    zip((track[lo:hi] + 1).tolist(), (tag[lo:hi] + 1).tolist(), val[lo:hi].tolist()))
                    bar.update(min(hi, len(track)) - lo)
            con.commit()
        finally:
            con.close()
    return Path(path)
