"""`tagfold predict`: top-k tags with scores for audio files.

    tagfold predict song.mp3 folder/ --checkpoint runs/s2/best.pt [--top-k 5] [--format csv|json]

Each file is cut into `n_chunks` evenly spaced 16 kHz crops whose predictions are averaged, by the
inference path `tagfold evaluate` uses (training/inference.py): the chunks lie where evaluation puts
them, and only their windows are decoded (seeking in WAV/FLAC/AIFF, MP3 and Ogg streamed), so a
one-hour file needs no more memory than a short one. A file that cannot be used is refused with
prep-audio's reasons (missing_file, not_regular_file for a FIFO or directory, empty_file,
decode_error, non_finite for NaN/Inf samples, silent, ...), reported on stderr and in the output
(`error`), and the run goes on. In a folder every entry named like audio is accounted for: dangling
links, symlink loops and directories named like audio are listed as failed, never dropped.
The summary line says read = predicted + failed. Exit status 1 only when every file failed.
JSON output is strict (never NaN).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"}


def list_inputs(items: list[str]) -> list[Path]:
    """Files to predict, in order: named files as given (refused later with a reason if unusable),
    folders scanned recursively (symlinked folders are not followed, so a loop cannot recur) for
    every entry named like audio, whatever it is; each is checked when it is decoded."""
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = []
            for folder, dirs, names in os.walk(p, followlinks=False):
                # a directory named like audio, or a symlink to one, is listed and refused, not dropped
                found += [Path(folder) / n for n in dirs + names if Path(n).suffix.lower() in AUDIO_SUFFIXES]
            files += sorted(found)
        else:
            files.append(p)      # a missing file is reported when it is read, not here
    return list(dict.fromkeys(files))    # a file named twice is predicted once


def training_data(state: dict) -> str:
    """One line on what a checkpoint was trained on: model, tags, stage and the labels file."""
    from tagfold.training.checkpoint import describe

    cfg = state.get("config") or {}
    return (f"{describe(state)}, labels {cfg.get('labels') or 'unknown'}, "
            f"after epoch {state.get('epoch', '?')}")


def predict_files(paths: list[Path], checkpoint: str, *, top_k=5, n_chunks=16, batch_files=8,
                  device="cpu") -> list[dict]:
    from tqdm import tqdm

    from tagfold.training.evaluate import featurizer, load_model
    from tagfold.training.inference import Rejected, file_chunks, predict_tracks

    model, state = load_model(checkpoint, device)
    cfg, tags = state["config"], state["tags"]
    # Scores only mean something on music like the training data (a demo checkpoint on real
    # music ranks decades first), so say once what this checkpoint learnt from.
    print(f"tagfold predict: {checkpoint}: {training_data(state)}", file=sys.stderr)
    featurize = featurizer(cfg["input"], device)
    results = []

    def fail(path, why: str) -> None:
        bar.write(f"tagfold predict: {path}: refused ({why})", file=sys.stderr)
        results.append({"file": str(path), "error": why, "tags": []})

    # Decode one batch at a time: a folder of thousands of files never sits in memory at once.
    with tqdm(total=len(paths), desc="predict", unit="file", file=sys.stderr) as bar:
        for start in range(0, len(paths), batch_files):
            readable, chunks = [], {}
            for p in paths[start:start + batch_files]:
                try:
                    chunks[str(p)] = file_chunks(p, n_chunks, cfg["crop_samples"])
                    readable.append(str(p))
                except Rejected as e:
                    fail(p, str(e))
            if readable:
                scores = predict_tracks(model, featurize, chunks.pop, readable, batch_tracks=batch_files,
                                        device=device, progress=False)
                for f, s in zip(readable, scores):
                    if not np.isfinite(s).all():   # finite input, so the checkpoint's weights are broken
                        fail(f, "non_finite_scores: the model gave NaN/Inf scores (damaged checkpoint?)")
                        continue
                    top = np.argsort(-s, kind="stable")[:top_k]
                    results.append({"file": f, "error": "", "tags": [(tags[j], float(s[j])) for j in top]})
            bar.update(len(paths[start:start + batch_files]))
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(results, key=lambda r: order[r["file"]])


def format_results(results: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"file": r["file"], "error": r["error"] or None,
                            "tags": [{"tag": t, "score": round(s, 5)} for t, s in r["tags"]]}
                           for r in results], indent=2, allow_nan=False) + "\n"
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
    from tagfold.pipeline.options import COUNT, parser

    p = parser("tagfold predict", __doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint from `tagfold train` (e.g. best.pt)")
    p.add_argument("--top-k", type=COUNT, default=5, help="tags listed per file")
    p.add_argument("--n-chunks", type=COUNT, default=16, help="evenly spaced crops per file, scores averaged")
    p.add_argument("--batch-files", type=COUNT, default=8, help="files per inference batch")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    p.add_argument("--out", default="", help="write here (atomically) instead of stdout")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    paths = list_inputs(a.inputs)
    if not paths:
        print("tagfold predict: no audio files found", file=sys.stderr)
        return 1
    results = predict_files(paths, a.checkpoint, top_k=a.top_k, n_chunks=a.n_chunks,
                            batch_files=a.batch_files, device=a.device)
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
