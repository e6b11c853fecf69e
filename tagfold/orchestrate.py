"""The layer above training: chains the library steps that make a dataset a model can train on.

    build_demo(root)    demo-data -> tag pipeline -> labels -> prep-audio under `root`
    train_main(argv)    `tagfold train`: builds the demo first when no --data / --labels is given

Imports flow one way (native <- pipeline <- training <- this module <- cli): training never
imports this module or the CLI, and nothing here calls `cli.main()`; each step is the library
function its command wraps.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from tagfold.pipeline.errors import UserError


@dataclass(frozen=True)
class DemoBuild:
    """The demo dataset's size; the defaults are `tagfold demo-data`'s."""
    n: int = 1000
    seconds: float = 10.0
    seed: int = 0
    workers: int = 2


def _say(step: str, detail: str) -> None:
    print(f"demo: {step}: {detail}", file=sys.stderr, flush=True)


def _check_same_demo(manifest: Path, build: DemoBuild) -> None:
    """A finished demo-data step is reused only when it was made with the same size and seed."""
    from tagfold.pipeline.io import read_config

    latent = manifest.with_name("latent.parquet")
    saved = read_config(latent) if latent.exists() else {}
    wanted = dataclasses.asdict(build)
    differ = [k for k in ("n", "seconds", "seed") if k in saved and saved[k] != wanted[k]]
    if differ:
        raise UserError(f"{manifest.parent}: holds a demo made with "
                         + ", ".join(f"{k}={saved[k]!r}" for k in differ) + "; this run wants "
                         + ", ".join(f"{k}={wanted[k]!r}" for k in differ) + " (use another folder or remove it)")


def build_demo(root: str | Path, build: DemoBuild = DemoBuild(), progress: bool = True) -> Path:
    """demo-data -> tag pipeline -> labels -> prep-audio under `root`, skipping finished steps.

    A step counts as finished when its last-written output exists (each writes it last,
    atomically). Prep always runs: it resumes group by group and does nothing once all are done,
    whereas testing for prep/ would take a prep killed midway for a finished one."""
    from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
    from tagfold.pipeline.audio.demo import DemoConfig, generate
    from tagfold.pipeline.io import output_lock
    from tagfold.pipeline.labels import LabelsConfig, build_labels
    from tagfold.pipeline.tags.run import PipelineConfig, run_pipeline

    root = Path(root)
    demo, tags, labels, prep = root / "demo-data", root / "tags", root / "labels", root / "prep"
    manifest = demo / "manifest.parquet"
    if manifest.exists():
        _check_same_demo(manifest, build)
    else:
        _say("demo-data", f"{build.n} clips of {build.seconds:g} s -> {demo}")
        with output_lock(demo):
            generate(DemoConfig(str(demo), n=build.n, seconds=build.seconds, seed=build.seed,
                                workers=build.workers), progress=progress)
    if not (tags / "stage3.parquet").exists():
        _say("pipeline", f"{demo / 'tags.csv'} -> {tags}")
        run_pipeline(tags, PipelineConfig(input=str(demo / "tags.csv"), format="csv"))
    if not (labels / "labels_stage3.parquet").exists():
        _say("labels", f"Stage I/II/III label matrices -> {labels}")
        with output_lock(labels):
            build_labels(LabelsConfig(manifest=str(manifest), track_tags=str(tags / "track_tags.parquet"),
                                      tags=str(tags / "tags.parquet"), stage2=str(tags / "stage2.parquet"),
                                      stage3=str(tags / "stage3.parquet"), out=str(labels)))
    _say("prep-audio", f"-> {prep} (resumes; nothing to do once every group is done)")
    prep_audio(PrepConfig(str(manifest), str(prep), workers=build.workers), progress=progress)
    return root


def train_main(argv: list[str] | None = None) -> int:
    """`tagfold train`: training.train's command, with the demo built first when no data is given."""
    from tagfold.training.config import parse_args   # before torch is imported: --help answers at once

    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_args(argv)
    if not cfg.data and not cfg.labels:
        from tagfold.pipeline.paths import DEFAULT_OUT
        try:
            build_demo(DEFAULT_OUT / "demo")
        except (FileNotFoundError, ValueError) as e:
            print(f"tagfold train: building the demo: {e}", file=sys.stderr)
            return 1
    from tagfold.training import train

    return train.main(argv)
