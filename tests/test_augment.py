"""Waveform augmentation (gain, time shift, mixing with labels united) and the train+valid final fit's
split, on real Emotify clips through the torch loader."""
import numpy as np
import pyarrow as pa
import pytest
import torch

from tagfold.training.augment import Augment
from tagfold.training.loaders import make_loader

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(b=6, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((b, n)).astype(np.float32))
    y = torch.from_numpy((rng.random((b, 5)) < 0.3).astype(np.float32))
    return x, y


def test_off_is_identity_and_ranges_are_checked():
    x, y = _batch()
    x2, y2 = Augment().apply(x, y, np.random.default_rng(0))
    assert torch.equal(x, x2) and torch.equal(y, y2) and not Augment().active
    for bad in (dict(gain_db=-1), dict(shift=1.5), dict(mix=-0.1)):
        with pytest.raises(ValueError, match="augmentation"):
            Augment(**bad)


def test_gain_and_shift_keep_labels_and_stay_in_bounds():
    x, y = _batch()
    xg, yg = Augment(gain_db=6).apply(x, y, np.random.default_rng(1))
    ratio = (xg.norm(dim=1) / x.norm(dim=1)).numpy()
    assert torch.equal(y, yg) and np.all(ratio >= 10 ** (-6 / 20) - 1e-6) and np.all(ratio <= 10 ** (6 / 20) + 1e-6)
    assert not np.allclose(ratio, 1)
    xs, ys = Augment(shift=0.25).apply(x, y, np.random.default_rng(2))
    assert torch.equal(y, ys)
    for i in range(len(x)):   # a circular shift: the same samples, rolled by at most a quarter
        shift = next(k for k in range(-1000, 1001) if torch.equal(torch.roll(x[i], k), xs[i]))
        assert abs(shift) <= 1000


def test_mix_unites_labels_and_is_reproducible():
    x, y = _batch(b=8)
    xm, ym = Augment(mix=1.0).apply(x, y, np.random.default_rng(3))
    assert torch.all(ym >= y) and (ym > y).any()                  # labels only gained, from a partner
    changed = [(xm[i] - x[i]).abs().max().item() > 0 for i in range(len(x))]
    assert all(changed)
    xm2, ym2 = Augment(mix=1.0).apply(x, y, np.random.default_rng(3))
    assert torch.equal(xm, xm2) and torch.equal(ym, ym2)
    xh, _ = Augment(mix=0.0, gain_db=0.0).apply(x, y, np.random.default_rng(3))
    assert torch.equal(xh, x)


@pytest.fixture(scope="module")
def prep(shared, tmp_path_factory):
    from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
    from tagfold.pipeline.audio.manifest import ManifestConfig, make_table
    from tagfold.pipeline.io import write_parquet
    ids = [f"emotify-{i:03d}" for i in (2, 3, 4, 200, 203, 204)]
    d = tmp_path_factory.mktemp("augment")
    root = shared / "emotify"
    write_parquet(make_table(ids, [f"audio/{t}.mp3" for t in ids], None, root), d / "m.parquet",
                  ManifestConfig("test", str(root)))
    prep_audio(PrepConfig(str(d / "m.parquet"), str(d / "prep")), progress=False)
    labels = pa.table({"track_id": ids, "split": ["train", "train", "valid", "valid", "test", "train"],
                       "a": np.array([1, 0, 1, 0, 1, 0], np.uint8), "b": np.array([0, 1, 0, 1, 0, 1], np.uint8)})
    return d / "prep", labels


def test_torch_loader_augments_training_batches_only_and_reproducibly(prep):
    prep_dir, labels = prep
    kw = dict(input="wave", batch_size=3, crop_samples=8000, backend="torch", device="cpu", num_workers=0, seed=5)
    aug = Augment(gain_db=6, shift=0.5, mix=0.5)

    def first(**k):
        return next(iter(make_loader(prep_dir, labels, "train", **kw, **k)))
    plain, a1, a2 = first(), first(augment=aug), first(augment=aug)
    assert torch.equal(plain[2], a1[2])                        # same tracks and crops
    assert not torch.equal(plain[0], a1[0])                    # but augmented audio
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])   # the same for the same (seed, epoch)
    valid = next(iter(make_loader(prep_dir, labels, "valid", **{**kw, "batch_size": 2}, train=False, augment=aug)))
    valid_plain = next(iter(make_loader(prep_dir, labels, "valid", **{**kw, "batch_size": 2}, train=False)))
    assert torch.equal(valid[0], valid_plain[0])               # evaluation is never augmented
    both = make_loader(prep_dir, labels, "train+valid", **{**kw, "batch_size": 1})
    assert len(both) == 5                                      # the final fit trains on both splits
    with pytest.raises(ValueError, match="torch loader"):
        make_loader(prep_dir, labels, "train", **{**kw, "backend": "dali"}, augment=aug)
