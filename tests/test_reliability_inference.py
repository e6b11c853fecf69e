"""Reliability of inference (`tagfold predict`, training/inference.py) on hostile audio:

- one decoding path: every hostile file predict refuses, it refuses with the reason prep-audio gives
  (NaN/Inf, empty, truncated header ...), and nothing refused ever gets a score;
- JSON output is strict (no NaN);
- windowed decoding reads only the chunks' windows, yet gives the chunks a whole-file decode gives
  (WAV, FLAC, OGG by seeking; MP3 streamed), and a 20-minute 48 kHz stereo WAV costs the process a
  few tens of MiB, not the ~0.5 GiB a whole decode needs;
- a FIFO is refused, not waited on; a folder's dangling links, loops, FIFOs and directories named
  like audio are listed as failed and counted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings, strategies as st

import hostile
from tagfold.pipeline.decode import Rejected, decode_mono_16k
from tagfold.training.inference import chunks_from_wave, file_chunks

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _code(reason: str) -> str:
    return reason.split(":")[0]


def test_predict_refuses_what_prep_refuses(tmp_path):
    """Each hostile file: decoded whole (prep) and by windows (predict), the verdict is the same."""
    files = hostile.hostile_audio_set(tmp_path)
    verdicts = {}
    for name, path in files.items():
        try:
            decode_mono_16k(path, max_seconds=None if name != "ten_hours" else 1200)
            whole = "ok"
        except Rejected as e:
            whole = _code(str(e))
        try:
            file_chunks(path, 16, 59049)
            windows = "ok"
        except Rejected as e:
            windows = _code(str(e))
        verdicts[name] = windows
        if name != "ten_hours":   # prep refuses it by --max-seconds; predict reads its windows only
            assert windows == whole, (name, whole, windows)
    assert verdicts["nan"] == verdicts["inf"] == "non_finite"
    assert verdicts["zero"] == "empty_file"
    assert verdicts["random_mp3"] == verdicts["text_mp3"] == "decode_error"
    assert verdicts["good_a"] == verdicts["good_b"] == verdicts["truncated"] == verdicts["one_sample"] == "ok"


def test_truncated_wav_chunks_stay_inside_the_real_audio(tmp_path):
    """A header that overstates the length must not place chunks in silence past the real end."""
    path = hostile.wav_truncated(tmp_path)
    whole, _, flags = decode_mono_16k(path)
    got = file_chunks(path, 4, 4000)
    np.testing.assert_allclose(got, chunks_from_wave(whole, 4, 4000), atol=1e-4)
    assert np.abs(got[-1]).max() > 0.1


def _write(path: Path, seconds: float, sr: int, channels: int, fmt: str, seed: int) -> Path:
    x = np.stack([hostile.tone(seconds, sr, 220 + 110 * c, seed + c) for c in range(channels)], 1)
    sf.write(str(path), x, sr, format=fmt, **({"subtype": "PCM_16"} if fmt in ("WAV", "FLAC") else {}))
    return path


@pytest.mark.parametrize("fmt, sr, channels", [("WAV", 44100, 2), ("FLAC", 48000, 1), ("OGG", 22050, 2),
                                                ("WAV", 16000, 1), ("WAV", 8000, 1)])
def test_windowed_decode_equals_whole_decode(tmp_path, fmt, sr, channels):
    path = _write(tmp_path / f"x.{fmt.lower()}", 9.0, sr, channels, fmt, seed=1)
    whole, _, _ = decode_mono_16k(path)
    for n_chunks, crop in ((16, 16000), (3, 59049), (1, 5000), (200, 333)):
        np.testing.assert_allclose(file_chunks(path, n_chunks, crop), chunks_from_wave(whole, n_chunks, crop),
                                   atol=2e-4, err_msg=f"{fmt} {sr} n={n_chunks} crop={crop}")


def test_windowed_decode_of_real_mp3_is_streamed_and_equal(shared):
    """A real Emotify clip (MP3, 22.05 kHz): streamed block by block, same chunks as a whole decode."""
    path = shared / "emotify" / "audio" / "emotify-003.mp3"
    whole, _, _ = decode_mono_16k(path)
    np.testing.assert_allclose(file_chunks(path, 16, 59049), chunks_from_wave(whole, 16, 59049), atol=2e-4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.integers(1, 30_000), sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
       n_chunks=st.integers(1, 20), crop=st.integers(1, 9000))
def test_windowed_decode_property(tmp_path, frames, sr, n_chunks, crop):
    """Any length, rate, chunk count and crop (shorter or longer than the file): windows == whole,
    or both refuse the file with the same reason."""
    x = hostile.tone(frames / sr + 1e-9, sr, 300, seed=frames)[:frames]
    x[0] = 0.5                      # never silent, even for one frame
    path = tmp_path / f"p{frames}_{sr}.wav"
    sf.write(str(path), x, sr, subtype="FLOAT")
    try:
        whole, _, _ = decode_mono_16k(path)
    except Rejected as e:     # e.g. one frame at 44.1 kHz is no sample at 16 kHz: both refuse it alike
        with pytest.raises(Rejected, match=_code(str(e))):
            file_chunks(path, n_chunks, crop)
        return
    np.testing.assert_allclose(file_chunks(path, n_chunks, crop), chunks_from_wave(whole, n_chunks, crop),
                               atol=2e-4)


# The child reports how much its resident memory grew while it cut the chunks of a long file.
MEASURE = """
import sys
from tagfold.training.inference import file_chunks
def rss_kib(key):
    with open('/proc/self/status') as f:
        return int(next(line.split()[1] for line in f if line.startswith(key)))
file_chunks(sys.argv[2], 16, 59049)                  # imports and first-use allocations
before = rss_kib('VmRSS:')
chunks = file_chunks(sys.argv[1], 16, 59049)
print(chunks.shape, (rss_kib('VmHWM:') - before) // 1024)
"""


def test_predict_memory_is_bounded_by_the_crops(tmp_path):
    """20 minutes of 48 kHz stereo (a whole decode: 460 MB of float32 frames + 230 MB mono, more
    with resampling) must cost about the windows: 16 x ~185k frames x 2 channels x 4 B ~ 24 MB."""
    sr, seconds = 48000, 20 * 60
    long_wav = hostile.long_wav(tmp_path / "long.wav", seconds, sr, channels=2)
    assert sf.info(str(long_wav)).duration == seconds
    short = _write(tmp_path / "short.wav", 5.0, sr, 2, "WAV", seed=0)
    r = subprocess.run([sys.executable, "-c", MEASURE, str(long_wav), str(short)], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    shape, growth_mib = r.stdout.rsplit(")", 1)
    print(f"predict, 20 min of 48 kHz stereo WAV, 16 chunks: resident memory grew {int(growth_mib)} MiB")
    assert shape == "(16, 59049" and int(growth_mib) < 64, r.stdout


# ----------------------------------------------------------------------------- files and folders

def _predict(checkpoint: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagfold.cli", "predict", *args, "--checkpoint", str(checkpoint)],
                          env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real (tiny, untrained) wave checkpoint saved the way `tagfold train` saves it."""
    import dataclasses

    import torch

    from tagfold.training import checkpoint as ckpt
    from tagfold.training import models
    from tagfold.training.train import TrainConfig
    cfg = dataclasses.replace(TrainConfig(), model="wave", input="wave", width=0.0625, crop_samples=6561)
    torch.manual_seed(0)
    model = models.build("wave", n_tags=3, width=0.0625)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    ckpt.save({"config": dataclasses.asdict(cfg), "model": model.state_dict(), "tags": ["rock", "sad", "80s"],
               "categories": ["genre", "emotion", "number"], "epoch": 1}, path)
    return path


def test_predict_strict_json_and_same_refusals(checkpoint, tmp_path):
    files = hostile.hostile_audio_set(tmp_path / "audio")
    r = _predict(checkpoint, str(files["good_a"]), str(files["nan"]), str(files["inf"]), str(files["zero"]),
                 "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert [bool(o["error"]) for o in out] == [False, True, True, True]
    assert out[1]["error"].startswith("non_finite") and out[3]["error"] == "empty_file"
    assert out[1]["tags"] == [] and all(np.isfinite(t["score"]) for t in out[0]["tags"])
    assert "read 4 = predicted 1 + failed 3" in r.stderr and "Traceback" not in r.stderr


def test_predict_refuses_a_fifo_without_waiting(checkpoint, tmp_path):
    fifo = hostile.fifo(tmp_path)
    r = _predict(checkpoint, str(fifo), timeout=60)     # a hang would time out and fail the test
    assert r.returncode == 1 and "not_regular_file: a named pipe (FIFO)" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_folder_scan_lists_every_entry_named_like_audio(checkpoint, tmp_path):
    d = tmp_path / "music"
    (d / "sub").mkdir(parents=True)
    hostile.wav_ok(d / "good.wav", 1.0)
    sf.write(str(d / "sub" / "good2.flac"), hostile.tone(1.0), hostile.SR)
    hostile.dangling_link(d, "dangling.mp3")
    hostile.symlink_loop(d, "loop_a.wav")                       # and loop_a.wav.b, not named like audio
    (d / "album.flac").mkdir()                                  # a directory named like audio
    hostile.fifo(d, "pipe.ogg")
    (d / "linked_dir.wav").symlink_to(d / "sub")
    (d / "notes.txt").write_text("not audio, not named like audio: ignored")
    r = _predict(checkpoint, str(d), "--format", "json")
    assert r.returncode == 0, r.stderr[-2000:]
    out = {Path(o["file"]).name: o["error"] for o in json.loads(r.stdout)}
    assert out == {
        "good.wav": None, "good2.flac": None, "dangling.mp3": "dangling_link",
        "loop_a.wav": "symlink_loop: too many levels of symbolic links",
        "album.flac": "not_regular_file: a directory", "pipe.ogg": "not_regular_file: a named pipe (FIFO)",
        "linked_dir.wav": "not_regular_file: a directory"}
    assert "read 7 = predicted 2 + failed 5" in r.stderr and "Traceback" not in r.stderr


def test_predict_sees_the_chunks_evaluate_sees(shared, tmp_path):
    """The same real clip, prepped (what evaluate reads) and read from its MP3 (what predict reads):
    the same 16 chunks, sample for sample (float32 prep, up to the resampler's edge effects)."""
    from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
    from tagfold.training.loaders import eval_chunks
    src = shared / "emotify" / "audio" / "emotify-004.mp3"
    manifest = hostile.manifest(tmp_path / "m.parquet", src.parent, [("emotify-004", src.name)])
    prep_audio(PrepConfig(str(manifest), str(tmp_path / "prep"), dtype="float32"), progress=False)
    evaluated = eval_chunks(tmp_path / "prep", "emotify-004", n_chunks=16, crop_samples=59049)
    predicted = file_chunks(src, 16, 59049)
    np.testing.assert_allclose(predicted, evaluated, atol=2e-4)
    assert np.abs(evaluated).max() > 0.05
