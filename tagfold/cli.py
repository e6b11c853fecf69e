"""The one `tagfold` console script.

Each subcommand lives in the module that implements it, as a `main(argv)` function with its
own argparse parser. Modules are imported only when their command runs, so
`tagfold query` never pays for importing torch.
"""
import importlib
import os
import sys

# name -> (module or module:function, one-line help). Order is the order shown by `tagfold --help`.
COMMANDS = {
    "pipeline": ("tagfold.pipeline.tags.run", "run the tag pipeline end to end (ingest, Stage I, II, III)"),
    "ingest": ("tagfold.pipeline.tags.ingest", "read Last.fm tag files into tags.parquet / track_tags.parquet"),
    "categorize": ("tagfold.pipeline.tags.categorize", "Stage I: categorise every tag -> categories.parquet"),
    "collapse": ("tagfold.pipeline.tags.collapse", "Stage II: rule collapse onto the selected tags -> stage2.parquet"),
    "embed": ("tagfold.pipeline.tags.embed", "Stage III: collapse by meaning (sentence encoder or word vectors) -> stage3.parquet"),
    "query": ("tagfold.pipeline.tags.query", "list the raw tags that fold into a selected tag"),
    "score": ("tagfold.pipeline.tags.gold", "score a mapping against the hand-labelled gold tags"),
    "synth-tags": ("tagfold.pipeline.tags.synth", "grow a real tag list to full size with seeded realistic variants"),
    "labels": ("tagfold.pipeline.labels", "per-track label matrices for Stage I/II/III with splits"),
    "demo-data": ("tagfold.pipeline.audio.demo", "generate the embedded demo dataset (audio + noisy tags)"),
    "manifest": ("tagfold.pipeline.audio.manifest", "build manifest.parquet from an audio folder, MSD layout or demo data"),
    "prep-audio": ("tagfold.pipeline.audio.audio_prep", "decode, downmix, resample audio once into FLAC / memmap shards"),
    # the demo is built (tagfold.orchestrate) before training when no --data is given
    "train": ("tagfold.orchestrate:train_main", "train a tagging model"),
    "evaluate": ("tagfold.training.evaluate", "batch evaluation: ROC-AUC / PR-AUC per tag, category, stage"),
    "predict": ("tagfold.training.predict", "top-k tags for audio files"),
    "experiment": ("tagfold.experiment", "the thesis's experiment: stages x inputs x seeds, compared, one report"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tagfold COMMAND [options]   (tagfold COMMAND --help for its options)",
             "       tagfold --version", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run one command; the one error boundary: a user error is one line and an exit code
    from tagfold.pipeline.errors (the README's table), never a traceback."""
    from tagfold.pipeline import errors

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return errors.EXIT_OK
    if argv[0] == "--version":
        from tagfold import __version__
        print(f"tagfold {__version__}")
        return errors.EXIT_OK
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tagfold: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return errors.EXIT_USAGE

    def fail(message: str, code: int) -> int:
        print(f"tagfold {name}: {message}", file=sys.stderr)
        return code

    try:
        module, _, function = COMMANDS[name][0].partition(":")   # "module" runs module.main
        code = int(getattr(importlib.import_module(module), function or "main")(rest) or 0)
        sys.stdout.flush()   # a closed pipe shows up here at the latest, inside the boundary
        return code
    except BrokenPipeError:
        # the reader left (`| head`): stop quietly; point stdout at /dev/null so the
        # interpreter's own flush at exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return errors.EXIT_CLOSED_PIPE
    except KeyboardInterrupt:
        return fail("interrupted", errors.EXIT_INTERRUPTED)
    except errors.UserError as e:  # incl. OutputLocked: every command that writes a folder holds its lock
        return fail(str(e), e.exit_code)
    except OSError as e:        # unreadable input, read-only folder, full disk: path and cause
        return fail(errors.os_error_line(e), errors.EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
