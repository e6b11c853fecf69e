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
- skip  `bad_track_id`  track id outside the manifest's rule (it names output files: `/abs`, `../x`,
                        `sub/dir`, newlines); every output path is also checked to resolve inside --out
- skip  `symlink_loop`  the path is (or passes through) a symbolic link loop
- skip  `missing_file`, `dangling_link`  path does not exist (or is a link to nothing)
- skip  `not_regular_file`  a FIFO, directory, device or socket (reading a FIFO would block forever)
- skip  `unreadable`    permission denied or another OS error
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

import contextlib
import dataclasses
import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tagfold.pipeline.constants import CROP_SAMPLES, SAMPLE_RATE
from tagfold.pipeline.decode import Rejected, decode_mono_16k
from tagfold.pipeline.io import (atomic_path, worker_pool, folder_run_id, output_lock, read_config, start_run,
                                 write_parquet)
from tagfold.pipeline.errors import UserError

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
    crop_samples: int = CROP_SAMPLES
    root: str = ""               # data root for relative manifest paths ("" = from the manifest's config)
    max_seconds: float = 1200.0
    allow_outside_root: bool = False


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
            if isinstance(full, Rejected):
                raise full
            x, _, flags = decode_mono_16k(full, cfg.max_seconds)
        except Rejected as r:
            rej.append((tid, shown, str(r)))
            continue
        if len(x) < cfg.crop_samples:
            flags.append("short")
        if cfg.format in ("flac", "both"):
            import soundfile as sf
            dest = _inside(out, out / "flac" / f"{tid}.flac")
            if not dest.exists():
                with atomic_path(dest) as tmp:
                    sf.write(str(tmp), np.clip(x, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        waves.append(x)
        idx.append((tid, g, offset, len(x), SAMPLE_RATE, ",".join(flags) or None))
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
        raise UserError(f"{out} holds prep parts made with other settings ({'; '.join(diff)}); "
                         "use another --out or the same settings")


def _rows(cfg: PrepConfig) -> list[tuple[str, str, Path | Rejected]]:
    """(track_id, manifest path, absolute path or the Rejected reason) per manifest row."""
    from tagfold.pipeline.audio.manifest import BadTrack, OutsideRoot, check_track_id, resolve_track_path
    from tagfold.pipeline.io import read_input_table
    manifest = read_input_table(cfg.manifest, columns=["track_id", "path"])   # one line if missing or foreign
    # a relative root (the demo's ".") is relative to the manifest's folder, so the data can move
    root = Path(cfg.manifest).resolve().parent / (cfg.root or read_config(cfg.manifest).get("root") or ".")
    ids, paths = manifest.column("track_id").to_pylist(), manifest.column("path").to_pylist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"{cfg.manifest}: duplicate track_id values")
    rows = []
    for t, p in zip(ids, paths):
        # rejected in its group like any unreadable input, with the reason: a manifest made by hand
        # (not by `tagfold manifest`) may hold ids that would name files outside --out
        try:
            rows.append((t, p, resolve_track_path(root, p, check_track_id(t), cfg.allow_outside_root)))
        except OutsideRoot as e:
            rows.append((t, p, Rejected(f"outside_root: {e}")))
        except BadTrack as e:
            code = "symlink_loop" if "symlink_loop" in str(e) else "bad_track_id"
            rows.append((t, p, Rejected(f"{code}: {e}")))
    return rows


def _inside(out: Path, path: Path) -> Path:
    """`path` if it resolves inside `out` (checked before anything is written there)."""
    full = path.resolve()
    if not full.is_relative_to(out.resolve()):
        raise UserError(f"refusing to write {path}: it resolves to {full}, outside --out {out}")
    return path


def prep_audio(cfg: PrepConfig, progress: bool = True) -> dict:
    """Run (or resume) prep for this job's groups; returns counts over the whole --out."""
    from tqdm import tqdm
    if not (0 <= cfg.shard_k < cfg.shard_n):
        raise UserError(f"--shard K/N needs 0 <= K < N, got {cfg.shard_k}/{cfg.shard_n}")
    if cfg.format not in ("npy", "flac", "both") or cfg.tracks_per_shard < 1:
        raise UserError(f"format must be npy|flac|both and tracks_per_shard >= 1, got {cfg.format}, "
                         f"{cfg.tracks_per_shard}")
    out = Path(cfg.out)
    rows = _rows(cfg)
    n = cfg.tracks_per_shard
    n_groups = math.ceil(len(rows) / n)
    lock_name = ".tagfold.lock" if cfg.shard_n == 1 else f".tagfold-shard-{cfg.shard_k}-of-{cfg.shard_n}.lock"
    with output_lock(out, lock_name):
        for sub in ("parts", "flac"):   # a planted symlink must not send writes elsewhere
            _inside(out, out / sub)
        _check_layout(out, cfg)
        if folder_run_id(out) is None or not any((out / "parts").glob("shard-*.index.parquet")):
            # nothing to resume: a new run id, so an earlier index.parquet here is stale at once;
            # a resumed (or another array job's) run keeps the id its finished parts belong to
            start_run(out)
        todo = [(cfg, g, rows[g * n:(g + 1) * n]) for g in range(n_groups)
                if g % cfg.shard_n == cfg.shard_k and not _done_marker(out, g).exists()]
        mine = {f"shard-{g:05d}{ext}" for _, g, _ in todo for ext in (".npy", ".index.parquet", ".rejects.parquet")}
        _remove_stale_temps(out, mine | {f"{t}.flac" for job in todo for t, _, _ in job[2]})
        kept = rejected = 0
        bar = tqdm(total=sum(len(t[2]) for t in todo), desc="prep-audio", unit="track", file=sys.stderr,
                   disable=not progress)
        if cfg.workers > 1 and len(todo) > 1:
            with worker_pool(min(cfg.workers, len(todo))) as pool:
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
    from tagfold.pipeline.options import COUNT, POSITIVE, parser

    d = PrepConfig(manifest="", out="")
    ap = parser("tagfold prep-audio", __doc__)
    ap.add_argument("--manifest", required=True, help="manifest.parquet from `tagfold manifest` or demo-data")
    ap.add_argument("--out", required=True, help="output folder (shards, FLAC, index.parquet, rejects.parquet)")
    ap.add_argument("--format", choices=["npy", "flac", "both"], default=d.format,
                    help="npy: float memmap shards (torch loader); flac: one FLAC per track (DALI); both")
    ap.add_argument("--dtype", choices=["float16", "float32"], default=d.dtype, help="sample type of the npy shards")
    ap.add_argument("--workers", type=COUNT, default=d.workers, help="decoding processes")
    ap.add_argument("--shard", default="0/1", help="K/N: this array job's part of the work (0 <= K < N)")
    ap.add_argument("--tracks-per-shard", type=COUNT, default=d.tracks_per_shard, help="tracks per npy shard")
    ap.add_argument("--crop-samples", type=COUNT, default=d.crop_samples, help="shorter clips are flagged 'short'")
    ap.add_argument("--max-seconds", type=POSITIVE, default=d.max_seconds,
                    help="longer files are rejected as too_long, from their header")
    ap.add_argument("--root", default="", help="data root for relative paths (default: from the manifest)")
    ap.add_argument("--allow-outside-root", action="store_true", help="permit paths outside the data root")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    try:
        k, n = (int(v) for v in a.shard.split("/"))
    except ValueError:
        ap.error(f"--shard must be K/N with integers, got {a.shard!r}")
    cfg = PrepConfig(a.manifest, a.out, a.format, a.dtype, a.workers, k, n, a.tracks_per_shard,
                     a.crop_samples, a.root, a.max_seconds, a.allow_outside_root)
    print(f"prep-audio: {cfg.manifest} -> {cfg.out} ({cfg.format}, {cfg.dtype}, "
          f"{cfg.workers} worker{'s' if cfg.workers != 1 else ''}, "
          f"shard {k}/{n})", file=sys.stderr)
    s = prep_audio(cfg, progress=not a.quiet)
    print(f"prep-audio: this run kept {s['this_run_kept']} + rejected {s['this_run_rejected']}; "
          f"{a.out} now holds {s['groups_done']} of {s['groups_total']} groups")
    reasons = ", ".join(f"{reason} {count}" for reason, count in s["reasons"].items())
    print(f"prep-audio: read {s['read']} = kept {s['kept']} + rejected {s['rejected']}"
          + (f" ({reasons})" if reasons else ""))
    return 0
