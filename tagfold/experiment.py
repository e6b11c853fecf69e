"""`tagfold experiment`: the thesis's experiment in one command.

    tagfold experiment                                  # the demo, stages I-III x wave, mel x 3 seeds
    tagfold experiment --quick                          # 2 stages x wave x 1 seed on a small demo
    tagfold experiment --data DIR --models mel,shortchunk_resnet --seeds 0,1,2,3,4 --out runs/exp

On a prepared dataset (DIR with prep/ and labels/labels_stage{1,2,3}.parquet; default: the demo,
built under OUT/demo), trains every (stage, model, seed), then scores every model on the test split
against its own stage's labels, the Stage I labels and the latent (or human, --truth) labels, and
writes OUT/report.md and OUT/report.html (tagfold.report): the thesis's two tables with 95%
intervals over seeds and test tracks, paired differences Stage II - I and III - I, and the label
quality of each stage.

Each run lives in OUT/runs/stage{S}-{model}-seed{K}-{hash}/, the hash taken over its training config
and the contents of its labels and prep index. A killed experiment resumes: finished runs are
skipped, a run cut midway continues from its last checkpoint (bit-exact on CPU). A run folder whose
saved config differs from the one wanted is refused, naming the differing keys. A run whose loss
turns NaN stops (epoch and step named, last good checkpoint kept); the others go on and the report
lists it.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagfold.orchestrate import DemoBuild, build_demo
from tagfold.pipeline.errors import UserError


@dataclass(frozen=True)
class ExperimentConfig:
    out: str = "out/experiment"
    data: str = ""                          # '' -> the demo, built under {out}/demo
    truth: str = ""                         # '' -> {data}/demo-data/latent.parquet when present
    stages: tuple[int, ...] = (1, 2, 3)
    models: tuple[str, ...] = ("wave", "mel")
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 6                         # 6, not make train's 8: the 18 runs fit 45 min on 2 cores (README)
    width: float = 0.125
    batch_size: int = 16
    lr: float = 1e-3
    device: str = "auto"
    num_workers: int = 1
    n_chunks: int = 16
    split: str = "test"
    n_boot: int = 1000
    boot_seed: int = 0
    demo: DemoBuild = field(default_factory=DemoBuild)

    @classmethod
    def quick(cls, **over) -> "ExperimentConfig":
        """2 stages x 1 input x 1 seed, 2 epochs on a 96-clip demo of 4-s clips: the whole chain in
        about a minute on 2 cores (the CI test runs it)."""
        base = dict(out="out/experiment-quick", stages=(1, 2), models=("wave",), seeds=(0,), epochs=2,
                    n_chunks=4, n_boot=200, demo=DemoBuild(n=96, seconds=4.0))
        return cls(**{**base, **over})

    def validated(self) -> "ExperimentConfig":
        from tagfold.training import models
        bad = [s for s in self.stages if s not in (1, 2, 3)]
        if bad or not self.stages:
            raise UserError(f"--stages must be a non-empty list of 1, 2, 3; got {list(self.stages)}")
        unknown = [m for m in self.models if m not in models.REGISTRY]
        if unknown:
            raise UserError(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(models.REGISTRY)}")
        if not self.models or not self.seeds:
            raise UserError("--models and --seeds must not be empty")
        for name in ("epochs", "batch_size", "n_chunks", "n_boot"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        return self


# ----------------------------------------------------------------------------- runs

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Keys that do not change what a run computes: left out of its identity.
_NOT_IDENTITY = ("out", "resume", "overwrite", "num_workers", "keep")


def run_identity(train_cfg) -> dict:
    """What a run's result depends on: its resolved training config (less paths that only say where)
    plus the contents of its labels file and prep index."""
    d = dataclasses.asdict(train_cfg)
    ident = {k: v for k, v in d.items() if k not in _NOT_IDENTITY}
    ident["labels_sha256"] = _sha256(Path(train_cfg.labels))
    ident["prep_index_sha256"] = _sha256(Path(train_cfg.prep) / "index.parquet")
    return ident


def _hash(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Run:
    stage: int
    model: str
    seed: int
    folder: Path
    identity: dict
    train_cfg: object

    @property
    def name(self) -> str:
        return f"stage{self.stage}-{self.model}-seed{self.seed}"


def plan_runs(cfg: ExperimentConfig, data: Path) -> list[Run]:
    from tagfold.training.train import TrainConfig
    runs = []
    for model in cfg.models:
        for stage in cfg.stages:
            for seed in cfg.seeds:
                tc = TrainConfig(stage=stage, model=model, input=_input_of(model), data=str(data), epochs=cfg.epochs,
                                 batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.width, seed=seed,
                                 device=cfg.device, num_workers=cfg.num_workers, out="-").resolved()
                ident = run_identity(tc)
                folder = Path(cfg.out) / "runs" / f"stage{stage}-{model}-seed{seed}-{_hash(ident)}"
                runs.append(Run(stage, model, seed, folder, ident,
                                dataclasses.replace(tc, out=str(folder / "train"))))
    return runs


def _input_of(model: str) -> str:
    from tagfold.training import models
    return models.spec(model).input


def check_run_folder(run: Run) -> None:
    """Refuse a run folder that holds another config, naming the keys that differ."""
    saved_path = run.folder / "run.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())["identity"]
    keys = sorted(k for k in set(saved) | set(run.identity) if saved.get(k) != run.identity.get(k))
    if keys:
        raise UserError(f"{run.folder}: holds a run with another config (differs in "
                         + ", ".join(f"{k}: {saved.get(k)!r} there, {run.identity.get(k)!r} here" for k in keys)
                         + "); remove the folder or use another --out")


def _status(run: Run) -> dict | None:
    path = run.folder / "done.json"
    return json.loads(path.read_text()) if path.exists() else None


def train_and_score(run: Run, cfg: ExperimentConfig, truth: str) -> dict:
    """Train (or resume) one run, then score its best checkpoint on the test split. Returns the
    status written to done.json: ok, or failed with the reason (NaN loss)."""
    from tagfold.pipeline.io import output_lock, write_text
    from tagfold.training import checkpoint as ckpt
    from tagfold.training.train import NonFiniteLoss, fit

    t0 = time.time()
    run.folder.mkdir(parents=True, exist_ok=True)
    with output_lock(run.folder):
        write_text(json.dumps({"identity": run.identity, "train_config": dataclasses.asdict(run.train_cfg)},
                              indent=1, default=str) + "\n", run.folder / "run.json")
        train_dir = Path(run.train_cfg.out)
        resume = bool(train_dir.exists() and ckpt.epoch_files(train_dir))
        try:
            fit(dataclasses.replace(run.train_cfg, resume=resume), quiet=True)
        except NonFiniteLoss as e:
            status = {"status": "failed", "reason": str(e), "seconds": round(time.time() - t0, 1)}
            write_text(json.dumps(status, indent=1) + "\n", run.folder / "done.json")
            return status
        _write_scores(run, cfg, truth)
        status = {"status": "ok", "seconds": round(time.time() - t0, 1)}
        write_text(json.dumps(status, indent=1) + "\n", run.folder / "done.json")
    return status


def _write_scores(run: Run, cfg: ExperimentConfig, truth: str) -> None:
    """scores.parquet: track_id, then per tag the model's score and every truth's label."""
    import pyarrow as pa
    from tagfold.pipeline.io import write_parquet
    from tagfold.training.evaluate import EvalConfig, entry_from_checkpoint

    best = Path(run.train_cfg.out) / "best.pt"
    ecfg = EvalConfig(checkpoints=(str(best),), out=str(run.folder), split=cfg.split, n_chunks=cfg.n_chunks,
                      latent=truth, device=cfg.device)
    e = entry_from_checkpoint(str(best), ecfg)
    cols = {"track_id": pa.array([str(t) for t in e.track_ids])}
    for j, tag in enumerate(e.tags):
        cols[f"score:{tag}"] = pa.array(e.scores[:, j], pa.float32())
    for name, y in e.truths.items():
        for j, tag in enumerate(e.tags):
            cols[f"{name}:{tag}"] = pa.array(y[:, j], pa.uint8())
    write_parquet(pa.table(cols), run.folder / "scores.parquet",
                  {"tags": list(e.tags), "categories": list(e.categories), "truths": list(e.truths)})


@dataclass
class RunResult:
    run: Run
    status: dict
    history: list[dict] = field(default_factory=list)
    track_ids: list = field(default_factory=list)
    scores: np.ndarray | None = None
    truths: dict = field(default_factory=dict)
    tags: tuple = ()
    categories: tuple = ()


def load_result(run: Run) -> RunResult:
    import pyarrow.parquet as pq
    from tagfold.pipeline.io import read_config

    res = RunResult(run, _status(run) or {"status": "missing"})
    hist = Path(run.train_cfg.out) / "history.parquet"
    if hist.exists():
        res.history = pq.read_table(hist).to_pylist()
    path = run.folder / "scores.parquet"
    if res.status.get("status") == "ok" and path.exists():
        meta = read_config(path)
        t = pq.read_table(path)
        res.tags, res.categories = tuple(meta["tags"]), tuple(meta["categories"])
        res.track_ids = t.column("track_id").to_pylist()
        res.scores = np.stack([t.column(f"score:{g}").to_numpy() for g in res.tags], 1).astype(np.float64)
        res.truths = {name: np.stack([t.column(f"{name}:{g}").to_numpy() for g in res.tags], 1).astype(np.uint8)
                      for name in meta["truths"]}
    return res


# ----------------------------------------------------------------------------- the command

def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> Path:
    from tagfold.pipeline.io import output_lock

    cfg = cfg.validated()
    with output_lock(cfg.out):      # one experiment per folder; each run folder holds its own lock too
        return _run_experiment(cfg, progress)


def _run_experiment(cfg: ExperimentConfig, progress: bool) -> Path:
    from tagfold import report
    from tagfold.pipeline.io import write_text

    out = Path(cfg.out)
    t_start = time.time()
    data = Path(cfg.data) if cfg.data else build_demo(out / "demo", cfg.demo, progress=progress)
    truth = cfg.truth or str(data / "demo-data" / "latent.parquet")
    if not Path(truth).exists():
        if cfg.truth:
            raise UserError(f"--truth {cfg.truth}: not found")
        truth = ""
    runs = plan_runs(cfg, data)
    for r in runs:
        check_run_folder(r)
    write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str) + "\n", out / "experiment.json")
    todo = [r for r in runs if _status(r) is None]
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    say(f"experiment: {len(runs)} runs ({len(cfg.stages)} stages x {len(cfg.models)} models x "
        f"{len(cfg.seeds)} seeds), {len(runs) - len(todo)} already finished -> {out}/runs/")
    for i, r in enumerate(todo, 1):
        t0 = time.time()
        say(f"[{i}/{len(todo)}] {r.name}: training {cfg.epochs} epochs ...")
        st = train_and_score(r, cfg, truth)
        say(f"[{i}/{len(todo)}] {r.name}: {st['status']}"
            + (f" ({st['reason']})" if st["status"] != "ok" else "") + f" [{time.time() - t0:.0f} s]")
    results = [load_result(r) for r in runs]
    path = report.write(cfg, data, truth, results, wall_seconds=time.time() - t_start)
    say(f"experiment: report {path} and {path.with_suffix('.html')}")
    return path


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    d = ExperimentConfig()
    from tagfold.pipeline.options import COUNT, COUNT_OR_ZERO, WIDTH, Range, parser

    p = parser("tagfold experiment", __doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 stages x wave x 1 seed, 2 epochs, 96-clip demo "
                   "(about a minute; out/experiment-quick unless --out)")
    p.add_argument("--out", default=None, help=f"experiment folder (default {d.out})")
    p.add_argument("--data", default="", help="prepared dataset: prep/ and labels/labels_stage{1,2,3}.parquet "
                   "(default: build the demo under OUT/demo)")
    p.add_argument("--truth", default="", help="common ground-truth labels, wide or long Parquet "
                   "(default: the demo's latent.parquet when present)")
    p.add_argument("--stages", type=_ints, default=None, help="comma-separated (default 1,2,3)")
    p.add_argument("--models", type=_names, default=None,
                   help="comma-separated: wave, mel, shortchunk_resnet (default wave,mel)")
    p.add_argument("--seeds", type=_ints, default=None, help="comma-separated (default 0,1,2)")
    p.add_argument("--epochs", type=COUNT, default=None, help=f"epochs per run (default {d.epochs}; quick 2)")
    p.add_argument("--width", type=WIDTH, default=d.width, help=f"channel multiplier (default {d.width})")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--num-workers", type=COUNT_OR_ZERO, default=d.num_workers, help=f"loader workers (default {d.num_workers})")
    p.add_argument("--n-boot", type=COUNT, default=None, help=f"bootstrap replicates (default {d.n_boot}; quick 200)")
    p.add_argument("--demo-clips", type=Range(int, lo=20), default=None,
                   help=f"clips in the demo built when no --data (default {d.demo.n}; quick 96)")
    p.add_argument("--demo-seconds", type=Range(float, lo=4), default=None,
                   help=f"seconds per demo clip, at least one 3.7-s crop (default {d.demo.seconds:g}; quick 4)")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    over = {k: v for k, v in dict(out=a.out, stages=a.stages, models=a.models, seeds=a.seeds, epochs=a.epochs,
                                  n_boot=a.n_boot).items() if v is not None}
    over.update(data=a.data, truth=a.truth, width=a.width, device=a.device, num_workers=a.num_workers)
    cfg = ExperimentConfig.quick(**over) if a.quick else ExperimentConfig(**over)
    sizes = {k: v for k, v in (("n", a.demo_clips), ("seconds", a.demo_seconds)) if v is not None}
    if sizes:
        cfg = dataclasses.replace(cfg, demo=dataclasses.replace(cfg.demo, **sizes))
    run_experiment(cfg)   # a user error is one line from tagfold.cli's error boundary
    return 0


if __name__ == "__main__":
    sys.exit(main())
