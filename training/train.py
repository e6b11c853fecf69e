"""`tagfold train`: train a tagging model on one stage's labels.

    tagfold train --stage 2 --input wave                      # demo data, end to end
    tagfold train --stage 3 --model shortchunk_resnet --data DIR --epochs 20 --out runs/s3
    tagfold train ... --resume                                 # continue a killed run exactly
    torchrun --nproc_per_node 4 -m tagfold.training.train ...  # several GPUs (or CPU, gloo)

`--data DIR` holds `prep/` (the audio-prep output that training.loaders reads) and
`labels/labels_stage{1,2,3}.parquet` (from `tagfold labels`); `--prep` / `--labels` override.
Without `--data` the demo under $TAGFOLD_OUT/demo is used; the `tagfold train` command
(tagfold.orchestrate.train_main) builds it first (demo-data -> tag pipeline -> labels ->
prep-audio), each step skipped when its output already exists.

The loop in `fit` reads top to bottom. Every CPU<->GPU synchronisation is marked `SYNC`.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from tagfold.training import checkpoint as ckpt
from tagfold.training import models
from tagfold.pipeline.errors import UserError

SCHEDULES = ("constant", "cosine", "step")


class NonFiniteLoss(ValueError):
    """The training loss became NaN or Inf: the run stops before saving that epoch."""


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
    crop_samples: int = models.CROP_SAMPLES
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    backend: str = "auto"           # loader backend: torch | dali | auto
    num_workers: int = 2
    max_steps: int = 0              # train steps per epoch, 0 = the whole split
    keep: int = 3                   # epoch checkpoints kept (>= 2)
    resume: bool = False
    overwrite: bool = False         # a fresh run into a folder holding an earlier run deletes it

    def resolved(self) -> "TrainConfig":
        """Fill the '' defaults and check ranges; the result is what gets saved."""
        if self.stage not in (1, 2, 3):
            raise ValueError(f"--stage must be 1, 2 or 3, got {self.stage}")
        model = self.model or models.default_model_for(self.input)
        spec = models.spec(model)   # --model decides the input kind; --input only picks the default model
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.keep < 2:
            raise ValueError(f"--keep must be >= 2 (one good fallback), got {self.keep}")
        from tagfold.pipeline.paths import DEFAULT_OUT
        data = self.data or str(DEFAULT_OUT / "demo")
        return dataclasses.replace(
            self, model=model, input=spec.input, data=data,
            prep=self.prep or str(Path(data) / "prep"),
            labels=self.labels or str(Path(data) / "labels" / f"labels_stage{self.stage}.parquet"),
            out=self.out or str(DEFAULT_OUT / "train" / f"stage{self.stage}-{model}"))


# ----------------------------------------------------------------------------- data

def read_labels(path: str | Path):
    """(track_ids, splits, Y uint8 [n, n_tags], tags, categories) from a labels parquet."""
    import pyarrow.parquet as pq
    from tagfold.pipeline.io import read_config

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: labels file not found (make it with `tagfold labels`)")
    table = pq.read_table(path)
    if table.column_names[:2] != ["track_id", "split"]:
        raise ValueError(f"{path}: expected columns track_id, split, then one per tag; got {table.column_names[:3]}")
    tags = tuple(table.column_names[2:])
    y = np.stack([table.column(t).to_numpy(zero_copy_only=False) for t in tags], axis=1).astype(np.uint8) \
        if tags else np.zeros((table.num_rows, 0), np.uint8)
    cats = tuple(read_config(path).get("categories") or _categories_for(tags))
    return (table.column("track_id").to_pylist(), np.asarray(table.column("split").to_pylist()), y, tags, cats)


def _categories_for(tags) -> list[str]:
    from tagfold.pipeline.selected import load_selected
    sel = load_selected()
    return [sel.category_of(t) if t in sel.tags else "other" for t in tags]


LoaderFactory = Callable[..., Iterable]


def default_loader_factory(cfg: TrainConfig, device: str) -> LoaderFactory:
    """make_loader from training.loaders (issue 3), bound to this config."""
    try:
        from tagfold.training.loaders import make_loader
    except ImportError as e:
        raise SystemExit(f"tagfold train: the audio loaders (tagfold.training.loaders, issue 3) are missing: {e}")

    import pyarrow.parquet as pq
    labels = pq.read_table(cfg.labels)

    def factory(split: str, *, train: bool, seed: int, epoch: int, rank: int = 0, world: int = 1):
        return make_loader(cfg.prep, labels, split, input=cfg.input, batch_size=cfg.batch_size,
                           crop_samples=cfg.crop_samples, train=train, backend=cfg.backend,
                           device=device, num_workers=cfg.num_workers, seed=seed, rank=rank, world=world)
    return factory


# ----------------------------------------------------------------------------- helpers

def _distributed() -> tuple[int, int]:
    """(rank, world) under torchrun (RANK/WORLD_SIZE set), else (0, 1)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(cfg.device)


def _scheduler(opt, cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _epoch_metrics(y: np.ndarray, p: np.ndarray, tags) -> tuple[float, float]:
    import warnings
    from tagfold.training.metrics import UndefinedMetricWarning, score
    if len(y) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        # Small demo splits often lack a tag; the macro mean already leaves it out.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        s = score(y, p, tags)
    return s.macro_roc_auc, s.macro_pr_auc


def _to_device(x, y, device):
    # Pinned host memory + non_blocking lets the copy overlap with the previous step's kernels.
    if device.type == "cuda":
        if x.device.type == "cpu":
            x = x.pin_memory().to(device, non_blocking=True)
        if y.device.type == "cpu":
            y = y.pin_memory().to(device, non_blocking=True)
    return x.float(), y.float()


@torch.no_grad()
def validate(model, batches: Iterable, device, autocast) -> tuple[float, np.ndarray, np.ndarray]:
    model.eval()
    loss_sum = torch.zeros((), device=device)
    n, ys, ps = 0, [], []
    for x, y, _ in batches:
        x, y = _to_device(x, y, device)
        with autocast():
            logits = model(x).float()
        loss_sum += F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / y.shape[1]
        n += y.shape[0]
        ys.append(y)
        ps.append(torch.sigmoid(logits))
    if not n:
        return float("nan"), np.zeros((0, 0)), np.zeros((0, 0))
    # SYNC: one device->host copy per validation pass.
    return (loss_sum.item() / n, torch.cat(ys).cpu().numpy().astype(np.uint8),
            torch.cat(ps).float().cpu().numpy())


def _write_history(history: list[dict], out: Path, cfg: TrainConfig) -> None:
    import pyarrow as pa
    from tagfold.pipeline.io import write_parquet, write_text
    from tagfold.training.plots import plot_history

    cols = list(history[0])
    write_text(",".join(cols) + "\n" + "".join(",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c])
                                                         for c in cols) + "\n" for r in history),
               out / "history.csv")
    write_parquet(pa.table({c: [r[c] for r in history] for c in cols}), out / "history.parquet", cfg)
    plot_history(history, out / "curves.png", title=f"Stage {cfg.stage} {cfg.model}")


# ----------------------------------------------------------------------------- the loop

@dataclass
class FitResult:
    out: Path                   # the run folder
    model: torch.nn.Module      # this rank's model after the last epoch
    history: list[dict]


def fit(cfg: TrainConfig, loader_factory: LoaderFactory | None = None, *, quiet: bool = False) -> FitResult:
    """Train according to `cfg` (already resolved).

    `loader_factory(split, train=, seed=, epoch=)` yields (x, y, idx) batches; the default is
    training.loaders.make_loader. Each epoch's training loader is seeded from (seed, epoch), so
    a resumed run sees exactly the crops an uninterrupted one would. For the training split it
    also gets `rank=, world=` and must yield only this rank's share of the epoch's batches:
    global batches rank, rank + world, ..., with the same number of batches on every rank (each
    step is a gradient all-reduce that all ranks must join). Validation is not sharded.
    """
    from tqdm import tqdm

    rank, world = _distributed()
    device = _device(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    *_, tags, categories = read_labels(cfg.labels)
    loader_factory = loader_factory or default_loader_factory(cfg, str(device))
    use_bf16 = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else \
        (lambda: torch.autocast("cpu", enabled=False))

    _seed_all(cfg.seed)
    model = models.build(cfg.model, n_tags=len(tags), width=cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, cfg)
    start_epoch, best_pr, history = 0, -math.inf, []

    # Run ids: a fresh run claims the folder (refusing, or with --overwrite deleting, an earlier
    # run's files); --resume continues the folder's run and never reads another run's checkpoints.
    from tagfold.pipeline.io import check_same_run, folder_run_id
    labels_run = check_same_run([cfg.labels])
    check_same_run([Path(cfg.prep) / "index.parquet"])
    found = ckpt.load_latest(out, folder_run_id(out)) if cfg.resume else None
    if rank == 0 and found is None:
        if cfg.resume:
            print(f"tagfold train: --resume: no checkpoint of this folder's run in {out}, starting from scratch",
                  file=sys.stderr)
        run_id = ckpt.start_fresh(out, cfg.overwrite)
    else:
        run_id = folder_run_id(out)
    if found is not None:
        state, path = found
        if labels_run and state.get("labels_run") and state["labels_run"] != labels_run:
            raise UserError(f"{path}: trained on {cfg.labels} of labels run {state['labels_run']}, but the file "
                            f"now holds run {labels_run}: the labels changed; start a fresh run (--overwrite)")
        saved = state["config"]
        for key in ("model", "stage", "width", "labels"):
            if saved.get(key) != getattr(cfg, key):
                raise ValueError(f"{path}: --resume with {key}={getattr(cfg, key)!r} but the checkpoint "
                                 f"was trained with {key}={saved.get(key)!r}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, best_pr, history = state["epoch"], state["best_pr_auc"], list(state["history"])
        if not quiet and rank == 0:
            print(f"resumed from {path} after epoch {start_epoch}", file=sys.stderr)

    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # DDP broadcasts rank 0's parameters at construction, so every rank starts identical.
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if not quiet and rank == 0:
        print(f"config: {cfg}", file=sys.stderr)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        net.train()
        # Sharded at the loader: each rank reads and decodes only the batches it trains on.
        batches = loader_factory("train", train=True, seed=cfg.seed * 1_000_003 + epoch, epoch=epoch,
                                 rank=rank, world=world)
        loss_sum = torch.zeros((), device=device)
        n_seen, ys, ps = 0, [], []
        # first step whose loss is NaN/Inf, kept on the device: checking it every step would be a sync
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=quiet or rank != 0,
                   file=sys.stderr, leave=False)
        step = 0
        for x, y, _ in bar:
            x, y = _to_device(x, y, device)
            with autocast():
                logits = net(x).float()
            loss = F.binary_cross_entropy_with_logits(logits, y)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            opt.zero_grad(set_to_none=True)
            loss.backward()          # under DDP: gradient all-reduce (mean over ranks) here
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_sum += loss.detach() * y.shape[0]
            n_seen += y.shape[0]
            ys.append(y.detach())
            ps.append(torch.sigmoid(logits.detach()))
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        sched.step()
        if world > 1:
            # DDP broadcasts BatchNorm running statistics at the start of each forward, so after
            # the last step every rank still holds its own; make them rank 0's before validating.
            import torch.distributed as dist
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        if n_seen == 0:
            raise RuntimeError(f"epoch {epoch + 1}: the training loader yielded no batches "
                               f"(labels {cfg.labels}, split 'train')")
        # SYNC: epoch-end device->host copies of the training loss and predictions.
        if first_bad.item() >= 0:
            # raised before this epoch's checkpoint is written: the last good one stays the newest
            raise NonFiniteLoss(f"{out}: loss became NaN/Inf at epoch {epoch + 1}, step {first_bad.item() + 1}; "
                                f"stopped, last good checkpoint kept ({ckpt.epoch_path(out, epoch) if epoch else 'none'})")
        train_loss = loss_sum.item() / n_seen
        train_roc, train_pr = _epoch_metrics(torch.cat(ys).cpu().numpy().astype(np.uint8),
                                             torch.cat(ps).float().cpu().numpy(), tags)

        # Every rank validates the whole split on identical weights: no gather needed, and the
        # best-epoch decision is the same everywhere.
        val_loss, vy, vp = validate(model, loader_factory("valid", train=False, seed=cfg.seed, epoch=epoch),
                                    device, autocast)
        val_roc, val_pr = _epoch_metrics(vy, vp, tags)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
               "train_roc_auc": train_roc, "train_pr_auc": train_pr, "valid_loss": val_loss,
               "valid_roc_auc": val_roc, "valid_pr_auc": val_pr, "seconds": round(time.time() - t0, 3)}
        history.append(row)
        is_best = not math.isnan(val_pr) and val_pr > best_pr
        if is_best:
            best_pr = val_pr

        if rank == 0:
            state = {"config": dataclasses.asdict(cfg), "epoch": epoch + 1, "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                     "history": history, "best_pr_auc": best_pr, "tags": list(tags),
                     "categories": list(categories), "input": cfg.input,
                     "run_id": run_id, "labels_run": labels_run}
            # best.pt before the epoch file: a kill in between resumes from the previous epoch,
            # which redoes this one and rewrites best.pt identically.
            if is_best:
                ckpt.save(state, out / "best.pt")
            ckpt.save(state, ckpt.epoch_path(out, epoch + 1))
            ckpt.prune(out, cfg.keep)
            _write_history(history, out, cfg)
            if not quiet:
                print(f"epoch {epoch + 1}: train loss {train_loss:.4f} valid loss {val_loss:.4f} "
                      f"ROC-AUC {val_roc:.4f} PR-AUC {val_pr:.4f}{' (best)' if is_best else ''} "
                      f"[{row['seconds']:.1f} s]", file=sys.stderr)
    return FitResult(out, model, history)


# ----------------------------------------------------------------------------- CLI

def parse_args(argv: list[str]) -> TrainConfig:
    p = argparse.ArgumentParser(prog="tagfold train", description=__doc__.split("\n\n")[0])
    d = TrainConfig()
    p.add_argument("--stage", type=int, default=d.stage, choices=(1, 2, 3))
    p.add_argument("--input", default=d.input, choices=("wave", "mel"), help="picks the thesis model for this input")
    p.add_argument("--model", default="", choices=[""] + list(models.REGISTRY), help="overrides --input's model")
    p.add_argument("--data", default="", help="folder with prep/ and labels/ (default: build the demo)")
    p.add_argument("--prep", default="")
    p.add_argument("--labels", default="")
    p.add_argument("--out", default="")
    p.add_argument("--epochs", type=int, default=None, help="default 10 (demo: 8)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    p.add_argument("--step-epochs", type=int, default=d.step_epochs)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm, 0 = off")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default 1.0; demo 0.125)")
    p.add_argument("--crop-samples", type=int, default=d.crop_samples)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--backend", default=d.backend, choices=("torch", "dali", "auto"))
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="train steps per epoch, 0 = all")
    p.add_argument("--keep", type=int, default=d.keep)
    p.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's checkpoints and history in --out and start again "
                        "(without it a fresh run into such a folder refuses)")
    a = p.parse_args(argv)
    demo = not a.data and not a.labels
    return TrainConfig(
        stage=a.stage, input=a.input, model=a.model, data=a.data, prep=a.prep, labels=a.labels, out=a.out,
        epochs=a.epochs or (8 if demo else d.epochs), batch_size=a.batch_size, lr=a.lr, schedule=a.schedule,
        step_epochs=a.step_epochs, weight_decay=a.weight_decay, grad_clip=a.grad_clip,
        width=a.width or (0.125 if demo else 1.0), crop_samples=a.crop_samples, seed=a.seed, device=a.device,
        backend=a.backend, num_workers=a.num_workers, max_steps=a.max_steps, keep=a.keep, resume=a.resume,
        overwrite=a.overwrite)


def main(argv: list[str] | None = None) -> int:
    # Without --data the demo under $TAGFOLD_OUT/demo is used; `tagfold train` (tagfold.orchestrate)
    # builds it first. Training itself never builds data: that layer sits above it.
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    from tagfold.pipeline.io import OutputLocked, output_lock
    rank, _ = _distributed()
    try:
        cfg = cfg.resolved()
        if rank == 0:
            with output_lock(cfg.out):
                out = fit(cfg).out
        else:
            out = fit(cfg).out
    except (OutputLocked, ckpt.CheckpointError, FileNotFoundError, ValueError) as e:
        # the user's mistake or a damaged file: the message says which, a traceback would bury it
        print(f"tagfold train: {e}", file=sys.stderr)
        return 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if rank == 0:
        print(f"run folder: {out} (best.pt, epoch-*.pt, history.csv, curves.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
