"""What `tagfold train` is asked to do: TrainConfig, the schedules and paper presets, and the
command's option parser. Kept apart from the training loop (training/train.py, which imports
torch) so that `tagfold train --help` and a bad option answer without loading torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tagfold.pipeline.constants import CROP_SAMPLES
from tagfold.pipeline.options import COUNT, COUNT_OR_ZERO, NON_NEGATIVE, POSITIVE, SEED, WIDTH, Range, parser

KEEP = Range(int, lo=2)     # epoch checkpoints kept: at least one good fallback

# the names of training/models.py's registry, here without importing torch (a test checks them)
MODEL_NAMES = ("wave", "mel", "shortchunk_resnet")
DESCRIPTION = "`tagfold train`: train a tagging model on one stage's labels."

SCHEDULES = ("constant", "cosine", "step", "won2020")
BENCHMARKS = ("msd-top50",)     # labels from `tagfold labels --benchmark NAME` (labels_NAME.parquet)


@dataclass(frozen=True)
class Phase:
    first_epoch: int            # 0-based epoch the phase starts at
    optimizer: str              # 'adam' | 'sgd' (Nesterov, momentum 0.9)
    lr: float


# Won et al. 2020's recipe (their solver.py `opt_schedule`): Adam at 1e-4 for 80 epochs, then SGD
# with Nesterov momentum 0.9 at 1e-3 for 20, 1e-4 for 20 and 1e-5 to the end, 200 epochs; weight
# decay 1e-4 throughout. Each switch first reloads the best model so far. The lr drops keep the
# SGD optimizer (its momentum), as theirs do.
WON2020_EPOCHS = 200
WON2020_PHASES = (Phase(0, "adam", 1e-4), Phase(80, "sgd", 1e-3), Phase(100, "sgd", 1e-4), Phase(120, "sgd", 1e-5))
WON2020_WEIGHT_DECAY = 1e-4

# A paper's whole training setup; explicit options override it. Won et al. trained every model
# they compared (Pons et al.'s included) with the same recipe; the at-scale paper's own optimiser
# settings are not in its released code, so `pons2018` is the Pons log-mel model under Won's recipe.
_WON2020_RECIPE = dict(schedule="won2020", epochs=WON2020_EPOCHS, batch_size=16, lr=1e-4,
                       weight_decay=WON2020_WEIGHT_DECAY, grad_clip=0.0, width=1.0, val_chunks=16,
                       select="loss", precision="fp32")
PRESETS = {
    "won2020": dict(model="shortchunk_resnet", **_WON2020_RECIPE),
    "pons2018": dict(model="mel", **_WON2020_RECIPE),
}


def schedule_phases(cfg: "TrainConfig") -> tuple[Phase, ...]:
    """The optimiser phases of a run: one Adam phase at --lr, or won2020's four phases with their
    starts scaled to --epochs (80, 100 and 120 of 200: a 10-epoch run switches after epochs 4, 5, 6)."""
    if cfg.schedule != "won2020":
        return (Phase(0, "adam", cfg.lr),)
    return tuple(Phase(p.first_epoch * cfg.epochs // WON2020_EPOCHS, p.optimizer, cfg.lr if i == 0 else p.lr)
                 for i, p in enumerate(WON2020_PHASES))


def phase_at(phases: tuple[Phase, ...], epoch: int) -> Phase:
    return [p for p in phases if p.first_epoch <= epoch][-1]


@dataclass(frozen=True)
class TrainConfig:
    stage: int = 2
    input: str = "wave"
    model: str = ""                 # '' -> the thesis model for `input`
    data: str = ""                  # '' -> build and use the demo in $TAGFOLD_OUT/demo
    prep: str = ""                  # '' -> {data}/prep
    labels: str = ""                # '' -> {data}/labels/labels_stage{stage}.parquet
    out: str = ""                   # '' -> $TAGFOLD_OUT (default out)/train/stage{stage}-{model}
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    schedule: str = "cosine"        # constant | cosine (over `epochs`) | step (x0.1 every step_epochs)
    step_epochs: int = 10
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    width: float = 1.0              # channel multiplier; the CPU demo uses 0.125
    crop_samples: int = CROP_SAMPLES
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    backend: str = "auto"           # loader backend: torch | dali | auto
    num_workers: int = 2
    max_steps: int = 0              # train steps per epoch, 0 = the whole split
    keep: int = 3                   # epoch checkpoints kept (>= 2)
    resume: bool = False
    overwrite: bool = False         # a fresh run into a folder holding an earlier run deletes it
    benchmark: str = ""             # '' -> the thesis's stage labels; 'msd-top50' -> labels_msd-top50.parquet
    val_chunks: int = 1             # validation crops per track: 1 = the centre crop, 16 = Won 2020
    select: str = "pr_auc"          # best.pt by validation macro 'pr_auc' or by validation 'loss' (Won 2020)
    precision: str = "bf16"         # bf16 autocast on CUDA (CPU always runs fp32) | fp32
    # Small data (make emotify): waveform augmentation in the torch loader (training/augment.py), and
    # a final fit on train+valid for the epochs chosen on valid (train_split 'train+valid', select 'last').
    train_split: str = "train"      # split(s) trained on, '+'-joined
    aug_gain_db: float = 0.0        # random gain within +- this many dB
    aug_shift: float = 0.0          # circular time shift up to this fraction of the crop
    aug_mix: float = 0.0            # share of clips mixed with another clip of the batch (labels united)

    def augment(self):
        from tagfold.training.augment import Augment
        return Augment(self.aug_gain_db, self.aug_shift, self.aug_mix)

    def resolved(self) -> "TrainConfig":
        """Fill the '' defaults and check ranges; the result is what gets saved."""
        from tagfold.training import models

        if self.stage not in (1, 2, 3):
            raise ValueError(f"--stage must be 1, 2 or 3, got {self.stage}")
        model = self.model or models.default_model_for(self.input)
        spec = models.spec(model)   # --model decides the input kind; --input only picks the default model
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        # the ranges the options have (tagfold.pipeline.options), for configs built without them
        for name in ("epochs", "batch_size", "val_chunks"):
            COUNT.check(getattr(self, name), f"--{name.replace('_', '-')}")
        KEEP.check(self.keep, "--keep")
        WIDTH.check(self.width, "--width")
        if self.benchmark and self.benchmark not in BENCHMARKS:
            raise ValueError(f"--benchmark must be one of {', '.join(BENCHMARKS)}, got {self.benchmark!r}")
        if self.select not in ("pr_auc", "loss", "last"):
            raise ValueError(f"--select must be pr_auc, loss or last, got {self.select!r}")
        self.augment()      # checks the augmentation ranges
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"--precision must be bf16 or fp32, got {self.precision!r}")
        if self.schedule == "won2020" and self.epochs < 10:
            raise ValueError(f"--schedule won2020 needs --epochs >= 10 (its phases start at 40%, 50% and 60% "
                             f"of the epochs), got {self.epochs}")
        from tagfold.pipeline.paths import DEFAULT_OUT
        data = self.data or str(DEFAULT_OUT / "demo")
        task = self.benchmark or f"stage{self.stage}"     # names the labels file and the run folder
        return dataclasses.replace(
            self, model=model, input=spec.input, data=data,
            prep=self.prep or str(Path(data) / "prep"),
            labels=self.labels or str(Path(data) / "labels" / f"labels_{task}.parquet"),
            out=self.out or str(DEFAULT_OUT / "train" / f"{task}-{model}"))


def parse_args(argv: list[str]) -> TrainConfig:
    p = parser("tagfold train", DESCRIPTION)
    d = TrainConfig()
    p.add_argument("--stage", type=int, default=d.stage, choices=(1, 2, 3), help="train on this stage's labels")
    p.add_argument("--input", default=d.input, choices=("wave", "mel"), help="picks the thesis model for this input")
    p.add_argument("--model", default=None, choices=MODEL_NAMES,
                   help="overrides --input's model (default: wave for --input wave, mel for --input mel)")
    p.add_argument("--data", default="", help="folder with prep/ and labels/ (default: build the demo)")
    p.add_argument("--prep", default="", help="prep-audio output folder (default: DATA/prep)")
    p.add_argument("--labels", default="",
                   help="labels Parquet (default: DATA/labels/labels_stageN.parquet, or labels_BENCHMARK.parquet)")
    p.add_argument("--out", default="", help="run folder (default: out/train/stageN-MODEL or BENCHMARK-MODEL)")
    p.add_argument("--epochs", type=COUNT, default=None, help=f"default {d.epochs} (demo: 8)")
    p.add_argument("--batch-size", type=COUNT, default=d.batch_size, help="tracks per training batch")
    p.add_argument("--lr", type=POSITIVE, default=None,
                   help=f"Adam learning rate (default {d.lr:g}; {WON2020_PHASES[0].lr:g} with --schedule won2020)")
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES,
                   help="learning-rate schedule: constant, cosine over the epochs, step (x0.1 every --step-epochs), "
                        "or won2020 (Won et al. 2020: Adam, then SGD at 1e-3, 1e-4, 1e-5 from 40%%, 50%% and 60%% "
                        "of the epochs, each switch from the best model so far)")
    p.add_argument("--step-epochs", type=COUNT, default=d.step_epochs, help="epochs between steps of --schedule step")
    p.add_argument("--weight-decay", type=NON_NEGATIVE, default=None,
                   help=f"weight decay (default {d.weight_decay:g}; {WON2020_WEIGHT_DECAY:g} with --schedule won2020)")
    p.add_argument("--grad-clip", type=NON_NEGATIVE, default=d.grad_clip, help="max gradient norm, 0 = off")
    p.add_argument("--width", type=WIDTH, default=None,
                   help="channel multiplier; default 1.0 (demo: 0.125)")
    p.add_argument("--crop-samples", type=COUNT, default=d.crop_samples, help="samples per random training crop")
    p.add_argument("--seed", type=SEED, default=d.seed, help="random seed (weights, crops, batch order)")
    p.add_argument("--device", default=d.device, help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--backend", default=d.backend, choices=("torch", "dali", "auto"),
                   help="audio loader; auto: torch on CPU, DALI on a GPU when installed")
    p.add_argument("--num-workers", type=COUNT_OR_ZERO, default=d.num_workers,
                   help="loader worker processes (0: load in the training process)")
    p.add_argument("--max-steps", type=COUNT_OR_ZERO, default=d.max_steps, help="train steps per epoch, 0 = all")
    p.add_argument("--keep", type=KEEP, default=d.keep,
                   help="epoch checkpoints kept (at least 2: one good fallback)")
    p.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's checkpoints and history in --out and start again "
                        "(without it a fresh run into such a folder refuses)")
    p.add_argument("--benchmark", default="", choices=BENCHMARKS,
                   help="train on a published benchmark's labels: DATA/labels/labels_BENCHMARK.parquet from "
                        "`tagfold labels --benchmark BENCHMARK` (default: the thesis's Stage N labels)")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="a paper's training setup; options given explicitly override it. won2020: "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in PRESETS["won2020"].items())
                        + "; pons2018: the same with --model mel")
    p.add_argument("--val-chunks", type=COUNT, default=d.val_chunks,
                   help="validation crops per track, evenly spaced, scores averaged (1: the centre crop; Won: 16)")
    p.add_argument("--select", default=d.select, choices=("pr_auc", "loss", "last"),
                   help="best.pt: the epoch with the best validation macro PR-AUC or validation loss, or the "
                        "last epoch (for a final fit on train+valid)")
    p.add_argument("--train-split", default=d.train_split,
                   help="split(s) to train on, '+'-joined; train+valid for a final fit with the epochs chosen on "
                        "valid (default train)")
    p.add_argument("--aug-gain-db", type=NON_NEGATIVE, default=d.aug_gain_db,
                   help="waveform augmentation: random gain within +- this many dB (default 0: off)")
    p.add_argument("--aug-shift", type=Range(float, lo=0, hi=1), default=d.aug_shift,
                   help="waveform augmentation: circular time shift up to this fraction of the crop (default 0)")
    p.add_argument("--aug-mix", type=Range(float, lo=0, hi=1), default=d.aug_mix,
                   help="waveform augmentation: share of clips mixed with another clip, labels united (default 0)")
    p.add_argument("--precision", default=d.precision, choices=("bf16", "fp32"),
                   help="on CUDA: bf16 autocast or plain fp32 (CPU always runs fp32)")
    a = p.parse_args(argv)
    if a.preset:
        p.set_defaults(**PRESETS[a.preset])
        a = p.parse_args(argv)
    demo = not a.data and not a.labels
    won = a.schedule == "won2020"
    return TrainConfig(
        stage=a.stage, input=a.input, model=a.model or "", data=a.data, prep=a.prep, labels=a.labels, out=a.out,
        epochs=a.epochs or (8 if demo else d.epochs), batch_size=a.batch_size, schedule=a.schedule,
        lr=a.lr if a.lr is not None else (WON2020_PHASES[0].lr if won else d.lr),
        weight_decay=a.weight_decay if a.weight_decay is not None else (WON2020_WEIGHT_DECAY if won else d.weight_decay),
        step_epochs=a.step_epochs, grad_clip=a.grad_clip,
        width=a.width or (0.125 if demo else 1.0), crop_samples=a.crop_samples, seed=a.seed, device=a.device,
        backend=a.backend, num_workers=a.num_workers, max_steps=a.max_steps, keep=a.keep, resume=a.resume,
        overwrite=a.overwrite, benchmark=a.benchmark, val_chunks=a.val_chunks, select=a.select, precision=a.precision,
        train_split=a.train_split, aug_gain_db=a.aug_gain_db, aug_shift=a.aug_shift, aug_mix=a.aug_mix)
