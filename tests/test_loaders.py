"""Loader contract on real Emotify clips: torch (memmap shards) and DALI CPU mode (FLAC)."""
import numpy as np
import pyarrow as pa
import pytest
import torch

from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
from tagfold.pipeline.io import write_parquet
from tagfold.pipeline.audio.manifest import ManifestConfig, make_table
from tagfold.training.features import LogMel, log_mel_numpy, mel_filter_bank
from tagfold.training.loaders import ShardStore, epoch_plan, eval_chunks, make_loader, shard_plan

IDS = ["emotify-002", "emotify-003", "emotify-004", "emotify-200", "emotify-203"]


@pytest.fixture(scope="module")
def prep(shared, tmp_path_factory):
    d = tmp_path_factory.mktemp("loaders")
    paths = [f"audio/{t}.mp3" for t in IDS]
    root = shared / "emotify"
    write_parquet(make_table(IDS, paths, None, root), d / "m.parquet", ManifestConfig("test", str(root)))
    # float32 shards so torch vs DALI differ only by DALI's 16-bit FLAC
    prep_audio(PrepConfig(str(d / "m.parquet"), str(d / "prep"), "both", "float32"), progress=False)
    return d / "prep"


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    cols = {f"tag{j}": rng.integers(0, 2, len(IDS) + 1).astype(np.uint8) for j in range(3)}
    # one labelled track has no audio: it must be skipped (and reported), not crash
    return pa.table({"track_id": IDS + ["emotify-999"], "split": ["train"] * 4 + ["test", "train"], **cols})


def test_mel_filter_bank_matches_torchaudio():
    import torchaudio
    fb = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 128, 16000, None, "htk").numpy()
    assert np.abs(fb - mel_filter_bank()).max() < 1e-4


def test_torch_mel_matches_numpy_reference(prep):
    x = ShardStore(prep).read("emotify-002", 16000, 59049)[None]
    ours = LogMel()(torch.from_numpy(x)).numpy()
    ref = log_mel_numpy(x)
    assert ours.shape == (1, 128, 231)
    # tolerance: float32 STFT vs float64 reference; 0.05 dB over bins within 80 dB of the peak
    loud = ref > ref.max() - 80
    assert np.abs(ours - ref)[loud].max() < 0.05


@pytest.mark.parametrize("input_,shape", [("wave", (2, 59049)), ("mel", (2, 128, 231))])
def test_torch_loader_contract(prep, labels, input_, shape, capsys):
    loader = make_loader(prep, labels, "train", input=input_, batch_size=2, num_workers=0, seed=1)
    batches = list(loader)
    assert "1 train tracks have no prepped audio" in capsys.readouterr().err
    assert len(batches) == len(loader) == 2  # 4 train tracks with audio, drop_last
    seen = []
    for x, y, idx in batches:
        assert x.dtype == torch.float32 and tuple(x.shape) == shape
        assert y.dtype == torch.float32 and y.shape == (2, 3) and idx.dtype == torch.int64
        expect = np.stack([labels.column(f"tag{j}").to_numpy()[idx.numpy()] for j in range(3)], 1)
        assert np.array_equal(y.numpy(), expect)
        seen += idx.tolist()
    assert sorted(seen) == [0, 1, 2, 3]
    again = [b[0] for b in make_loader(prep, labels, "train", input=input_, batch_size=2, num_workers=0, seed=1)]
    assert all(torch.equal(a, b[0]) for a, b in zip(again, batches, strict=True))  # same seed, same crops


def test_torch_loader_workers_match_single_process(prep, labels):
    kw = dict(input="wave", batch_size=2, num_workers=0, train=False)
    one = [b[0] for b in make_loader(prep, labels, None, **kw)]
    two = [b[0] for b in make_loader(prep, labels, None, **{**kw, "num_workers": 2})]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True)) and len(one) == 3


def test_eval_chunks(prep):
    c = eval_chunks(prep, "emotify-003", n_chunks=16)
    store = ShardStore(prep)
    n = store.length("emotify-003")
    assert c.shape == (16, 59049) and c.dtype == np.float32
    assert np.array_equal(c[0], store.read("emotify-003", 0, 59049))
    assert np.array_equal(c[-1], store.read("emotify-003", n - 59049, 59049))
    short = eval_chunks(prep, "emotify-003", n_chunks=2, crop_samples=n + 100)
    assert np.all(short[:, n:] == 0) and np.array_equal(short[0], short[1])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("input_", ["wave", "mel"])
def test_dali_matches_torch(prep, labels, input_, device):
    """DALI (CPU-only pipeline, or features on the GPU) and the torch loader, same crops."""
    pytest.importorskip("nvidia.dali")
    kw = dict(input=input_, batch_size=2, num_workers=1, train=False, device=device)
    t = [tuple(v.cpu() for v in b) for b in make_loader(prep, labels, None, backend="torch", **kw)]
    d = []
    for b in make_loader(prep, labels, None, backend="dali", **kw):
        assert b[0].device.type == device
        d.append(tuple(v.cpu() for v in b))
    assert len(t) == len(d) == 3
    for (xt, yt, it), (xd, yd, id_) in zip(t, d, strict=True):
        assert xd.dtype == torch.float32 and xd.shape == xt.shape
        assert torch.equal(it, id_) and torch.equal(yt, yd)
        if input_ == "wave":  # 16-bit FLAC quantisation: <= 1 LSB plus resampler rounding
            assert (xt - xd).abs().max() < 1e-4
        else:  # stated tolerance: 0.5 dB on bins within 60 dB of the clip's peak
            loud = xt > xt.amax(dim=(1, 2), keepdim=True) - 60
            assert (xt - xd).abs()[loud].max() < 0.5


def test_dali_train_crops(prep, labels):
    pytest.importorskip("nvidia.dali")
    d = make_loader(prep, labels, "train", backend="dali", input="wave", batch_size=2, num_workers=1, seed=3)
    store = ShardStore(prep)
    tids = labels.column("track_id").to_pylist()
    for _ in range(2):  # two epochs: auto reset works
        seen = []
        for x, y, idx in d:
            for row, crop in zip(idx.tolist(), x.numpy(), strict=True):
                full = store.read(tids[row], 0, store.length(tids[row]))
                # the random crop is a real window of that track (find it by its first samples)
                hits = np.flatnonzero(np.abs(full[:len(full) - 59049 + 1] - crop[0]) < 1e-4)
                assert any(np.abs(full[h:h + 59049] - crop).max() < 1e-4 for h in hits)
                seen.append(row)
        assert sorted(seen) == [0, 1, 2, 3]


def test_bad_arguments(prep, labels):
    with pytest.raises(ValueError, match="input"):
        make_loader(prep, labels, "train", input="cqt")
    with pytest.raises(ValueError, match="backend"):
        make_loader(prep, labels, "train", backend="tf")


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_set_epoch_reproduces_an_epoch(prep, labels, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    kw = dict(input="wave", batch_size=2, backend=backend, num_workers=1, seed=7)

    def epoch(loader, e):
        loader.set_epoch(e)
        return [(x.clone(), idx.clone()) for x, _, idx in loader]

    a, b = make_loader(prep, labels, "train", **kw), make_loader(prep, labels, "train", **kw)
    e1, e0, e1_again = epoch(a, 1), epoch(a, 0), epoch(b, 1)   # b never ran epoch 0: a resume
    assert len(e1) == 2                      # 4 train tracks with audio, batches of 2
    assert all(torch.equal(x, y) and torch.equal(i, j) for (x, i), (y, j) in zip(e1, e1_again, strict=True))
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(e0, e1, strict=True))


def test_shard_plan_partitions_the_full_batch_groups():
    order, us = epoch_plan(23, seed=5, epoch=2)
    bs = 3                                   # 7 full batches; the 23rd track never makes one
    full = order[:21].reshape(7, bs), us[:21].reshape(7, bs)
    one = shard_plan(order, us, bs, 0, 1)    # world=1: the full batches, unchanged
    assert np.array_equal(one[0], order[:21]) and np.array_equal(one[1], us[:21])
    for world in (2, 3):
        groups = 7 // world                  # a last group of fewer than `world` batches is dropped
        for rank in range(world):
            o, u = shard_plan(order, us, bs, rank, world)
            mine = [g * world + rank for g in range(groups)]
            assert np.array_equal(o.reshape(-1, bs), full[0][mine]) and np.array_equal(u.reshape(-1, bs), full[1][mine])
    with pytest.raises(ValueError, match="rank"):
        shard_plan(order, us, bs, 2, 2)


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_ranks_load_only_their_share(prep, labels, backend):
    """world=2: the ranks' training batches are exactly the single-process batches, alternately
    (torch: the same crops too; DALI draws crops per pipeline, so only the tracks match)."""
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    kw = dict(input="wave", batch_size=1, backend=backend, num_workers=1, seed=4)

    def batches(**shard):
        loader = make_loader(prep, labels, "train", **kw, **shard)
        loader.set_epoch(1)
        out = [(x.clone(), idx.clone()) for x, _, idx in loader]
        assert len(out) == len(loader)
        return out

    single = batches()
    assert len(single) == 4                  # 4 train tracks with audio
    for rank in (0, 1):
        mine = batches(rank=rank, world=2)
        assert [i.tolist() for _, i in mine] == [i.tolist() for _, i in single[rank::2]]
        if backend == "torch":
            assert all(torch.equal(x, y) for (x, _), (y, _) in zip(mine, single[rank::2], strict=True))
    # world=3: one full group of 3 batches; the 4th batch is dropped on every rank
    assert [[i.tolist() for _, i in batches(rank=r, world=3)] for r in range(3)] == \
        [[single[r][1].tolist()] for r in range(3)]
    with pytest.raises(ValueError, match="train=False"):
        make_loader(prep, labels, "train", train=False, rank=1, world=2)


def test_flac_only_prep_serves_eval_chunks_and_torch_loader(prep, labels, tmp_path):
    """prep --format flac (no shards): eval_chunks and the torch loader read the FLAC files."""
    import shutil
    flac_only = tmp_path / "prep"
    shutil.copytree(prep, flac_only, ignore=shutil.ignore_patterns("shard-*.npy"))
    a = eval_chunks(flac_only, "emotify-004", n_chunks=3)
    b = eval_chunks(prep, "emotify-004", n_chunks=3)
    assert a.shape == b.shape == (3, 59049) and np.abs(a - b).max() < 1e-4  # 16-bit FLAC vs float32
    x, _, _ = next(iter(make_loader(flac_only, labels, "train", batch_size=2, seed=1)))
    assert tuple(x.shape) == (2, 59049) and x.abs().max() > 0
