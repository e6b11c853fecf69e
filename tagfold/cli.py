"""The one `tagfold` console script.

Each subcommand lives in the module that implements it, as a `main(argv)` function with its
own argparse parser. Modules are imported only when their command runs, so
`tagfold query` never pays for importing torch.
"""
import importlib
import sys

# name -> (module, one-line help). Order is the order shown by `tagfold --help`.
COMMANDS = {
    "pipeline": ("tagfold.pipeline.tags.run", "run the tag pipeline end to end (ingest, Stage I, II, III)"),
    "ingest": ("tagfold.pipeline.tags.ingest", "read Last.fm tag files into tags.parquet / track_tags.parquet"),
    "categorize": ("tagfold.pipeline.tags.categorize", "Stage I: categorise every tag -> categories.parquet"),
    "collapse": ("tagfold.pipeline.tags.collapse", "Stage II: rule collapse onto the selected tags -> stage2.parquet"),
    "embed": ("tagfold.pipeline.tags.embed", "Stage III: word-embedding collapse -> stage3.parquet"),
    "query": ("tagfold.pipeline.tags.query", "list the raw tags that fold into a selected tag"),
    "score": ("tagfold.pipeline.tags.gold", "score a mapping against the hand-labelled gold tags"),
    "synth-tags": ("tagfold.pipeline.tags.synth", "grow a real tag list to full size with seeded realistic variants"),
    "labels": ("tagfold.pipeline.labels", "per-track label matrices for Stage I/II/III with splits"),
    "demo-data": ("tagfold.pipeline.audio.demo", "generate the embedded demo dataset (audio + noisy tags)"),
    "manifest": ("tagfold.pipeline.audio.manifest", "build manifest.parquet from an audio folder, MSD layout or demo data"),
    "prep-audio": ("tagfold.pipeline.audio.audio_prep", "decode, downmix, resample audio once into FLAC / memmap shards"),
    "train": ("tagfold.training.train", "train a tagging model"),
    "evaluate": ("tagfold.training.evaluate", "batch evaluation: ROC-AUC / PR-AUC per tag, category, stage"),
    "predict": ("tagfold.training.predict", "top-k tags for audio files"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tagfold COMMAND [options]   (tagfold COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tagfold: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from tagfold.pipeline.io import OutputLocked
    try:
        return int(module.main(rest) or 0)
    except OutputLocked as e:   # every command that writes a folder holds its lock: one message for all
        print(f"tagfold {name}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
