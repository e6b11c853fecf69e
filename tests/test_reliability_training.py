"""Reliability of `tagfold train` as a user runs it (a subprocess over real prep shards and the
torch loader): SIGKILL at seeded random points mid-epoch, then `--resume`, must end with the
same weights and metrics as an uninterrupted run, bit for bit (CPU, one thread, fixed seeds);
a truncated newest checkpoint is detected and the previous good one used; a second run on the
same --out refuses.
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
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import hostile
from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
from tagfold.pipeline.io import write_parquet
from tagfold.training import checkpoint as ckpt

TAGS = ("rock", "sad", "chill", "80s")
N_TRACKS = 24
CROP = 6561
EPOCHS = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """data/prep (real prep-audio output) + data/labels/labels_stage2.parquet, 24 tracks."""
    root = tmp_path_factory.mktemp("train_data")
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    y = np.zeros((N_TRACKS, len(TAGS)), np.uint8)
    rows = []
    for i in range(N_TRACKS):
        y[i, rng.choice(len(TAGS), 2, replace=False)] = 1
        hostile.wav_ok(audio / f"t{i:03d}.wav", 1.0, seed=i)
        rows.append((f"t{i:03d}", f"audio/t{i:03d}.wav"))
    hostile.manifest(root / "manifest.parquet", root, rows)
    prep_audio(PrepConfig(str(root / "manifest.parquet"), str(root / "prep"), tracks_per_shard=8), progress=False)
    split = ["train"] * 16 + ["valid"] * 8
    cols = {"track_id": pa.array([r[0] for r in rows]), "split": pa.array(split)}
    cols.update({t: pa.array(y[:, j], pa.uint8()) for j, t in enumerate(TAGS)})
    write_parquet(pa.table(cols), root / "labels" / "labels_stage2.parquet",
                  {"categories": ["genre", "emotion", "descriptive", "numeric"]})
    return root


def train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tagfold.cli", "train", "--data", str(data), "--model", "wave",
            "--width", "0.0625", "--crop-samples", str(CROP), "--epochs", str(EPOCHS), "--batch-size", "4",
            "--seed", "3", "--device", "cpu", "--backend", "torch", "--num-workers", "0",
            "--lr", "3e-3", "--out", str(out), *extra]


def run_train(data, out, *extra, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(train_cmd(data, out, *extra), env=ENV, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = ckpt.load(ckpt.epoch_path(a, EPOCHS)), ckpt.load(ckpt.epoch_path(b, EPOCHS))
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), f"weights differ in {k}"
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(sa["history"]) == strip(sb["history"])
    assert sa["best_pr_auc"] == sb["best_pr_auc"] or (np.isnan(sa["best_pr_auc"]) and np.isnan(sb["best_pr_auc"]))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    run_train(data, out)
    return out


def _kill_mid_epoch(data: Path, out: Path, rng: random.Random, epoch_s: float) -> tuple[int, int]:
    """Start a run, wait until it has finished a seeded number of epochs (0 .. EPOCHS-1), then
    SIGKILL it a seeded random time into the next epoch. Returns (epochs done, return code)."""
    target = rng.randrange(0, EPOCHS)
    extra = ("--resume",) if ckpt.epoch_files(out) else ()
    proc = subprocess.Popen(train_cmd(data, out, *extra), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def epochs_done() -> int:
        files = ckpt.epoch_files(out)
        return int(files[0].stem.split("-")[1]) if files else 0

    try:
        deadline = time.monotonic() + 240
        # the lock is taken once imports and data checks are over, just before the first epoch
        while time.monotonic() < deadline and proc.poll() is None:
            if epochs_done() >= target and (out / ".tagfold.lock").exists():
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.8 * epoch_s))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return epochs_done(), proc.returncode


def test_sigkill_mid_epoch_then_resume_is_bit_exact(data, reference, tmp_path):
    rng = random.Random(20261124)
    out = tmp_path / "run"
    # an epoch's length in the uninterrupted run bounds the random delay, so kills land mid-epoch
    epoch_s = min(r["seconds"] for r in ckpt.load(ckpt.epoch_path(reference, EPOCHS))["history"])
    kills = []
    for _ in range(4):
        done, rc = _kill_mid_epoch(data, out, rng, epoch_s)
        kills.append(done)
        # nothing half-written is trusted: every epoch file present verifies (a torn write
        # would fail its checksum), and resume works from whatever is there
        for p in ckpt.epoch_files(out):
            ckpt.load(p)
    print("epochs finished at each kill:", kills)
    assert sum(k < EPOCHS for k in kills) >= 3, "kills came after the run had finished"
    run_train(data, out, "--resume")
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    assert_same_run(reference, out)
    assert (out / "history.csv").read_text().count("\n") == EPOCHS + 1


def test_truncated_newest_checkpoint_falls_back(data, reference, tmp_path):
    out = tmp_path / "run"
    run_train(data, out)
    newest = ckpt.epoch_path(out, EPOCHS)
    data_bytes = newest.read_bytes()
    newest.write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load(newest)
    r = run_train(data, out, "--resume")
    assert f"epoch-{EPOCHS:04d}.pt" in r.stderr and "truncated or corrupt" in r.stderr  # the user is told
    assert f"after epoch {EPOCHS - 1}" in r.stderr                                     # ... the previous used
    assert_same_run(reference, out)


def test_every_checkpoint_corrupt_is_a_clear_error(data, tmp_path):
    out = tmp_path / "run"
    run_train(data, out, "--epochs", "2")
    for p in ckpt.epoch_files(out):
        p.write_bytes(p.read_bytes()[:100])
    r = run_train(data, out, "--resume", check=False)
    assert r.returncode != 0
    assert "no usable checkpoint" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr[-2000:]


def test_second_run_on_same_out_refuses(data, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(train_cmd(data, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".tagfold.lock").exists() or not (out / ".tagfold.lock").read_text().strip():
            assert time.monotonic() < deadline and first.poll() is None, "first run did not take the lock"
            time.sleep(0.01)
        second = run_train(data, out, check=False)
        assert second.returncode != 0
        assert "in use by another tagfold run" in second.stderr
        assert "Traceback" not in second.stderr, second.stderr[-2000:]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_demo_build_resumes_a_killed_prep(tmp_path, monkeypatch):
    """`tagfold train` with no --data builds the demo step by step, skipping finished steps. A
    prep-audio killed midway leaves prep/ behind; the next build must finish it, not skip it."""
    from tagfold import cli
    from tagfold.orchestrate import DemoBuild, build_demo
    root = tmp_path / "demo"
    assert cli.main(["demo-data", "--out", str(root / "demo-data"), "--n", "6", "--seconds", "1",
                     "--workers", "1"]) == 0
    # the later steps count as done (their outputs exist); only prep was cut short
    for done in (root / "tags" / "stage3.parquet", root / "labels" / "labels_stage3.parquet"):
        done.parent.mkdir(parents=True)
        done.write_bytes(b"")
    (root / "prep" / "parts").mkdir(parents=True)       # what a prep killed before its first group leaves
    build_demo(root, DemoBuild(n=6, seconds=1, workers=1))     # the same size: a demo of another size is refused
    index = pq.read_table(root / "prep" / "index.parquet")
    assert index.num_rows == 6


# ----------------------------------------------------------------------------- run folders

def test_fresh_run_into_an_earlier_run_refuses_or_overwrites(data, reference, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(reference, out)       # a finished 3-epoch run
    r = run_train(data, out, "--epochs", "1", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{out} holds an earlier run" in r.stderr and "epoch-0003.pt" in r.stderr and "--overwrite" in r.stderr
    assert ckpt.epoch_files(out)[0].name == "epoch-0003.pt"           # nothing was touched
    run_train(data, out, "--epochs", "1", "--overwrite")
    assert [p.name for p in ckpt.epoch_files(out)] == ["epoch-0001.pt"]   # the old epochs are gone
    assert (out / "history.csv").read_text().count("\n") == 2


def test_resume_never_reads_another_runs_checkpoint(data, reference, tmp_path):
    """An earlier run's newer epoch file planted in the folder (copied back, or left by a version
    without run ids) is skipped by --resume, which continues this folder's own run."""
    import shutil
    out = tmp_path / "run"
    run_train(data, out, "--epochs", "1")
    shutil.copy(ckpt.epoch_path(reference, 3), ckpt.epoch_path(out, 3))
    r = run_train(data, out, "--epochs", "2", "--resume")
    assert "epoch-0003.pt: from run" in r.stderr and "skipped" in r.stderr, r.stderr[-2000:]
    assert "after epoch 1" in r.stderr
    state = ckpt.load(ckpt.epoch_path(out, 2))
    assert len(state["history"]) == 2 and state["run_id"] == ckpt.load(ckpt.epoch_path(out, 1))["run_id"]
    assert state["run_id"] != ckpt.load(ckpt.epoch_path(reference, 3))["run_id"]


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_loader_workers_die_with_a_killed_train(data, tmp_path):
    args = [a if a != "0" or prev != "--num-workers" else "2"
            for prev, a in zip([""] + train_cmd(data, tmp_path / "run"), train_cmd(data, tmp_path / "run"))]
    proc = subprocess.Popen([*args, "--epochs", "50"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the loader workers never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(w) for w in workers), "loader workers outlived the killed run"


def test_evaluate_and_resume_refuse_labels_of_another_run(data, tmp_path):
    """Labels re-made after training (a new labels run), or a Stage I file from another labels run
    beside them: evaluate and --resume refuse, naming the files, instead of scoring a mix."""
    import shutil

    from tagfold.pipeline.io import read_run_id, start_run
    d = tmp_path / "data"
    shutil.copytree(data / "prep", d / "prep")
    labels = d / "labels" / "labels_stage2.parquet"

    def make_labels(stage: int) -> str:
        table = pq.read_table(data / "labels" / "labels_stage2.parquet")
        write_parquet(table, d / "labels" / f"labels_stage{stage}.parquet", {"categories": ["genre", "emotion",
                                                                                              "descriptive", "number"]})
        return read_run_id(d / "labels" / f"labels_stage{stage}.parquet")

    (d / "labels").mkdir()
    start_run(d / "labels")
    first = make_labels(2)
    make_labels(1)
    out = tmp_path / "run"
    run_train(d, out, "--epochs", "1")
    assert ckpt.load(out / "best.pt")["labels_run"] == first
    evaluate = [sys.executable, "-m", "tagfold.cli", "evaluate", "--checkpoint", str(out / "best.pt"), "--split",
                "valid", "--device", "cpu"]
    r = subprocess.run([*evaluate, "--out", str(tmp_path / "ok")], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # a Stage I file from another labels run beside this one
    (d / "other").mkdir()
    start_run(d / "other")
    write_parquet(pq.read_table(d / "labels" / "labels_stage1.parquet"), d / "other" / "x.parquet")
    shutil.copy(d / "other" / "x.parquet", d / "labels" / "labels_stage1.parquet")
    r = subprocess.run([*evaluate, "--out", str(tmp_path / "mixed")], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{d / 'labels' / 'labels_stage1.parquet'} is from run" in r.stderr, r.stderr
    # the labels re-made since training
    start_run(d / "labels")
    make_labels(1)
    second = make_labels(2)
    r = subprocess.run([*evaluate, "--out", str(tmp_path / "changed")], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and f"trained on labels run {first}" in r.stderr and second in r.stderr, r.stderr
    r = run_train(d, out, "--epochs", "2", "--resume", check=False)
    assert r.returncode == 1 and f"labels run {first}" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_train_refuses_a_prep_index_left_from_an_earlier_run(data, tmp_path):
    """prep-audio stamps its index with its run; a prep folder claimed by a newer run that did not
    finish (its index.parquet still the old one) is refused by name, not trained on."""
    import shutil

    from tagfold.pipeline.io import folder_run_id, read_run_id, start_run
    d = tmp_path / "data"
    shutil.copytree(data / "prep", d / "prep")
    shutil.copytree(data / "labels", d / "labels")
    assert read_run_id(d / "prep" / "index.parquet") == folder_run_id(d / "prep") is not None
    start_run(d / "prep")          # what a new prep-audio run into this folder does first
    r = run_train(d, tmp_path / "run", "--epochs", "1", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{d / 'prep' / 'index.parquet'} is from run" in r.stderr, r.stderr
