"""`tagfold predict`: top-k tags with scores for audio files.

    tagfold predict song.mp3 folder/ --checkpoint runs/s2/best.pt [--top-k 5] [--format csv|json]

Files are decoded with soundfile (MP3/FLAC/OGG/WAV), down-mixed, resampled to 16 kHz and cut
into `n_chunks` evenly spaced crops whose predictions are averaged, as in evaluation. A file
that cannot be read is reported on stderr and in the output (`error`), and the run goes on;
the summary line says read = predicted + failed. Exit status 1 only when every file failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"}


def list_inputs(items: list[str]) -> list[Path]:
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files.append(p)      # a missing file is reported when it is read, not here
    return list(dict.fromkeys(files))    # a file named twice is predicted once


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    import soundfile as sf
    import soxr

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.size == 0:
        raise ValueError("no samples")
    mono = data.mean(axis=1)
    return soxr.resample(mono, rate, sr).astype(np.float32) if rate != sr else mono


def evenly_spaced_chunks(wave: np.ndarray, n_chunks: int, crop: int) -> np.ndarray:
    """[n_chunks, crop] crops evenly spaced from start to end; short audio is zero-padded."""
    if len(wave) < crop:
        wave = np.pad(wave, (0, crop - len(wave)))
    starts = np.linspace(0, len(wave) - crop, n_chunks).round().astype(np.int64)
    return np.stack([wave[s:s + crop] for s in starts])


def predict_files(paths: list[Path], checkpoint: str, *, top_k=5, n_chunks=16, batch_files=8,
                  device="cpu") -> list[dict]:
    from tqdm import tqdm

    from tagfold.training.evaluate import featurizer, load_model, predict_tracks

    model, state = load_model(checkpoint, device)
    cfg, tags = state["config"], state["tags"]
    featurize = featurizer(cfg["input"], device)
    results = []
    # Decode one batch at a time: a folder of thousands of files never sits in memory at once.
    with tqdm(total=len(paths), desc="predict", unit="file", file=sys.stderr) as bar:
        for start in range(0, len(paths), batch_files):
            readable, waves = [], {}
            for p in paths[start:start + batch_files]:
                try:
                    waves[str(p)] = evenly_spaced_chunks(load_audio(p), n_chunks, cfg["crop_samples"])
                    readable.append(str(p))
                except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, OSError...
                    msg = f"{type(e).__name__}: {e}"
                    bar.write(f"tagfold predict: {p}: unreadable, skipped ({msg})", file=sys.stderr)
                    results.append({"file": str(p), "error": msg, "tags": []})
            if readable:
                scores = predict_tracks(model, featurize, waves.pop, readable, batch_tracks=batch_files,
                                        device=device, progress=False)
                for f, s in zip(readable, scores):
                    top = np.argsort(-s, kind="stable")[:top_k]
                    results.append({"file": f, "error": "", "tags": [(tags[j], float(s[j])) for j in top]})
            bar.update(len(paths[start:start + batch_files]))
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(results, key=lambda r: order[r["file"]])


def format_results(results: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"file": r["file"], "error": r["error"] or None,
                            "tags": [{"tag": t, "score": round(s, 5)} for t, s in r["tags"]]}
                           for r in results], indent=2) + "\n"
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "rank", "tag", "score", "error"])
    for r in results:
        if r["error"]:
            w.writerow([r["file"], "", "", "", r["error"]])
        for rank, (t, s) in enumerate(r["tags"], 1):
            w.writerow([r["file"], rank, t, f"{s:.5f}", ""])
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tagfold predict", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--n-chunks", type=int, default=16)
    p.add_argument("--batch-files", type=int, default=8)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", default="", help="write here (atomically) instead of stdout")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    if a.top_k < 1 or a.n_chunks < 1:
        p.error("--top-k and --n-chunks must be >= 1")
    paths = list_inputs(a.inputs)
    if not paths:
        print("tagfold predict: no audio files found", file=sys.stderr)
        return 1
    from tagfold.training.checkpoint import CheckpointError
    try:
        results = predict_files(paths, a.checkpoint, top_k=a.top_k, n_chunks=a.n_chunks,
                                batch_files=a.batch_files, device=a.device)
    except CheckpointError as e:
        print(f"tagfold predict: {e}", file=sys.stderr)
        return 1
    text = format_results(results, a.format)
    if a.out:
        from tagfold.pipeline.io import write_text
        write_text(text, a.out)
    else:
        sys.stdout.write(text)
    failed = sum(1 for r in results if r["error"])
    print(f"tagfold predict: read {len(results)} = predicted {len(results) - failed} + failed {failed}",
          file=sys.stderr)
    return 1 if failed == len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
