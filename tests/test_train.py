"""Training loop: learns a learnable task, resumes bit-exactly, survives a corrupt checkpoint,
refuses malicious checkpoints, writes history + curves, validates its config."""
import dataclasses
import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from tagfold.pipeline.io import write_parquet
from tagfold.training import checkpoint as ckpt
from tagfold.training.train import TrainConfig, fit, read_labels



pytestmark = pytest.mark.usefixtures("one_torch_thread")


TAGS = ("rock", "sad", "chill", "80s", "jazz")
CATS = ("genre", "emotion", "descriptive", "numeric", "genre")
CROP = 6561          # 3**8: the smallest waveform crop that leaves 3 steps for the back end
N_TRACKS = 48


def make_labels(path, n=N_TRACKS, seed=0):
    """Labels parquet for synthetic tracks: each track has 1-2 random tags, 60/20/20 split."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, len(TAGS)), np.uint8)
    for i in range(n):
        y[i, rng.choice(len(TAGS), size=rng.integers(1, 3), replace=False)] = 1
    split = np.array(["train"] * int(n * 0.6) + ["valid"] * int(n * 0.2) + ["test"] * (n - int(n * 0.6) - int(n * 0.2)))
    cols = {"track_id": pa.array([f"t{i:03d}" for i in range(n)]), "split": pa.array(split)}
    cols.update({t: pa.array(y[:, j], pa.uint8()) for j, t in enumerate(TAGS)})
    write_parquet(pa.table(cols), path, {"categories": list(CATS)})
    return y, split


def synth_wave(y_row: np.ndarray, n: int, rng) -> np.ndarray:
    """A tone per present tag (each tag its own frequency) plus noise: learnable from audio."""
    t = np.arange(n) / 16000
    x = 0.1 * rng.standard_normal(n)
    for j in np.flatnonzero(y_row):
        x += np.sin(2 * np.pi * (300 + 700 * j) * t)
    return x.astype(np.float32)


class SynthLoaders:
    """loader_factory for fit(): deterministic per seed, like training.loaders.make_loader."""

    def __init__(self, labels_path, batch_size=8, crop=CROP, interrupt_at_epoch=None):
        self.ids, self.splits, self.y, _, _ = read_labels(labels_path)
        self.batch_size, self.crop, self.interrupt_at_epoch = batch_size, crop, interrupt_at_epoch
        rng = np.random.default_rng(123)
        self.audio = np.stack([synth_wave(r, 2 * crop, rng) for r in self.y])   # 2 crops long
        self.train_batches = 0   # training batches this factory's loaders yielded (all epochs)

    def __call__(self, split, *, train, seed, epoch, rank=0, world=1):
        if train and epoch == self.interrupt_at_epoch:
            raise KeyboardInterrupt(f"simulated kill at epoch {epoch + 1}")
        rows = np.flatnonzero(self.splits == split)
        rng = np.random.default_rng(seed)
        if train:
            rows = rng.permutation(rows)
        # Crops drawn for the whole epoch at once: the same crops whatever the batch size.
        offsets = rng.integers(0, self.crop, len(rows)) if train else np.full(len(rows), self.crop // 2)
        firsts = range(0, len(rows), self.batch_size)   # each global batch's first position
        if train:  # fit's contract: global batches rank, rank + world, ...; no partial group
            firsts = firsts[:len(firsts) // world * world][rank::world]
        for s in firsts:
            if train:
                self.train_batches += 1
            idx, starts = rows[s:s + self.batch_size], offsets[s:s + self.batch_size]
            x = np.stack([self.audio[i, o:o + self.crop] for i, o in zip(idx, starts)])
            yield torch.from_numpy(x), torch.from_numpy(self.y[idx].astype(np.float32)), torch.from_numpy(idx)


def tiny_config(tmp_path, **kw):
    labels = tmp_path / "labels_stage2.parquet"
    if not labels.exists():
        make_labels(labels)
    base = dict(stage=2, input="wave", model="wave", data=str(tmp_path), prep=str(tmp_path / "prep"),
                labels=str(labels), out=str(tmp_path / "run"), epochs=3, batch_size=8, lr=3e-3,
                width=0.0625, crop_samples=CROP, seed=7, device="cpu", schedule="cosine")
    base.update(kw)
    return TrainConfig(**base).resolved()


def final_state(run_dir, epoch):
    return ckpt.load(ckpt.epoch_path(run_dir, epoch))


def test_fit_learns_and_writes_outputs(tmp_path):
    cfg = tiny_config(tmp_path, epochs=4, lr=3e-3, width=0.125, schedule="constant")
    out = fit(cfg, SynthLoaders(cfg.labels), quiet=True).out
    hist = (out / "history.csv").read_text().splitlines()
    assert hist[0].startswith("epoch,lr,train_loss")
    assert len(hist) == 1 + 4
    assert (out / "best.pt").exists()
    state = final_state(out, 4)
    assert state["config"] == dataclasses.asdict(cfg)         # resolved config saved
    assert state["tags"] == list(TAGS) and state["categories"] == list(CATS)
    h = state["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    # Tones per tag are easy: training ROC-AUC must be well above chance by the last epoch.
    assert h[-1]["train_roc_auc"] > 0.7 and h[-1]["train_roc_auc"] > h[0]["train_roc_auc"] + 0.1
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "history.parquet").exists()
    assert len(ckpt.epoch_files(out)) == cfg.keep             # older epochs pruned


def test_resume_after_kill_is_bit_exact(tmp_path):
    ref = tiny_config(tmp_path, out=str(tmp_path / "uninterrupted"))
    fit(ref, SynthLoaders(ref.labels), quiet=True)

    cfg = tiny_config(tmp_path, out=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, SynthLoaders(cfg.labels, interrupt_at_epoch=2), quiet=True)
    assert [p.name for p in ckpt.epoch_files(cfg.out)] == ["epoch-0002.pt", "epoch-0001.pt"]
    fit(dataclasses.replace(cfg, resume=True), SynthLoaders(cfg.labels), quiet=True)

    a, b = final_state(ref.out, 3), final_state(cfg.out, 3)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_truncated_checkpoint_falls_back_to_previous(tmp_path):
    ref = tiny_config(tmp_path, out=str(tmp_path / "ref"), epochs=3)
    fit(ref, SynthLoaders(ref.labels), quiet=True)
    cfg = tiny_config(tmp_path, out=str(tmp_path / "cut"), epochs=3)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, SynthLoaders(cfg.labels, interrupt_at_epoch=2), quiet=True)
    newest = ckpt.epoch_path(cfg.out, 2)
    newest.write_bytes(newest.read_bytes()[:-100])              # killed mid-copy, disk full...
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load(newest)
    with pytest.warns(UserWarning, match="falling back to the previous checkpoint"):
        fit(dataclasses.replace(cfg, resume=True), SynthLoaders(cfg.labels), quiet=True)
    a, b = final_state(ref.out, 3), final_state(cfg.out, 3)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_all_checkpoints_bad_is_an_error_not_a_fresh_start(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "epoch-0001.pt").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(ckpt.CheckpointError, match="no usable checkpoint"):
        ckpt.load_latest(run)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    # A well-formed tagfold file with a valid checksum: only weights_only loading stops it.
    ckpt.save({"model": evil}, path)
    with pytest.raises(ckpt.CheckpointError, match="refused to load"):
        ckpt.load(path)
    assert not marker.exists()


def test_checkpoint_round_trip_and_header(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "epoch": 3, "cfg": {"a": [1, 2], "b": "x"}}
    path = ckpt.save(state, tmp_path / "c.pt")
    got = ckpt.load(path)
    assert torch.equal(got["w"], state["w"]) and got["epoch"] == 3 and got["cfg"] == state["cfg"]
    raw = path.read_bytes()
    path.write_bytes(b"PK" + raw[2:])
    with pytest.raises(ckpt.CheckpointError, match="not a tagfold checkpoint"):
        ckpt.load(path)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="stage must be 1, 2 or 3"):
        TrainConfig(stage=4).resolved()
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="vgg").resolved()
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear").resolved()
    assert TrainConfig(model="shortchunk_resnet", input="wave").resolved().input == "mel"


def test_resume_with_other_model_refused(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    fit(cfg, SynthLoaders(cfg.labels), quiet=True)
    other = dataclasses.replace(cfg, width=0.125, resume=True, epochs=2)
    with pytest.raises(ValueError, match="width"):
        fit(other, SynthLoaders(cfg.labels), quiet=True)


def test_cli_defaults_demo_vs_data():
    from tagfold.training.train import parse_args
    demo = parse_args(["--stage", "3", "--input", "mel"])
    assert (demo.width, demo.epochs, demo.data) == (0.125, 8, "")
    r = demo.resolved()
    assert r.model == "mel" and r.labels.endswith("labels/labels_stage3.parquet") and r.out.endswith("stage3-mel")
    real = parse_args(["--data", "d", "--model", "shortchunk_resnet", "--schedule", "step"]).resolved()
    assert (real.width, real.epochs, real.input, real.prep) == (1.0, 10, "mel", "d/prep")
