"""One-time audio prep: decode (soundfile), downmix to mono, resample to 16 kHz (soxr HQ, anti-aliased),
write float16/float32 memmap shards (`shard-NNNNN.npy` + `index.parquet`: track_id, shard, offset,
length, sample_rate, flag) and/or FLAC files (`flac/<track_id>.flac`, what DALI reads since it cannot
decode MP3).

    tagfold prep-audio --manifest M --out DIR [--format npy|flac|both] [--workers N] [--shard K/N]

Work unit = a group of `--tracks-per-shard` consecutive manifest rows -> one shard. A group is done when
its `parts/shard-NNNNN.index.parquet` exists; that file is renamed into place last, after the shard, the
FLAC files and the group's rejects, so a killed run redoes only unfinished groups and never trusts a
half file (every write is temp + rename). `--shard K/N` takes groups g with g % N == K, so the jobs of an
array job write disjoint shards/parts and may share one --out; each holds its own lock, and every run
merges all finished parts into `index.parquet` and `rejects.parquet` (serialised by a merge lock, so the
last job to finish writes the complete index). Re-running with a different manifest, group size, dtype or
format on the same --out is refused (its parts would not line up).

Rules for hostile input (read = kept + rejected; every reject is a row of rejects.parquet with a reason):
- skip  `outside_root`  path resolves (through `..`, absolute or a symlink) outside the data root,
                        unless --allow-outside-root
- skip  `missing_file`  path does not exist
- skip  `empty_file`    zero-byte file
- skip  `decode_error`  soundfile cannot open/decode it (text named .mp3, random bytes, cut header, ...)
- skip  `too_long`      header says longer than --max-seconds (default 1200 s); refused before decoding,
                        because decoding a multi-hour file would need gigabytes
- skip  `no_audio`      decodes to zero frames
- skip  `non_finite`    NaN/Inf samples (a float WAV from a broken tool; resampling would smear them)
- skip  `silent`        peak |x| < 1e-4 after decoding (no signal to learn from)
- keep  + flag `truncated`: decoding stops early or fails midway (cut MP3: < 99% of the header's
                        length); the part that decoded is kept
- keep  + flag `short`: shorter than --crop-samples; loaders zero-pad it at the end
- keep  + flag `upsampled`: source rate below 16 kHz (no content above its Nyquist)
- keep  any channel count (averaged to mono) and any rate (resampled to 16 kHz)
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tagfold.pipeline.io import OutputLocked, atomic_path, die_with_parent, output_lock, read_config, write_parquet

TARGET_SR = 16000
SILENCE_PEAK = 1e-4
BLOCK_FRAMES = 1 << 18   # decode in blocks: memory ~ mono length, not channels x length
INDEX_SCHEMA = pa.schema([("track_id", pa.string()), ("shard", pa.int32()), ("offset", pa.int64()),
                          ("length", pa.int64()), ("sample_rate", pa.int32()), ("flag", pa.string())])
REJECT_SCHEMA = pa.schema([("track_id", pa.string()), ("path", pa.string()), ("reason", pa.string())])
# config fields that must match between runs sharing one --out (workers and --shard may differ)
LAYOUT_FIELDS = ("manifest", "format", "dtype", "tracks_per_shard", "crop_samples", "max_seconds")


@dataclasses.dataclass(frozen=True)
class PrepConfig:
    manifest: str
    out: str
    format: str = "npy"          # npy | flac | both
    dtype: str = "float16"       # float16 halves disk; rel. error <= 2^-11, far below MP3 coding noise
    workers: int = 1
    shard_k: int = 0
    shard_n: int = 1
    tracks_per_shard: int = 64
    crop_samples: int = 59049
    root: str = ""               # data root for relative manifest paths ("" = from the manifest's config)
    max_seconds: float = 1200.0
    allow_outside_root: bool = False


class Rejected(Exception):
    """An input file that prep skips; str(e) is the reason written to rejects.parquet."""


def decode_mono_16k(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int, list[str]]:
    """(float32 mono 16 kHz waveform, original rate, flags); raises Rejected(reason)."""
    import soundfile as sf
    import soxr
    path = Path(path)
    if not path.exists():
        raise Rejected("missing_file")
    if path.stat().st_size == 0:
        raise Rejected("empty_file")
    flags = []
    try:
        info = sf.info(str(path))
        if max_seconds is not None and info.frames > max_seconds * info.samplerate:
            raise Rejected(f"too_long: {info.frames / info.samplerate:.0f} s > --max-seconds {max_seconds:g}")
        sr, blocks = int(info.samplerate), []
        # read until the decoder stops (not sf.blocks: it trusts the header's frame count, which a cut
        # MP3 overstates, and hands back stale buffer contents past the real end)
        with sf.SoundFile(str(path)) as f:
            try:
                while True:
                    b = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                    if len(b) == 0:
                        break
                    blocks.append(b.mean(axis=1))
            except Exception:  # a decoder error midway: keep what decoded (none decoded: reject below)
                if not blocks:
                    raise
                flags.append("truncated")
        decoded = sum(len(b) for b in blocks)
        if blocks and "truncated" not in flags and decoded < 0.99 * info.frames:
            flags.append("truncated")  # the header promised more than the data holds
    except Rejected:
        raise
    except Exception as e:  # libsndfile/mpg123 raise assorted errors on garbage
        raise Rejected(f"decode_error: {type(e).__name__}: {str(e)[:120]}") from None
    x = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if x.size == 0:
        raise Rejected("no_audio")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise Rejected(f"non_finite: {bad} non-finite (NaN/Inf) samples")
    if sr != TARGET_SR:
        x = soxr.resample(x, sr, TARGET_SR, quality="HQ").astype(np.float32)
    if x.size == 0 or np.abs(x).max() < SILENCE_PEAK:
        raise Rejected("silent")
    if sr < TARGET_SR:
        flags.append("upsampled")
    return x, sr, flags


def _done_marker(out: Path, g: int) -> Path:
    return out / "parts" / f"shard-{g:05d}.index.parquet"


def _do_group(args) -> tuple[int, int, int]:
    """Prep one group of tracks; returns (group, kept, rejected)."""
    cfg, g, rows = args
    out = Path(cfg.out)
    if _done_marker(out, g).exists():
        return g, 0, 0
    idx, rej, waves, offset = [], [], [], 0
    for tid, shown, full in rows:
        try:
            if isinstance(full, Exception):
                raise Rejected(f"outside_root: {full}")
            x, _, flags = decode_mono_16k(full, cfg.max_seconds)
        except Rejected as r:
            rej.append((tid, shown, str(r)))
            continue
        if len(x) < cfg.crop_samples:
            flags.append("short")
        if cfg.format in ("flac", "both"):
            import soundfile as sf
            dest = out / "flac" / f"{tid}.flac"
            if not dest.exists():
                with atomic_path(dest) as tmp:
                    sf.write(str(tmp), np.clip(x, -1, 1), TARGET_SR, format="FLAC", subtype="PCM_16")
        waves.append(x)
        idx.append((tid, g, offset, len(x), TARGET_SR, ",".join(flags) or None))
        offset += len(x)
    if cfg.format in ("npy", "both"):
        data = np.concatenate(waves).astype(cfg.dtype) if waves else np.zeros(0, cfg.dtype)
        with atomic_path(out / f"shard-{g:05d}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, data)
    parts = out / "parts"
    write_parquet(pa.table(list(zip(*rej)) if rej else [[]] * 3, schema=REJECT_SCHEMA),
                  parts / f"shard-{g:05d}.rejects.parquet", cfg)
    # the done marker last: a group is trusted only once everything above is in place
    write_parquet(pa.table(list(zip(*idx)) if idx else [[]] * 6, schema=INDEX_SCHEMA), _done_marker(out, g), cfg)
    return g, len(idx), len(rej)


@contextlib.contextmanager
def _merge_lock(out: Path):
    """Blocking lock around the merge, so array jobs finishing together never interleave it."""
    import fcntl
    fd = os.open(out / ".tagfold-merge.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def merge_parts(out: Path, cfg) -> tuple[pa.Table, pa.Table, int]:
    """index.parquet / rejects.parquet from every finished group (group order); returns them and
    the number of finished groups."""
    with _merge_lock(out):
        _remove_stale_temps(out, {"index.parquet", "rejects.parquet"})
        done = sorted((out / "parts").glob("shard-*.index.parquet"))
        idx = [pq.read_table(p) for p in done]
        rej = [pq.read_table(p.with_name(p.name.replace(".index.", ".rejects."))) for p in done]
        index = pa.concat_tables(idx).cast(INDEX_SCHEMA) if idx else INDEX_SCHEMA.empty_table()
        rejects = pa.concat_tables(rej).cast(REJECT_SCHEMA) if rej else REJECT_SCHEMA.empty_table()
        write_parquet(index, out / "index.parquet", cfg)
        write_parquet(rejects, out / "rejects.parquet", cfg)
    return index, rejects, len(done)


def _remove_stale_temps(out: Path, names: set[str]) -> int:
    """Delete temp files (atomic_path's `.NAME.RANDOM.tmp`) of outputs in `names`, left by a killed
    run. Only our own outputs: another array job may be writing its temps in the same folder."""
    removed = 0
    for d in (out, out / "parts", out / "flac"):
        for tmp in d.glob(".*.tmp") if d.is_dir() else ():
            if tmp.name[1:].rsplit(".", 2)[0] in names:
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


def _check_layout(out: Path, cfg: PrepConfig) -> None:
    """Refuse to mix parts made with a different layout into this --out."""
    existing = next(iter(sorted((out / "parts").glob("shard-*.index.parquet"))), None)
    if existing is None:
        return
    old, new = read_config(existing), dataclasses.asdict(cfg)
    diff = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in LAYOUT_FIELDS if k in old and old[k] != new[k]]
    if diff:
        raise ValueError(f"{out} holds prep parts made with other settings ({'; '.join(diff)}); "
                         "use another --out or the same settings")


def _rows(cfg: PrepConfig) -> list[tuple[str, str, Path]]:
    """(track_id, manifest path, absolute path or the OutsideRoot error) per manifest row."""
    from tagfold.pipeline.audio.manifest import OutsideRoot, resolve_track_path
    manifest = pq.read_table(cfg.manifest, columns=["track_id", "path"])
    # a relative root (the demo's ".") is relative to the manifest's folder, so the data can move
    root = Path(cfg.manifest).resolve().parent / (cfg.root or read_config(cfg.manifest).get("root") or ".")
    ids, paths = manifest.column("track_id").to_pylist(), manifest.column("path").to_pylist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"{cfg.manifest}: duplicate track_id values")
    rows = []
    for t, p in zip(ids, paths):
        try:
            rows.append((t, p, resolve_track_path(root, p, t, cfg.allow_outside_root)))
        except OutsideRoot as e:   # rejected in its group like any unreadable input, with the reason
            rows.append((t, p, e))
    return rows


def prep_audio(cfg: PrepConfig, progress: bool = True) -> dict:
    """Run (or resume) prep for this job's groups; returns counts over the whole --out."""
    from tqdm import tqdm
    if not (0 <= cfg.shard_k < cfg.shard_n):
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {cfg.shard_k}/{cfg.shard_n}")
    if cfg.format not in ("npy", "flac", "both") or cfg.tracks_per_shard < 1:
        raise ValueError(f"format must be npy|flac|both and tracks_per_shard >= 1, got {cfg.format}, "
                         f"{cfg.tracks_per_shard}")
    out = Path(cfg.out)
    rows = _rows(cfg)
    n = cfg.tracks_per_shard
    n_groups = math.ceil(len(rows) / n)
    lock_name = ".tagfold.lock" if cfg.shard_n == 1 else f".tagfold-shard-{cfg.shard_k}-of-{cfg.shard_n}.lock"
    with output_lock(out, lock_name):
        _check_layout(out, cfg)
        todo = [(cfg, g, rows[g * n:(g + 1) * n]) for g in range(n_groups)
                if g % cfg.shard_n == cfg.shard_k and not _done_marker(out, g).exists()]
        mine = {f"shard-{g:05d}{ext}" for _, g, _ in todo for ext in (".npy", ".index.parquet", ".rejects.parquet")}
        _remove_stale_temps(out, mine | {f"{t}.flac" for job in todo for t, _, _ in job[2]})
        kept = rejected = 0
        bar = tqdm(total=sum(len(t[2]) for t in todo), desc="prep-audio", unit="track", file=sys.stderr,
                   disable=not progress)
        if cfg.workers > 1 and len(todo) > 1:
            # spawn: a fresh interpreter per worker, no inherited locks or decoder state from the
            # parent; the workers die with it, so a killed run leaves none writing beside a re-run
            with mp.get_context("spawn").Pool(min(cfg.workers, len(todo)), initializer=die_with_parent,
                                              initargs=(os.getpid(),)) as pool:
                for g, k, r in pool.imap_unordered(_do_group, todo):
                    kept, rejected = kept + k, rejected + r
                    bar.update(k + r)
        else:
            for job in todo:
                _, k, r = _do_group(job)
                kept, rejected = kept + k, rejected + r
                bar.update(k + r)
        bar.close()
        index, rejects, done = merge_parts(out, cfg)
    reasons: dict[str, int] = {}
    for r in rejects.column("reason").to_pylist():
        reasons[r.split(":")[0]] = reasons.get(r.split(":")[0], 0) + 1
    return {"read": index.num_rows + rejects.num_rows, "kept": index.num_rows, "rejected": rejects.num_rows,
            "reasons": reasons, "this_run_kept": kept, "this_run_rejected": rejected,
            "groups_done": done, "groups_total": n_groups, "manifest_rows": len(rows)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tagfold prep-audio", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=["npy", "flac", "both"], default="npy")
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    ap.add_argument("--shard", default="0/1", help="K/N: this array job's part of the work (0 <= K < N)")
    ap.add_argument("--tracks-per-shard", type=int, default=64)
    ap.add_argument("--crop-samples", type=int, default=59049, help="shorter clips are flagged 'short'")
    ap.add_argument("--max-seconds", type=float, default=1200.0, help="longer files are rejected as too_long")
    ap.add_argument("--root", default="", help="data root for relative paths (default: from the manifest)")
    ap.add_argument("--allow-outside-root", action="store_true", help="permit paths outside the data root")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    try:
        k, n = (int(v) for v in a.shard.split("/"))
    except ValueError:
        ap.error(f"--shard must be K/N with integers, got {a.shard!r}")
    cfg = PrepConfig(a.manifest, a.out, a.format, a.dtype, max(1, a.workers), k, n, a.tracks_per_shard,
                     a.crop_samples, a.root, a.max_seconds, a.allow_outside_root)
    print(cfg, file=sys.stderr)
    try:
        s = prep_audio(cfg, progress=not a.quiet)
    except (OutputLocked, ValueError, OSError) as e:
        print(f"tagfold prep-audio: {e}", file=sys.stderr)
        return 2
    print(f"prep-audio: this run kept {s['this_run_kept']} + rejected {s['this_run_rejected']}; "
          f"{a.out} now holds {s['groups_done']} of {s['groups_total']} groups")
    print(f"prep-audio: read {s['read']} = kept {s['kept']} + rejected {s['rejected']} {s['reasons']}")
    return 0
