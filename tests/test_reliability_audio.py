"""Reliability of `tagfold prep-audio` (a subprocess, as a user runs it): SIGKILL midway through
its files at seeded random points, then a re-run, must give the same index, rejects, shards and
FLAC files as an uninterrupted run; hostile audio never stops a run and every file is accounted
for (read = kept + rejected, each reject with its reason); a 10-hour file is refused from its
header without being decoded; two runs of the same shard on one --out refuse.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import hostile

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
N_GOOD = 24


# The child reports its own peak RSS (VmHWM) as it exits: wait4's ru_maxrss would include this
# pytest process's high-water mark, which Linux carries across fork + exec.
RUN_TAGFOLD = """
import atexit, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        kib = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    print('TAGFOLD_PEAK_RSS_KIB', kib, file=sys.stderr, flush=True)
atexit.register(_peak)
sys.argv = ['tagfold', *sys.argv[1:]]
runpy.run_module('tagfold.cli', run_name='__main__', alter_sys=True)
"""


def prep_cmd(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", RUN_TAGFOLD, "prep-audio", "--manifest", str(manifest), "--out", str(out),
            "--format", "both", "--tracks-per-shard", "2", *extra]


def run_measured(args: list[str]) -> tuple[int, str, int]:
    """(return code, stdout + stderr, peak RSS in KiB of the child's main process)."""
    r = subprocess.run(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    peaks = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("TAGFOLD_PEAK_RSS_KIB")]
    return r.returncode, r.stdout, peaks[-1] if peaks else -1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """24 good clips (mixed rates and lengths) and three unreadable ones, with a manifest."""
    root = tmp_path_factory.mktemp("audio_data")
    (root / "audio").mkdir()
    rows = []
    for i in range(N_GOOD):
        sr = (16000, 22050, 44100)[i % 3]
        hostile.wav_ok(root / "audio" / f"c{i:03d}.wav", 0.5 + 0.1 * (i % 5), sr=sr, seed=i)
        rows.append((f"c{i:03d}", f"audio/c{i:03d}.wav"))
    rows.insert(5, ("bad_zero", "audio/" + hostile.zero_bytes(root / "audio", "z.mp3").name))
    rows.insert(11, ("bad_text", "audio/" + hostile.text_as_audio(root / "audio", "t.mp3").name))
    rows.insert(17, ("bad_missing", "audio/not_there.wav"))
    return hostile.manifest(root / "manifest.parquet", root, rows)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "prep"
    rc, err, _ = run_measured(prep_cmd(dataset, out))
    assert rc == 0, err[-3000:]
    return out


def assert_same_prep(a: Path, b: Path) -> None:
    for name in ("index.parquet", "rejects.parquet"):
        assert pq.read_table(a / name).equals(pq.read_table(b / name)), name
    shards_a = sorted(p.name for p in a.glob("shard-*.npy"))
    assert shards_a == sorted(p.name for p in b.glob("shard-*.npy")) and shards_a
    for name in shards_a:
        assert np.array_equal(np.load(a / name), np.load(b / name)), name
    flac_a = sorted(p.name for p in (a / "flac").glob("*.flac"))
    assert flac_a == sorted(p.name for p in (b / "flac").glob("*.flac")) and len(flac_a) == N_GOOD
    for name in flac_a:
        assert (a / "flac" / name).read_bytes() == (b / "flac" / name).read_bytes(), name


def test_reference_accounts_for_every_file(reference):
    index, rejects = pq.read_table(reference / "index.parquet"), pq.read_table(reference / "rejects.parquet")
    assert index.num_rows == N_GOOD and rejects.num_rows == 3
    reasons = dict(zip(rejects.column("track_id").to_pylist(), rejects.column("reason").to_pylist()))
    assert reasons["bad_zero"] == "empty_file" and reasons["bad_missing"] == "missing_file"
    assert reasons["bad_text"].startswith("decode_error")


def _kill_midway(manifest: Path, out: Path, rng: random.Random, n_groups: int, workers: int) -> int:
    """SIGKILL a run once a seeded random number of its groups is finished (plus a random
    fraction of a group's time). Returns the number of finished groups at the kill."""
    parts = out / "parts"

    def done() -> int:
        return len(list(parts.glob("shard-*.index.parquet"))) if parts.is_dir() else 0

    # a seeded point among the groups this run still has to do, so every kill makes progress
    target = rng.randint(done(), max(done(), n_groups - 2))
    proc = subprocess.Popen(prep_cmd(manifest, out, "--workers", str(workers)), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and done() < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return done()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_midway_then_rerun_equals_uninterrupted(dataset, reference, tmp_path, workers):
    """With worker processes too (they die with the run: test_io's die_with_parent test)."""
    n_groups = len(list((reference / "parts").glob("shard-*.index.parquet")))
    rng = random.Random(3)
    out = tmp_path / "prep"
    progress = [_kill_midway(dataset, out, rng, n_groups, workers) for _ in range(4)]
    print("groups finished at each kill:", progress, "of", n_groups)
    assert sum(0 < p < n_groups for p in progress) >= 2, progress
    # every finished group's part files are complete
    for p in (out / "parts").glob("*.parquet"):
        pq.read_table(p)
    rc, err, _ = run_measured(prep_cmd(dataset, out))
    assert rc == 0, err[-3000:]
    assert "read 27 = kept 24 + rejected 3" in err
    leftovers = [p for p in out.rglob("*.tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers[:5]}"
    assert_same_prep(reference, out)


def test_hostile_audio_is_contained(tmp_path):
    files = hostile.hostile_audio_set(tmp_path / "audio")
    rows = [(tid, f"audio/{p.name}") for tid, p in files.items()] + [("missing", "audio/nope.flac")]
    manifest = hostile.manifest(tmp_path / "manifest.parquet", tmp_path, rows)
    out = tmp_path / "prep"
    rc, err, peak_kib = run_measured(prep_cmd(manifest, out, "--tracks-per-shard", "4"))
    assert rc == 0 and "Traceback" not in err, err[-3000:]
    index, rejects = pq.read_table(out / "index.parquet"), pq.read_table(out / "rejects.parquet")
    kept = set(index.column("track_id").to_pylist())
    reasons = dict(zip(rejects.column("track_id").to_pylist(), rejects.column("reason").to_pylist()))
    assert len(kept) + len(reasons) == len(rows) and not kept & set(reasons)     # read = kept + rejected
    assert {"good_a", "good_b", "truncated", "one_sample"} <= kept
    flags = dict(zip(index.column("track_id").to_pylist(), index.column("flag").to_pylist()))
    assert "short" in flags["one_sample"]
    assert reasons["zero"] == "empty_file" and reasons["missing"] == "missing_file"
    for tid in ("random_mp3", "random_wav", "text_mp3"):
        assert reasons[tid].startswith(("decode_error", "no_audio")), (tid, reasons[tid])
    for tid in ("nan", "inf"):
        assert "non-finite" in reasons[tid], reasons[tid]
    # the 10-hour file is refused from its header by the documented max-duration rule ...
    assert reasons["ten_hours"].startswith("too_long"), reasons["ten_hours"]
    # ... without decoding it: 10 h of float32 mono at 16 kHz alone would be 2.3 GB
    print(f"prep over the hostile set: peak RSS {peak_kib / 1024:.0f} MiB")
    assert 0 < peak_kib < 400 * 1024, f"prep peaked at {peak_kib / 1024:.0f} MiB"
    assert f"read {len(rows)} = kept {len(kept)} + rejected {len(reasons)}" in err


def test_max_duration_is_configurable(tmp_path):
    (tmp_path / "audio").mkdir()
    hostile.wav_ok(tmp_path / "audio" / "a.wav", 3.0)
    manifest = hostile.manifest(tmp_path / "m.parquet", tmp_path, [("a", "audio/a.wav")])
    rc, err, _ = run_measured(prep_cmd(manifest, tmp_path / "p", "--max-seconds", "2"))
    assert rc == 0, err[-2000:]
    reasons = pq.read_table(tmp_path / "p" / "rejects.parquet").column("reason").to_pylist()
    assert len(reasons) == 1 and reasons[0].startswith("too_long") and "2" in reasons[0]


def test_second_run_on_same_shard_refuses(dataset, tmp_path):
    from tagfold.pipeline.io import output_lock
    out = tmp_path / "prep"
    rc, err, _ = run_measured(prep_cmd(dataset, out, "--shard", "0/2"))
    assert rc == 0, err[-2000:]
    locks = [p.name for p in out.glob(".tagfold*.lock") if "merge" not in p.name]
    assert len(locks) == 1
    # hold that job's lock as a still-running job would (prep of this tiny set is too quick to
    # catch mid-run reliably); the same shard again must refuse ...
    with output_lock(out, locks[0]):
        rc, err, _ = run_measured(prep_cmd(dataset, out, "--shard", "0/2"))
        assert rc != 0 and "in use by another tagfold run" in err and "Traceback" not in err, err[-2000:]
        # ... while another shard of the same array job shares the folder
        rc, err, _ = run_measured(prep_cmd(dataset, out, "--shard", "1/2"))
        assert rc == 0, err[-2000:]
    assert "read 27 = kept 24 + rejected 3" in err


def test_loader_survives_what_prep_kept_from_hostile_input(tmp_path, capfd):
    """The kept oddities (a 1-sample clip, a truncated one) load as padded crops, in train and
    eval mode; tracks prep rejected are reported by the loader, not silently dropped."""
    import pyarrow as pa
    import torch

    from tagfold.training.loaders import make_loader
    files = hostile.hostile_audio_set(tmp_path / "audio")
    rows = [(tid, f"audio/{p.name}") for tid, p in files.items()]
    manifest = hostile.manifest(tmp_path / "manifest.parquet", tmp_path, rows)
    rc, log, _ = run_measured(prep_cmd(manifest, tmp_path / "prep"))
    assert rc == 0, log[-2000:]
    ids = [r[0] for r in rows]
    labels = pa.table({"track_id": ids, "split": ["train"] * len(ids), "rock": pa.array([1] * len(ids), pa.uint8())})
    kept = set(pq.read_table(tmp_path / "prep" / "index.parquet").column("track_id").to_pylist())
    for train in (True, False):
        loader = make_loader(tmp_path / "prep", labels, "train", input="mel", batch_size=2, crop_samples=8000,
                             train=train, backend="torch", device="cpu", num_workers=0, seed=0)
        seen = []
        for x, y, idx in loader:
            assert torch.isfinite(x).all()
            seen += [ids[i] for i in idx.tolist()]
        assert set(seen) <= kept and (train or set(seen) == kept)
        assert f"{len(ids) - len(kept)} train tracks have no prepped audio" in capfd.readouterr().err
