"""Audio benchmarks on real Emotify 30 s MP3 clips (22.05 kHz mono previews).

- prep: decode + mono + soxr HQ resample to 16 kHz + float16 shard, clips/s on one core (workers=1);
- loaders: crops/s for the torch (memmap shards) and DALI CPU (FLAC) loaders, batch 16 of 59,049
  samples ('wave') and of 128-mel spectrograms ('mel'); one epoch = 64 random crops (the 8 clips
  labelled 8 times each: label rows may repeat a track id).
Each asserts the output is correct before timing. Run:
  .venv/bin/python -m pytest benchmarks/bench_audio.py --benchmark-only -s
"""
import shutil

import numpy as np
import pyarrow as pa
import pytest

from tagfold.pipeline.audio.audio_prep import PrepConfig, decode_mono_16k, prep_audio
from tagfold.pipeline.io import write_parquet
from tagfold.pipeline.audio.manifest import ManifestConfig, make_table

N_CLIPS = 8
BATCH = 16
CROPS_PER_EPOCH = 64


@pytest.fixture(scope="module")
def emotify(shared, tmp_path_factory):
    root = shared / "emotify"
    ids = sorted(p.stem for p in (root / "audio").glob("*.mp3"))[:N_CLIPS]
    d = tmp_path_factory.mktemp("bench_audio")
    write_parquet(make_table(ids, [f"audio/{t}.mp3" for t in ids], None, root), d / "m.parquet",
                  ManifestConfig("bench", str(root)))
    return d, ids, root


def bench_prep_clips_per_core(benchmark, emotify):
    from tagfold.training.loaders import ShardStore
    d, ids, root = emotify

    def run():
        shutil.rmtree(d / "prep_bench", ignore_errors=True)
        return prep_audio(PrepConfig(str(d / "m.parquet"), str(d / "prep_bench"), "npy", workers=1), progress=False)

    # Before timing: every clip kept, and each stored clip is its decoded 16 kHz audio (float16 shards).
    s = run()
    assert s["kept"] == N_CLIPS and s["rejected"] == 0
    store = ShardStore(d / "prep_bench")
    for tid in ids:
        x, sr, _ = decode_mono_16k(root / "audio" / f"{tid}.mp3")
        assert sr == 22050 and abs(len(x) - 30 * 16000) < 3200 and np.abs(x).max() > 0.01
        assert store.length(tid) == len(x)
        assert np.abs(store.read(tid, 0, len(x)) - x).max() < 2e-3, tid

    s = benchmark.pedantic(run, rounds=2, iterations=1)
    assert s["kept"] == N_CLIPS
    if benchmark.stats:
        print(f"\nprep: {N_CLIPS / benchmark.stats['mean']:.1f} clips/s per core (30 s 22.05 kHz MP3 -> 16 kHz npy)")


@pytest.fixture(scope="module")
def prepped(emotify):
    d, ids, _ = emotify
    out = d / "prep"
    prep_audio(PrepConfig(str(d / "m.parquet"), str(out), "both", workers=1), progress=False)
    rows = [ids[i % len(ids)] for i in range(CROPS_PER_EPOCH)]
    labels = pa.table({"track_id": rows, "split": ["train"] * len(rows),
                       "t0": (np.arange(len(rows)) % 2).astype(np.uint8)})
    return out, labels


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("backend", ["torch", "dali"])
@pytest.mark.parametrize("input_", ["wave", "mel"])
def bench_loader_crops_per_s(benchmark, prepped, backend, input_, device):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    import torch

    from tagfold.training.loaders import make_loader
    out, labels = prepped
    def build():
        return make_loader(out, labels, "train", input=input_, batch_size=BATCH, backend=backend,
                           device=device, num_workers=2, seed=0)
    x, y, idx = next(iter(build()))
    assert x.device.type == y.device.type == device
    x, y, idx = x.cpu(), y.cpu(), idx.cpu()
    assert tuple(x.shape) == ((BATCH, 59049) if input_ == "wave" else (BATCH, 128, 231))
    assert np.isfinite(x.numpy()).all() and x.abs().max() > 0
    assert np.array_equal(y[:, 0].numpy(), labels.column("t0").to_numpy()[idx.numpy()].astype(np.float32))

    loader = build()  # each iteration below is one full epoch (64 crops) on either backend

    def epoch():
        n = sum(x.shape[0] for x, _, _ in loader)
        if device == "cuda":
            torch.cuda.synchronize()   # SYNC: time the features made on the GPU, not just their launch
        return n

    n = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    assert n == CROPS_PER_EPOCH
    if benchmark.stats:
        print(f"\n{backend} {input_}: {n / benchmark.stats['mean']:.0f} crops/s (batch {BATCH}, {device})")
