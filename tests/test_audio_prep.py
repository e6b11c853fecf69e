import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tagfold.pipeline.audio.audio_prep import PrepConfig, decode_mono_16k, main, prep_audio
from tagfold.pipeline.io import write_parquet
from tagfold.pipeline.audio.manifest import ManifestConfig, make_table

REAL = ["emotify-002", "emotify-003", "emotify-200"]


def _hostile(d, shared):
    """Real clips plus every kind of bad input the issue names; returns (ids, paths)."""
    rng = np.random.default_rng(0)
    mp3 = (shared / "emotify" / "audio" / "emotify-002.mp3").read_bytes()
    (d / "trunc.mp3").write_bytes(mp3[: len(mp3) // 3])
    (d / "trunc_header.mp3").write_bytes(mp3[:300])
    (d / "empty.mp3").write_bytes(b"")
    (d / "text.mp3").write_text("this is not audio\n" * 50)
    sf.write(d / "silence.wav", np.zeros(16000 * 5, np.float32), 16000)
    sf.write(d / "short.wav", 0.3 * rng.standard_normal(16000 * 3).astype(np.float32), 16000)
    sf.write(d / "st8k.wav", 0.3 * rng.standard_normal((8000 * 5, 2)).astype(np.float32), 8000)
    sf.write(d / "ch6.flac", 0.3 * rng.standard_normal((48000 * 4, 6)).astype(np.float32), 48000)
    sf.write(d / "vorbis.ogg", 0.3 * rng.standard_normal((44100 * 4, 2)).astype(np.float32), 44100)
    names = ["trunc.mp3", "trunc_header.mp3", "empty.mp3", "text.mp3", "silence.wav", "short.wav",
             "st8k.wav", "ch6.flac", "vorbis.ogg", "missing.wav"]
    ids = REAL + [n.split(".")[0] for n in names]
    paths = [str(shared / "emotify" / "audio" / f"{t}.mp3") for t in REAL] + [str(d / n) for n in names]
    return ids, paths


def _band_db(x, rate, lo, hi):
    """Energy of x between lo and hi Hz, in dB, per second of audio (so rates compare)."""
    f = np.fft.rfftfreq(len(x), 1 / rate)
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2 / len(x) / rate
    return 10 * np.log10(power[(f >= lo) & (f < hi)].sum())


def test_decode_resamples_real_clip_with_antialiasing(shared):
    path = shared / "emotify" / "audio" / "emotify-002.mp3"
    x, sr, _ = decode_mono_16k(path)
    assert sr == 22050 and x.dtype == np.float32 and abs(len(x) / 16000 - 30) < 0.2
    # The spectrum below the new Nyquist is the original's: every band within 0.3 dB up to 7.5 kHz
    # (a resampler that droops or aliases, e.g. plain linear interpolation, is off by ~1 dB at 4-7.5 kHz),
    # and the band just under 8 kHz is cut by the anti-aliasing filter's transition (~5 dB here).
    orig, rate = sf.read(path, dtype="float32", always_2d=True)
    orig = orig.mean(axis=1)
    for lo, hi in ((0, 1000), (1000, 4000), (4000, 6000), (6000, 7500)):
        assert abs(_band_db(x, 16000, lo, hi) - _band_db(orig, rate, lo, hi)) < 0.3, (lo, hi)
    assert _band_db(x, 16000, 7500, 8000) < _band_db(orig, rate, 7500, 8000) - 2


def test_resampled_length_is_what_decoding_returns(shared, tmp_path):
    """The chunk plan of `predict` reads this length before decoding: it must be the decoded one."""
    from tagfold.pipeline.decode import resampled_length
    sf.write(tmp_path / "tone.wav", np.sin(np.arange(44100 * 2 + 7) / 5).astype(np.float32), 44100)
    for path in (shared / "emotify" / "audio" / "emotify-002.mp3", tmp_path / "tone.wav"):
        x, sr, _ = decode_mono_16k(path)
        assert len(x) == resampled_length(sf.info(str(path)).frames, sr), path


def test_decode_refuses_a_file_with_no_frames(tmp_path):
    from tagfold.pipeline.decode import Rejected
    sf.write(tmp_path / "none.wav", np.zeros((0, 1), np.float32), 16000)   # a valid header, no audio
    with pytest.raises(Rejected, match="^no_audio$"):
        decode_mono_16k(tmp_path / "none.wav")


def test_antialiasing(tmp_path):
    # 44.1 -> 16 kHz: a 3 kHz tone is kept at its level; an 11 kHz one (above the new Nyquist) is
    # removed, not folded back to 16 - 11 = 5 kHz. Separate thresholds: plain np.interp keeps rms
    # 0.29 of the 11 kHz tone, a real anti-aliasing resampler ~1e-5.
    t = np.arange(44100 * 2) / 44100
    full = 0.5 / np.sqrt(2)                                  # rms of a 0.5-amplitude sine
    for f, kept in ((3000.0, True), (11000.0, False)):
        sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * f * t).astype(np.float32), 44100)
        x, _, _ = decode_mono_16k(tmp_path / "tone.wav")
        rms = np.sqrt(np.mean(x[4000:-4000] ** 2))
        if kept:
            assert abs(rms - full) < 0.01 * full, (f, rms)
        else:
            assert rms < 1e-3, (f, rms)
    # Both tones at once: the spectrum has the 3 kHz line and nothing else within 60 dB of it.
    sf.write(tmp_path / "two.wav", (0.4 * np.sin(2 * np.pi * 3000 * t) + 0.4 * np.sin(2 * np.pi * 11000 * t))
             .astype(np.float32), 44100)
    x, _, _ = decode_mono_16k(tmp_path / "two.wav")
    x = x[4000:-4000]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    line = spectrum[np.abs(freqs - 3000) < 20].max()
    rest = spectrum[np.abs(freqs - 3000) > 100].max()
    assert 20 * np.log10(line / rest) > 60, 20 * np.log10(line / rest)
    alias = spectrum[np.abs(freqs - 5000) < 20].max()
    assert 20 * np.log10(line / alias) > 60


def test_prep_hostile_inputs_resume_and_shards(shared, tmp_path, capsys):
    ids, paths = _hostile(tmp_path, shared)
    man = tmp_path / "manifest.parquet"
    write_parquet(make_table(ids, paths, None, tmp_path, allow_outside_root=True), man,
                  ManifestConfig("test", str(tmp_path), allow_outside_root=True))
    out = tmp_path / "prep"
    # two array-job halves, then a full run that finds everything done
    for k in (0, 1):
        assert main(["--manifest", str(man), "--out", str(out), "--format", "both",
                     "--shard", f"{k}/2", "--tracks-per-shard", "3", "--allow-outside-root"]) == 0
    printed = capsys.readouterr().out
    assert f"read {len(ids)} = kept 8 + rejected 5" in printed
    index, rejects = pq.read_table(out / "index.parquet"), pq.read_table(out / "rejects.parquet")
    reasons = dict(zip(rejects.column("track_id").to_pylist(), rejects.column("reason").to_pylist()))
    assert reasons["empty"] == "empty_file" and reasons["silence"] == "silent"
    assert reasons["missing"] == "missing_file" and reasons["text"].startswith("decode_error")
    assert reasons["trunc_header"].startswith(("decode_error", "no_audio"))
    kept = dict(zip(index.column("track_id").to_pylist(), index.to_pylist()))
    assert set(kept) == set(ids) - set(reasons)
    assert kept["short"]["flag"] == "short" and kept["st8k"]["flag"] == "upsampled"
    assert abs(kept["ch6"]["length"] - 4 * 16000) <= 1 and abs(kept["st8k"]["length"] - 5 * 16000) <= 1
    assert 5 * 16000 < kept["trunc"]["length"] < 30 * 16000  # partial decode kept at its real length
    assert kept["trunc"]["flag"] == "truncated" and kept["emotify-002"]["flag"] is None
    row = kept["emotify-002"]
    shard = np.load(out / f"shard-{row['shard']:05d}.npy", mmap_mode="r")
    ref, _, _ = decode_mono_16k(paths[0])
    got = np.asarray(shard[row["offset"]:row["offset"] + row["length"]], np.float32)
    assert shard.dtype == np.float16 and np.abs(got - ref).max() < 2e-3
    flac, sr = sf.read(out / "flac" / "emotify-002.flac", dtype="float32")
    assert sr == 16000 and np.abs(flac - ref).max() < 1e-4

    # resume: drop one finished part (as if killed before its index landed) and leave a stale temp
    parts = sorted((out / "parts").glob("*.index.parquet"))
    parts[0].unlink()
    (out / ".shard-00000.npy.junk.tmp").write_bytes(b"half")
    s = prep_audio(PrepConfig(str(man), str(out), "both", tracks_per_shard=3, allow_outside_root=True), progress=False)
    assert s["read"] == len(ids) and s["kept"] == 8 and s["this_run_kept"] + s["this_run_rejected"] == 3
    assert pq.read_table(out / "index.parquet").sort_by("track_id").equals(index.sort_by("track_id"))


def _manifest(tmp_path, names):
    man = tmp_path / "m.parquet"
    write_parquet(make_table(names, [f"{n}.wav" for n in names], None, tmp_path), man,
                  ManifestConfig("test", str(tmp_path)))
    return man


def test_nonfinite_overlong_and_outside_root(tmp_path):
    rng = np.random.default_rng(1)
    x = 0.3 * rng.standard_normal(16000 * 3).astype(np.float32)
    sf.write(tmp_path / "ok.wav", x, 16000, subtype="FLOAT")
    bad = x.copy()
    bad[100:110] = np.nan
    bad[200] = np.inf
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    sf.write(tmp_path / "long.wav", np.tile(x, 4), 16000)
    man = _manifest(tmp_path, ["ok", "nan", "long"])
    s = prep_audio(PrepConfig(str(man), str(tmp_path / "p"), max_seconds=10.0), progress=False)
    reasons = dict(zip(*pq.read_table(tmp_path / "p" / "rejects.parquet").select(["track_id", "reason"])
                        .to_pydict().values()))
    assert s["kept"] == 1 and s["read"] == 3
    assert reasons["nan"] == "non_finite: 11 non-finite (NaN/Inf) samples"
    assert reasons["long"] == "too_long: 12 s > --max-seconds 10"
    # same output folder, other settings: refused instead of mixing incompatible parts
    with pytest.raises(ValueError, match="max_seconds: 10.0 -> 20.0"):
        prep_audio(PrepConfig(str(man), str(tmp_path / "p"), max_seconds=20.0), progress=False)


def test_second_run_on_locked_out_refuses(tmp_path, capsys):
    from tagfold.pipeline.io import output_lock
    sf.write(tmp_path / "ok.wav", 0.1 * np.ones(16000, np.float32), 16000)
    man = _manifest(tmp_path, ["ok"])
    out = tmp_path / "p"
    with output_lock(out):  # stands for a running prep of the same --out
        from tagfold import cli
        from tagfold.pipeline.errors import EXIT_LOCKED
        assert cli.main(["prep-audio", "--manifest", str(man), "--out", str(out), "--quiet"]) == EXIT_LOCKED
        assert "in use by another tagfold run" in capsys.readouterr().err
        # another array job (its own lock) may share the folder
        assert main(["--manifest", str(man), "--out", str(out), "--shard", "0/2", "--quiet"]) == 0
    assert pq.read_table(out / "index.parquet").column("track_id").to_pylist() == ["ok"]


def test_workers_do_not_change_the_output(shared, tmp_path):
    """Parallel prep (spawned processes) writes the same shards and index as one process."""
    ids = ["emotify-004", "emotify-005", "emotify-006"]
    root = shared / "emotify"
    man = tmp_path / "m.parquet"
    write_parquet(make_table(ids, [f"audio/{t}.mp3" for t in ids], None, root), man, ManifestConfig("test", str(root)))
    for w in (1, 2):
        prep_audio(PrepConfig(str(man), str(tmp_path / f"w{w}"), workers=w, tracks_per_shard=1), progress=False)
    a, b = tmp_path / "w1", tmp_path / "w2"
    assert pq.read_table(a / "index.parquet").equals(pq.read_table(b / "index.parquet"))
    for g in range(3):
        assert np.array_equal(np.load(a / f"shard-{g:05d}.npy"), np.load(b / f"shard-{g:05d}.npy"))
