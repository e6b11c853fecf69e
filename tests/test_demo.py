import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from tagfold.pipeline.audio.demo import PARENTS, DemoConfig, draw_latent, synthesize
from tagfold.pipeline.constants import SAMPLE_RATE as SR
from tagfold.pipeline.selected import load_selected
from tagfold.training.features import log_mel_numpy

SEL = load_selected()
CAT = dict(zip(SEL.tags, SEL.categories))


def _clip(latent, i, seconds=2.0):
    return synthesize(latent, CAT, seconds, np.random.default_rng((9, i)))


def test_latent_draw_shape():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lat = draw_latent(rng, list(SEL.tags), list(SEL.categories))
        implied = {p for g in lat for p in PARENTS.get(g, ())}
        cats = [CAT[t] for t in lat if t not in implied]  # 'alternative' is an emotion in the thesis
        assert cats.count("number") == 1 and 1 <= cats.count("emotion") <= 2 and len(set(lat)) == len(lat)
        if "indie rock" in lat:
            assert {"indie", "rock"} <= set(lat)


def test_decade_sets_band_limits():
    def high_share(decade):
        x = _clip(["jazz", "calm", decade], 0)
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[np.fft.rfftfreq(len(x), 1 / SR) > 4500].sum() / p.sum()
    assert high_share("60s") < 0.1 * high_share("2000s")  # 60s: 3.5 kHz top (plus broadband hiss)


def test_genre_is_audible():
    """Nearest-centroid on mean log-mel tells 4 genres apart from clips with random other tags."""
    genres = ["rock", "jazz", "electronic", "folk"]
    rng = np.random.default_rng(1)
    feats, ys = [], []
    for g, genre in enumerate(genres):
        for i in range(8):
            lat = [genre, str(rng.choice(["happy", "sad", "calm", "dark"])), "2000s"]
            feats.append(log_mel_numpy(_clip(lat, 100 * g + i)).mean(axis=1))
            ys.append(g)
    f, y = np.array(feats), np.array(ys)
    f = (f - f.mean(0)) / (f.std(0) + 1e-9)
    hits = 0
    for i in range(len(y)):  # leave-one-out
        mask = np.arange(len(y)) != i
        cents = np.stack([f[mask & (y == g)].mean(0) for g in range(4)])
        hits += int(np.argmin(((cents - f[i]) ** 2).sum(1)) == y[i])
    assert hits / len(y) > 0.75


def test_generate_deterministic(tmp_path):
    from tagfold.pipeline.audio.demo import main
    for name in ("a", "b"):
        assert main(["--out", str(tmp_path / name), "--n", "12", "--seconds", "2", "--seed", "5", "--workers", "1"]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "tags.csv").read_text() == (b / "tags.csv").read_text()
    assert pq.read_table(a / "latent.parquet").equals(pq.read_table(b / "latent.parquet"))
    m = pq.read_table(a / "manifest.parquet")
    assert m.num_rows == 12 and set(m.column("sample_rate").to_pylist()) == {16000}
    x, sr = sf.read(a / m.column("path")[0].as_py())
    y, _ = sf.read(b / m.column("path")[0].as_py())
    assert sr == 16000 and len(x) == 2 * SR and np.array_equal(x, y)
    lines = (a / "tags.csv").read_text().splitlines()
    assert lines[0] == "track_id,tags" and len(lines) == 13
    assert DemoConfig(str(a)).n == 1000


def test_demo_end_to_end_prep_and_loader(tmp_path):
    """24 clips of 4 s: latent.parquet is the wide uint8 ground truth, tags.csv the raw user tags,
    and the manifest feeds prep-audio and the loader with no other input."""
    import torch

    from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
    from tagfold.pipeline.audio.demo import main
    from tagfold.training.loaders import make_loader
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--n", "24", "--seconds", "4", "--seed", "2", "--workers", "2"]) == 0
    latent = pq.read_table(out / "latent.parquet")
    assert latent.column_names == ["track_id", *SEL.tags]
    assert all(latent.schema.field(t).type == "uint8" for t in SEL.tags)
    y = np.stack([latent.column(t).to_numpy() for t in SEL.tags], 1)
    numeric = [j for j, c in enumerate(SEL.categories) if c == "number"]
    assert (y[:, numeric].sum(1) == 1).all() and (y.sum(1) >= 3).all()  # a decade, a genre, an emotion
    raw = dict(line.split(",", 1) for line in (out / "tags.csv").read_text().splitlines()[1:])
    assert list(raw) == latent.column("track_id").to_pylist() and all(raw.values())
    # raw tags are noisy: some latent tags typed exactly, many not
    exact = sum(t in raw[tid].split(";") for tid, row in zip(raw, y) for t, v in zip(SEL.tags, row) if v)
    assert 0.2 < exact / y.sum() < 0.9
    splits = pq.read_table(out / "manifest.parquet").column("split").to_pylist()
    assert splits.count("train") >= 14 and splits.count("valid") >= 4 and splits.count("test") >= 4
    s = prep_audio(PrepConfig(str(out / "manifest.parquet"), str(tmp_path / "prep"), "npy", tracks_per_shard=8),
                   progress=False)
    assert s["kept"] == 24 and s["rejected"] == 0
    labels = latent.append_column("split", pa.array(["train"] * 24)).select(["track_id", "split", *SEL.tags])
    x, yb, idx = next(iter(make_loader(tmp_path / "prep", labels, "train", input="mel", batch_size=4)))
    assert tuple(x.shape) == (4, 128, 231) and torch.equal(yb, torch.from_numpy(y[idx.numpy()].astype(np.float32)))


def test_emotions_follow_valence_and_arousal():
    from tagfold.pipeline.audio.demo import clip_params
    p = {e: clip_params(["rock", e, "90s"], CAT) for e in ("sad", "melancholic", "happy", "funny", "calm", "energetic")}
    assert p["sad"]["minor"] > 0 and p["melancholic"]["minor"] > 0          # minor mode
    assert p["happy"]["minor"] < 0 and p["funny"]["minor"] < 0              # major mode
    assert p["energetic"]["tempo"] > p["calm"]["tempo"] + 25
    assert p["energetic"]["rolloff"] < p["calm"]["rolloff"]                 # brighter
    assert clip_params(["rock", "acoustic", "90s"], CAT)["drive"] == 0
