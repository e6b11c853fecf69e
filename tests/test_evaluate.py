"""Evaluation (chunk averaging, fair truths, thesis tables, plots) and prediction on files."""
import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train import CATS, CROP, TAGS, SynthLoaders, make_labels, tiny_config  # noqa: E402

from tagfold.pipeline.io import write_parquet  # noqa: E402
from tagfold.training import evaluate as ev  # noqa: E402
from tagfold.training.metrics import UndefinedMetricWarning, score  # noqa: E402
from tagfold.training.inference import chunk_starts, chunks_from_wave, predict_tracks  # noqa: E402
from tagfold.training.predict import format_results, main as predict_main, predict_files  # noqa: E402
from tagfold.training.train import fit, read_labels  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    y2, split = make_labels(tmp / "labels_stage2.parquet")
    # Stage I: a subset of Stage II's positives (fewer tags survive without cleaning).
    ids, _, _, _, _ = read_labels(tmp / "labels_stage2.parquet")
    y1 = y2.copy()
    y1[::3] = 0
    cols = {"track_id": pa.array(ids), "split": pa.array(split)}
    cols.update({t: pa.array(y1[:, j], pa.uint8()) for j, t in enumerate(TAGS)})
    write_parquet(pa.table(cols), tmp / "labels_stage1.parquet", {"categories": list(CATS)})
    cfg = tiny_config(tmp, epochs=3, width=0.125, schedule="constant")
    loaders = SynthLoaders(cfg.labels)
    fit(cfg, loaders, quiet=True)
    return cfg, loaders, tmp


def test_evaluate_checkpoint_against_own_and_common_truth(trained):
    cfg, loaders, tmp = trained
    ids = loaders.ids
    chunks_of = lambda t: chunks_from_wave(loaders.audio[ids.index(t)], 4, CROP)  # noqa: E731
    ecfg = ev.EvalConfig(checkpoints=(str(Path(cfg.out) / "best.pt"),), out=str(tmp / "report"), n_chunks=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        entry = ev.entry_from_checkpoint(ecfg.checkpoints[0], ecfg, chunks_of=chunks_of)
    test_rows = np.flatnonzero(loaders.splits == "test")
    assert entry.track_ids == [ids[i] for i in test_rows]
    assert entry.scores.shape == (len(test_rows), len(TAGS)) and entry.name == "Stage II wave"
    assert set(entry.truths) == {"own", "stage1"}
    np.testing.assert_array_equal(entry.truths["own"], loaders.y[test_rows])
    assert entry.truths["stage1"].sum() < entry.truths["own"].sum()

    # Every track's score is the mean of its own chunks' sigmoids, one track at a time through the
    # model (an independent computation), whatever the batch size: 11 test tracks in batches of 4
    # (the default) and 3 (neither divides 11), 11 (one batch) and 1.
    model, _ = ev.load_model(ecfg.checkpoints[0])
    with torch.no_grad():
        direct = np.stack([torch.sigmoid(model(torch.from_numpy(chunks_of(ids[i])))).mean(0).numpy()
                           for i in test_rows])
    assert len(test_rows) == 11
    np.testing.assert_allclose(entry.scores, direct, rtol=1e-5, atol=1e-6)
    for batch in (3, 11, 1):
        other = ev.EvalConfig(checkpoints=ecfg.checkpoints, out=ecfg.out, n_chunks=4, batch_tracks=batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            again = ev.entry_from_checkpoint(other.checkpoints[0], other, chunks_of=chunks_of)
        assert again.track_ids == entry.track_ids
        np.testing.assert_allclose(again.scores, direct, rtol=1e-5, atol=1e-6, err_msg=f"batch_tracks={batch}")

    scored = ev.score_entries([entry])
    ev.write_report(scored, ecfg.out, ecfg)
    per_tag = list(csv.DictReader(open(tmp / "report" / "per_tag.csv")))
    assert len(per_tag) == 2 * len(TAGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ref = score(entry.truths["own"], entry.scores, TAGS)
    own = {r["tag"]: r for r in per_tag if r["truth"] == "own"}
    for j, t in enumerate(TAGS):
        if np.isnan(ref.roc_auc[j]):
            assert own[t]["roc_auc"] == ""
        else:
            assert float(own[t]["roc_auc"]) == pytest.approx(ref.roc_auc[j])
    assert (tmp / "report" / "per_tag_pr_auc_stage1.png").stat().st_size > 1000


class ChunkLogits(torch.nn.Module):
    """Stub model with known outputs: a chunk's logits are its first N_TAGS samples times 6, so
    chunks of one track give logits far apart (-6..6) and the averaging rules are distinguishable."""

    def forward(self, x):
        return 6.0 * x[:, :len(TAGS)]


def _stub_chunks(n_tracks, n_chunks=5, samples=32, seed=0):
    rng = np.random.default_rng(seed)
    return {f"t{i}": rng.uniform(-1, 1, (n_chunks, samples)).astype(np.float32) for i in range(n_tracks)}


@pytest.mark.parametrize("n_tracks, batch_tracks", [(7, 1), (7, 2), (7, 3), (7, 7), (6, 3), (6, 4), (5, 16)])
def test_predict_tracks_scores_every_track_as_the_mean_of_its_chunk_probabilities(n_tracks, batch_tracks):
    chunks = _stub_chunks(n_tracks)
    ids = list(chunks)
    double = lambda x: 2 * x  # noqa: E731  (the featurizer runs before the model)
    got = predict_tracks(ChunkLogits(), double, chunks.__getitem__, ids, batch_tracks=batch_tracks,
                            progress=False)
    # Independent reference, per track in float64: mean over chunks of sigmoid(logits).
    logits = {t: 12.0 * c[:, :len(TAGS)].astype(np.float64) for t, c in chunks.items()}
    want = np.stack([(1 / (1 + np.exp(-logits[t]))).mean(0) for t in ids])
    assert got.shape == (n_tracks, len(TAGS))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The stub separates the rules a bug could swap in: each is off by far more than the tolerance.
    mean_logit = np.stack([1 / (1 + np.exp(-logits[t].mean(0))) for t in ids])
    first_chunk = np.stack([1 / (1 + np.exp(-logits[t][0])) for t in ids])
    shifted = np.roll(want, 1, axis=0)                # a batch's tracks given their neighbours' scores
    for wrong in (mean_logit, first_chunk, shifted):
        assert np.abs(wrong - want).max() > 0.1


@pytest.mark.gpu
def test_predict_tracks_on_cuda_matches_cpu(trained):
    """On CUDA the model runs under bf16 autocast: same scores as on the CPU within bf16 rounding."""
    cfg, loaders, _ = trained
    model, _ = ev.load_model(str(Path(cfg.out) / "best.pt"))
    ids = loaders.ids[:7]
    chunks_of = lambda t: chunks_from_wave(loaders.audio[ids.index(t)], 4, CROP)  # noqa: E731
    cpu = ev.predict_tracks(model, lambda x: x, chunks_of, ids, batch_tracks=3, progress=False)
    gpu = ev.predict_tracks(model.to("cuda"), lambda x: x, chunks_of, ids, batch_tracks=3, device="cuda",
                            progress=False)
    assert gpu.shape == cpu.shape == (7, len(TAGS))
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)


def test_predict_tracks_with_no_tracks():
    assert predict_tracks(ChunkLogits(), lambda x: x, {}.__getitem__, [], progress=False).shape[0] == 0


def _entry(stage, rng, y_own, y_common, tags, cats):
    scores = np.clip(y_own * 0.5 + rng.random(y_own.shape) * 0.7, 0, 1)
    return ev.Entry(name=f"Stage {ev.ROMAN[stage]} mel", model="mel", stage=stage, task=ev.ROMAN[stage], tags=tags, categories=cats,
                    track_ids=list(range(len(y_own))), scores=scores,
                    truths={"own": y_own, "stage1": y_common, "latent": y_common})


def test_thesis_tables(tmp_path):
    rng = np.random.default_rng(0)
    tags, cats = ("rock", "pop", "sad", "80s"), ("genre", "genre", "emotion", "numeric")
    base = (rng.random((40, 4)) < 0.3).astype(np.uint8)
    base[:, 3] = 0                       # '80s' has no positive in the common truth: undefined there
    entries = []
    for stage in (1, 2, 3):
        own = base.copy()
        own[rng.random(own.shape) < 0.1 * (stage - 1)] = 1   # later stages relabel with more positives
        entries.append(_entry(stage, rng, own, base, tags, cats))
    scored = ev.score_entries(entries)
    t = ev.tables(scored)
    header, rows = t["overall"]
    assert header[:3] == ["model", "stage", "truth"] and len(rows) == 9
    assert [r[1] for r in rows[:3]] == ["I", "II", "III"]
    common = [r for r in rows if r[2] == "stage1"]
    assert all(r[-1] == "3/4" for r in common)            # the undefined tag is out of the macro mean
    ch, crows = t["by_category"]
    assert ch == ["model", "truth", "category", "ROC-AUC Stage I", "ROC-AUC Stage II", "ROC-AUC Stage III",
                  "PR-AUC Stage I", "PR-AUC Stage II", "PR-AUC Stage III"]
    numeric_common = next(r for r in crows if r[1] == "stage1" and r[2] == "numeric")
    assert numeric_common[3:] == ["undefined"] * 6
    genre_own = next(r for r in crows if r[1] == "own" and r[2] == "genre")
    s = score(entries[1].truths["own"], entries[1].scores, tags)
    assert genre_own[4] == f"{100 * np.mean(s.roc_auc[:2]):.2f}"
    ev.write_report(scored, tmp_path)
    md = (tmp_path / "overall.md").read_text()
    assert md.startswith("| model | stage | truth | macro ROC-AUC") and md.count("\n") == 11
    # the written tables are exactly tables(): Markdown rows and separator, and CSV
    assert md.splitlines() == ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(r) + " |" for r in rows]
    assert header[3:] == ["macro ROC-AUC", "macro PR-AUC", "micro ROC-AUC", "micro PR-AUC", "defined tags"]
    assert list(csv.reader(open(tmp_path / "overall.csv", newline=""))) == [header, *rows]
    assert (tmp_path / "overall.csv").read_text().count("\n") == len(rows) + 1
    assert (tmp_path / "by_category.csv").read_text().count("\n") == len(crows) + 1
    for truth in ("own", "stage1", "latent"):
        assert (tmp_path / f"per_tag_roc_auc_{truth}.png").exists()


def test_load_truth_long_and_wide(tmp_path):
    pa_long = pa.table({"track_id": ["x", "x", "y"], "tag": ["rock", "sad", "jazz"]})
    write_parquet(pa_long, tmp_path / "long.parquet")
    y = ev.load_truth(tmp_path / "long.parquet", TAGS, ["y", "x"])
    np.testing.assert_array_equal(y, [[0, 0, 0, 0, 1], [1, 1, 0, 0, 0]])
    lists = pa.table({"track_id": ["x", "y"], "tags": [["rock", "sad", "not selected"], []]})
    write_parquet(lists, tmp_path / "latent.parquet")       # the demo's latent.parquet layout
    np.testing.assert_array_equal(ev.load_truth(tmp_path / "latent.parquet", TAGS, ["x", "y"]),
                                  [[1, 1, 0, 0, 0], [0] * 5])
    with pytest.raises(ValueError, match="missing, e.g. track 'z'"):
        ev.load_truth(tmp_path / "long.parquet", TAGS, ["z"])
    # wide: a column per tag (the labels_stage*.parquet layout), other columns and orders ignored
    wide = pa.table({"track_id": ["x", "y", "w"], "split": ["test"] * 3,
                     **{t: pa.array([j % 2, 1, 0], pa.uint8()) for j, t in enumerate(reversed(TAGS))}})
    write_parquet(wide, tmp_path / "wide.parquet")
    np.testing.assert_array_equal(ev.load_truth(tmp_path / "wide.parquet", TAGS, ["y", "x"]),
                                  [[1] * 5, [j % 2 for j in reversed(range(len(TAGS)))]])


def test_predict_files_reports_unreadable(trained, tmp_path, capsys):
    cfg, loaders, _ = trained
    rng = np.random.default_rng(0)
    good = []
    for i in range(2):
        p = tmp_path / f"song{i}.wav"
        # 22.05 kHz stereo: predict must downmix and resample to 16 kHz.
        wave = np.stack([loaders.audio[i]] * 2, axis=1)
        sf.write(p, np.interp(np.arange(0, len(wave), 16000 / 22050), np.arange(len(wave)), wave[:, 0]), 22050)
        good.append(p)
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"not audio at all" * 10)
    missing = tmp_path / "missing.flac"
    ckp = str(Path(cfg.out) / "best.pt")
    results = predict_files([good[0], bad, good[1], missing], ckp, top_k=3, n_chunks=4)
    assert [r["file"] for r in results] == [str(good[0]), str(bad), str(good[1]), str(missing)]
    assert [bool(r["error"]) for r in results] == [False, True, False, True]
    top = results[0]["tags"]
    assert len(top) == 3 and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert {t for t, _ in top} <= set(TAGS)
    rows = list(csv.DictReader(format_results(results, "csv").splitlines()))
    assert len(rows) == 3 + 1 + 3 + 1
    js = json.loads(format_results(results, "json"))
    assert js[1]["error"] and js[0]["tags"][0]["tag"] == top[0][0]

    capsys.readouterr()
    assert predict_main([str(tmp_path), "--checkpoint", ckp, "--n-chunks", "2", "--format", "json"]) == 0
    out = capsys.readouterr()
    assert len(json.loads(out.out)) == 3 and "read 3 = predicted 2 + failed 1" in out.err
    # what the checkpoint learnt from is said once, with its labels file
    assert out.err.count(f"labels {cfg.labels}") == 1 and "Stage " in out.err
    assert "broken.mp3: refused (decode_error" in out.err


def test_chunks_from_wave():
    w = np.arange(10, dtype=np.float32)
    c = chunks_from_wave(w, 3, 4)
    np.testing.assert_array_equal(c[:, 0], [0, 3, 6])
    assert chunks_from_wave(w[:2], 2, 4).tolist() == [[0, 1, 0, 0]] * 2
    assert chunks_from_wave(w, 1, 4)[0, 0] == 3          # one chunk: the centre crop


def test_chunk_starts_floor_not_round():
    """Evaluation and prediction place chunks by one rule: floor(i * span / (n - 1)); rounding
    would put the middle chunk of a span-5 track at 2 (half to even) or 3, of span 15 at 8."""
    assert chunk_starts(9, 3, 4).tolist() == [0, 2, 5]
    assert chunk_starts(19, 3, 4).tolist() == [0, 7, 15]
    assert chunk_starts(3, 4, 4).tolist() == [0, 0, 0, 0]


def test_chunk_starts_arguments():
    assert chunk_starts(5, 2, 1).tolist() == [0, 4]                  # a 1-sample crop is a valid crop
    for n_chunks, crop in ((0, 4), (3, 0)):
        with pytest.raises(ValueError, match="n_chunks and crop must be >= 1"):
            chunk_starts(10, n_chunks, crop)


def test_predict_tracks_shows_progress_only_when_asked(capfd):
    chunks = _stub_chunks(3)
    predict_tracks(ChunkLogits(), lambda x: x, chunks.__getitem__, list(chunks), batch_tracks=1, desc="scoring")
    assert "scoring" in capfd.readouterr().err                       # long work shows progress by default
    predict_tracks(ChunkLogits(), lambda x: x, chunks.__getitem__, list(chunks), batch_tracks=1, progress=False)
    assert capfd.readouterr().err == ""
