"""The embedded demo dataset: deterministic synthetic music whose sound depends on latent tags drawn
from the selected tags, plus noisy Last.fm-style user tags derived from them.

Latent tags per clip: 1 genre (+ its parent where one is implied, e.g. 'indie rock' -> 'rock', 'indie'),
1-2 emotions, 0-2 descriptive tags, 1 decade. Each tag moves a parameter vector; the audio is
synthesised from it:
- genre   -> tempo, harmonic richness (timbre), distortion, drum density (rhythm)
- emotion -> mode (major/minor third), brightness (harmonic roll-off), dynamics (tremolo depth), from
             each emotion's valence/arousal (VALENCE_AROUSAL): 'sad' is minor and slow, 'energetic' fast
- decade  -> band limits (60s: 250-3.5 kHz ... 2000s: full band) and noise colour/level (hiss)
- descriptive -> small offsets (acoustic: no distortion; party: denser drums; ...)
Raw tags: each latent tag is typed exactly, as a Last.fm-style variant (typo, join, decade form,
phrase, ...) or, at tagnoise.MEANING_RATE (10%), as a word that names it by meaning only
('cheerful' for happy, 'ledsen' for sad; pipeline/data/demo/meaning_words.tsv), so Stage III has
work: spelling rules cannot reach those.
Every tag's offsets come from a seeded hash of the tag, so any tag list works, and the same seed
always gives the same files. Outputs in --out: audio/<id>.flac (16 kHz), manifest.parquet,
tags.csv (track_id,tags with ';'-joined raw user tags, what `tagfold ingest --format csv` reads),
latent.parquet (track_id, then one uint8 column per selected tag: the common ground truth).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from tagfold.pipeline.constants import SAMPLE_RATE
from tagfold.pipeline.io import atomic_path, worker_pool, write_parquet, write_text

PARAMS = ("tempo", "harmonics", "drive", "drums", "minor", "rolloff", "tremolo", "hiss", "brown")
# Parents implied by compound genres, so latent labels stay consistent with how people tag.
PARENTS = {"alternative rock": ("rock", "alternative"), "indie rock": ("indie", "rock"),
           "classic rock": ("rock",), "electronica": ("electronic",)}
DECADE_BAND = {"60s": (250.0, 3500.0), "70s": (120.0, 5500.0), "80s": (60.0, 7000.0),
               "90s": (40.0, 7800.0), "2000s": (20.0, 8000.0)}
DECADE_HISS = {"60s": (0.05, 2.0), "70s": (0.03, 1.5), "80s": (0.015, 1.0), "90s": (0.006, 0.5), "2000s": (0.0, 0.0)}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    out: str
    n: int = 1000
    seconds: float = 10.0
    seed: int = 0
    workers: int = 2
    ratios: tuple = (0.8, 0.1, 0.1)


# (valence, arousal) of the thesis's emotion tags, so the sound follows the word: valence sets the
# mode (minor below 0), arousal tempo, brightness and dynamics. Tags not listed get hashed offsets.
VALENCE_AROUSAL = {
    "mellow": (0.3, -0.6), "sexy": (0.4, 0.1), "loved": (0.7, 0.0), "sad": (-0.8, -0.4), "happy": (0.9, 0.5),
    "good": (0.5, 0.1), "romantic": (0.6, -0.3), "melancholic": (-0.7, -0.5), "great": (0.6, 0.3),
    "dark": (-0.7, 0.2), "dreamy": (0.2, -0.6), "hot": (0.4, 0.6), "energetic": (0.4, 0.9),
    "calm": (0.3, -0.9), "funny": (0.8, 0.6), "haunting": (-0.6, -0.2), "intense": (-0.2, 0.9),
    "alternative": (-0.1, 0.4),
}


def _tag_offsets(tag: str, category: str) -> np.ndarray:
    """Parameter offsets of one tag: seeded by the tag's name; scale depends on the category."""
    rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "big"))
    v = rng.standard_normal(len(PARAMS))
    scale = {"genre": [40, 4, 1.5, 0.4, 0, 0, 0, 0, 0], "emotion": [10, 1, 0.3, 0.1, 1.0, 0.8, 0.3, 0, 0],
             "descriptive": [5, 0.5, 0.3, 0.15, 0, 0.2, 0.1, 0, 0], "number": [0] * 9}[category]
    offsets = v * np.asarray(scale, float)
    if category == "emotion" and tag in VALENCE_AROUSAL:
        val, aro = VALENCE_AROUSAL[tag]
        # PARAMS: tempo, harmonics, drive, drums, minor, rolloff, tremolo, hiss, brown
        offsets = 0.3 * offsets + np.array([20 * aro, 0, 0.3 * max(aro, 0), 0.1 * aro, -2.0 * val,
                                            -0.4 * aro, 0.4 * max(-aro, 0), 0, 0])
    return offsets


def clip_params(latent: list[str], categories: dict[str, str]) -> dict[str, float]:
    """The synthesis parameters of a clip: a base sound moved by each latent tag's offsets."""
    p = dict(zip(PARAMS, np.array([100, 4, 1, 0.5, 0, 1.5, 0.2, 0, 0], float)
                 + sum(_tag_offsets(t, categories[t]) for t in latent)))
    if "acoustic" in latent:
        p["drive"] = 0.0   # acoustic: clean harmonic timbre, no synthetic saturation
    return {k: float(v) for k, v in p.items()}


def draw_latent(rng, tags, categories) -> list[str]:
    by = {c: [t for t, k in zip(tags, categories) if k == c] for c in set(categories)}
    out = [rng.choice(by["genre"])] if by.get("genre") else []
    for g in list(out):
        out += [p for p in PARENTS.get(g, ()) if p in tags]
    if by.get("emotion"):
        out += list(rng.choice(by["emotion"], size=int(rng.integers(1, 3)), replace=False))
    if by.get("descriptive"):
        out += list(rng.choice(by["descriptive"], size=int(rng.integers(0, 3)), replace=False))
    if by.get("number"):
        out.append(rng.choice(by["number"]))
    return list(dict.fromkeys(str(t) for t in out))


def synthesize(latent: list[str], categories: dict[str, str], seconds: float, rng) -> np.ndarray:
    """Float32 mono 16 kHz clip for a set of latent tags (vectorised numpy)."""
    p = clip_params(latent, categories)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    beat = 60.0 / float(np.clip(p["tempo"], 50, 200))
    # melody: one scale note per beat over a root; minor third when the emotion says so
    third = 3 if p["minor"] > 0 else 4
    scale = np.array([0, 2, third, 5, 7, 8 if third == 3 else 9, 10 if third == 3 else 11])
    n_beats = int(np.ceil(seconds / beat)) + 1
    notes = 110.0 * 2 ** ((rng.integers(0, 12) + scale[rng.integers(0, 7, n_beats)]) / 12)
    f = notes[np.minimum((t / beat).astype(int), n_beats - 1)]
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    h = int(np.clip(round(p["harmonics"]), 1, 12))
    k = np.arange(1, h + 1)
    amps = k ** -float(np.clip(p["rolloff"], 0.3, 3.0))
    # sum_k a_k sin(k phase) by the recurrence sin((k+1)p) = 2 cos(p) sin(kp) - sin((k-1)p):
    # two transcendental calls per sample instead of h (the demo must generate in under a minute)
    two_cos, s_prev, s_k = 2.0 * np.cos(phase), np.zeros_like(phase), np.sin(phase)
    tone = amps[0] * s_k
    for a in amps[1:]:
        s_prev, s_k = s_k, two_cos * s_k - s_prev
        tone += a * s_k
    tone /= amps.sum()
    tone *= 1 + float(np.clip(p["tremolo"], 0, 0.9)) * np.sin(2 * np.pi * 0.5 * t)
    drive = float(np.clip(p["drive"], 0, 6))
    if drive > 0.1:
        tone = np.tanh(drive * tone) / np.tanh(drive)
    tb = t % beat
    kick = np.exp(-tb * 25) * np.sin(2 * np.pi * 55 * tb)
    sub = beat / (1 + int(np.clip(p["drums"], 0, 1) * 3))
    hat = rng.standard_normal(n) * np.exp(-(t % sub) * 90) * 0.3
    x = 0.6 * tone + float(np.clip(p["drums"], 0, 1)) * (kick + hat)
    decade = next((d for d in latent if d in DECADE_BAND), "2000s")
    level, alpha = DECADE_HISS[decade]
    X = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    lo, hi = DECADE_BAND[decade]
    X *= 1 / (1 + (lo / np.maximum(freqs, 1)) ** 4) / (1 + (freqs / hi) ** 8)  # smooth band edges
    x = np.fft.irfft(X, n)
    if level > 0:  # coloured hiss: power ~ 1/f^alpha, level relative to the signal's RMS
        noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.maximum(freqs, 20) ** (alpha / 2), n)
        x += noise * (level * 10 * np.std(x) / (np.std(noise) + 1e-12))
    return (0.8 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def _make_clip(args):
    i, cfg, tags, categories = args
    import soundfile as sf
    from tagfold.pipeline.tags import tagnoise
    rng = np.random.default_rng((cfg.seed, i))
    latent = draw_latent(rng, tags, categories)
    x = synthesize(latent, dict(zip(tags, categories)), cfg.seconds, rng)
    tid = f"demo-{i:06d}"
    dest = Path(cfg.out) / "audio" / f"{tid}.flac"
    with atomic_path(dest) as tmp:
        sf.write(str(tmp), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    raw = tagnoise.noisy_user_tags(latent, np.random.default_rng((cfg.seed, i, 1)),
                                   p_meaning=tagnoise.MEANING_RATE, n_unrelated=tagnoise.UNRELATED_PER_TRACK)
    return tid, latent, list(raw), len(x)


def latent_table(track_ids, latents, tags) -> pa.Table:
    """track_id, then one uint8 column per selected tag (selected order): the common ground truth."""
    col = {t: j for j, t in enumerate(tags)}
    y = np.zeros((len(track_ids), len(tags)), np.uint8)
    for i, lat in enumerate(latents):
        y[i, [col[t] for t in lat]] = 1
    return pa.table({"track_id": pa.array(track_ids, pa.string()),
                     **{t: pa.array(y[:, j], pa.uint8()) for j, t in enumerate(tags)}})


def generate(cfg: DemoConfig, tags=None, categories=None, progress=True) -> dict:
    from tqdm import tqdm

    from tagfold.pipeline.audio.manifest import ManifestConfig, SCHEMA
    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.audio.splits import assign_splits
    if tags is None:
        sel = load_selected()
        tags, categories = list(sel.tags), list(sel.categories)
    jobs = [(i, cfg, tags, categories) for i in range(cfg.n)]
    if cfg.workers > 1:
        with worker_pool(cfg.workers, "fork") as pool:
            rows = list(tqdm(pool.imap(_make_clip, jobs, chunksize=8), total=cfg.n, desc="demo-data",
                             file=sys.stderr, disable=not progress))
    else:
        rows = [_make_clip(j) for j in tqdm(jobs, desc="demo-data", file=sys.stderr, disable=not progress)]
    out = Path(cfg.out)
    ids = [r[0] for r in rows]
    # a synthetic "artist" per 5 clips keeps the artist-aware split meaningful in the demo; 'rank'
    # splits because the set is fixed and small demos (tests use 24 clips) still need valid and test
    artists = [f"demo-artist-{i // 5:05d}" for i in range(cfg.n)]
    manifest = pa.table({
        "track_id": ids, "path": [f"audio/{t}.flac" for t in ids], "duration": [r[3] / SAMPLE_RATE for r in rows],
        "sample_rate": [SAMPLE_RATE] * cfg.n, "channels": [1] * cfg.n, "artist": artists,
        "split": list(assign_splits(ids, artists, cfg.ratios, cfg.seed, method="rank"))}, schema=SCHEMA)
    write_parquet(latent_table(ids, [r[1] for r in rows], tags), out / "latent.parquet",
                  {**dataclasses.asdict(cfg), "selected_tags": list(tags), "categories": list(categories)})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["track_id", "tags"])
    for tid, _, raw, _ in rows:
        w.writerow([tid, ";".join(raw)])
    write_text(buf.getvalue(), out / "tags.csv")
    # last: `tagfold train` takes an existing manifest as "demo-data finished"; a killed run redoes it
    write_parquet(manifest, out / "manifest.parquet", ManifestConfig("demo", ".", cfg.ratios, cfg.seed, artist_aware=True, split_method="rank"))
    return {"clips": cfg.n, "raw_tags": sum(len(r[2]) for r in rows)}


def main(argv: list[str]) -> int:
    from tagfold.pipeline.options import COUNT, POSITIVE, SEED, parser

    d = DemoConfig(out="")
    ap = parser("tagfold demo-data", __doc__)
    ap.add_argument("--out", required=True, help="output folder (audio/, tags.csv, latent.parquet, manifest.parquet)")
    ap.add_argument("--n", type=COUNT, default=d.n, help="number of clips")
    ap.add_argument("--seconds", type=POSITIVE, default=d.seconds, help="length of each clip in seconds")
    ap.add_argument("--seed", type=SEED, default=d.seed, help="random seed (same seed, same dataset)")
    ap.add_argument("--workers", type=COUNT, default=d.workers, help="processes writing clips")
    a = ap.parse_args(argv)
    cfg = DemoConfig(a.out, a.n, a.seconds, a.seed, a.workers)
    print(f"demo-data: {cfg.n} clips of {cfg.seconds:g} s, seed {cfg.seed}, "
          f"{cfg.workers} worker{'s' if cfg.workers != 1 else ''} -> {cfg.out}", file=sys.stderr)
    from tagfold.pipeline.io import output_lock
    with output_lock(a.out):
        s = generate(cfg)
    print(f"demo-data: {s['clips']} clips, {s['raw_tags']} raw user tags -> {a.out}")
    return 0
