"""`tagfold train`: train a tagging model on one stage's labels.

    tagfold train --stage 2 --input wave                      # demo data, end to end
    tagfold train --stage 3 --model shortchunk_resnet --data DIR --epochs 20 --out runs/s3
    tagfold train ... --resume                                 # continue a killed run exactly
    tagfold train --benchmark msd-top50 --model shortchunk_resnet --schedule won2020 --preset won2020 \\
        --data DIR                                             # Won et al. 2020 on the MSD top-50 task
    torchrun --nproc_per_node 4 -m tagfold.training.train ...  # several GPUs (or CPU, gloo)

`--data DIR` holds `prep/` (the audio-prep output that training.loaders reads) and
`labels/labels_stage{1,2,3}.parquet` (from `tagfold labels`); `--prep` / `--labels` override.
Without `--data` the demo under $TAGFOLD_OUT/demo is used; the `tagfold train` command
(tagfold.orchestrate.train_main) builds it first (demo-data -> tag pipeline -> labels ->
prep-audio), each step skipped when its output already exists.

The loop in `fit` reads top to bottom. Every CPU<->GPU synchronisation is marked `SYNC`.
"""
from __future__ import annotations

import dataclasses
import json
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
from tagfold.pipeline.constants import ROMAN
from tagfold.pipeline.errors import UserError
from tagfold.pipeline.labels_schema import read_labels  # noqa: F401 - training's reader of the labels file

from tagfold.training.config import (  # noqa: F401 - re-exported: the config is part of train's API
    BENCHMARKS, PRESETS, SCHEDULES, WON2020_EPOCHS, WON2020_PHASES, WON2020_WEIGHT_DECAY, Phase, TrainConfig,
    parse_args, phase_at, schedule_phases)


class NonFiniteLoss(ValueError):
    """The training loss became NaN or Inf: the run stops before saving that epoch."""


# ----------------------------------------------------------------------------- data

LoaderFactory = Callable[..., Iterable]


def default_loader_factory(cfg: TrainConfig, device: str) -> LoaderFactory:
    """make_loader from training.loaders, bound to this config."""
    from tagfold.training.loaders import make_loader

    import pyarrow.parquet as pq
    labels = pq.read_table(cfg.labels)

    def factory(split: str, *, train: bool, seed: int, epoch: int, rank: int = 0, world: int = 1):
        if not train and cfg.val_chunks > 1:
            return chunk_batches(cfg, labels, split, device)
        return make_loader(cfg.prep, labels, cfg.train_split if train else split, input=cfg.input,
                           batch_size=cfg.batch_size, crop_samples=cfg.crop_samples, train=train,
                           backend=cfg.backend, device=device, num_workers=cfg.num_workers, seed=seed, rank=rank,
                           world=world, augment=cfg.augment() if train else None)
    return factory


def chunk_batches(cfg: TrainConfig, labels, split: str, device: str) -> Iterable:
    """Validation over `cfg.val_chunks` evenly spaced crops per track (the chunks `tagfold evaluate`
    scores): batches of whole tracks, their chunks consecutive in x, about `batch_size` crops each."""
    from tagfold.training.features import LogMel
    from tagfold.training.loaders import ShardStore, eval_chunks, split_rows

    tids, y, rows = split_rows(cfg.prep, labels, split)
    store = ShardStore(cfg.prep)
    mel = LogMel().to(device) if cfg.input == "mel" else None
    per_batch = max(1, cfg.batch_size // cfg.val_chunks)
    for s in range(0, len(tids), per_batch):
        x = torch.from_numpy(np.concatenate([eval_chunks(cfg.prep, t, cfg.val_chunks, cfg.crop_samples, store)
                                             for t in tids[s:s + per_batch]])).to(device)
        if mel is not None:
            with torch.no_grad():
                x = mel(x)
        yield x, torch.from_numpy(y[s:s + per_batch]), torch.from_numpy(rows[s:s + per_batch])


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


def _optimizer(model, phase: Phase, cfg: TrainConfig):
    if phase.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=0.9, nesterov=True,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=phase.lr, weight_decay=cfg.weight_decay)


def _switch_phase(model, opt, phase: Phase, cfg: TrainConfig, out: Path, world: int, quiet: bool):
    """Start `phase` as Won et al. do: reload the best model so far (best.pt; the current weights
    when no epoch has been best yet), then a new optimiser when its kind changes, else the same one
    (its momentum kept; fit sets the new rate)."""
    if world > 1:
        import torch.distributed as dist
        dist.barrier()      # rank 0 wrote best.pt at the end of the previous epoch
    best = out / "best.pt"
    source = "the current weights (no best epoch yet)"
    if best.exists():
        state = ckpt.load(best)
        model.load_state_dict(state["model"])
        source = f"best.pt (epoch {state['epoch']})"
    if (phase.optimizer == "sgd") != isinstance(opt, torch.optim.SGD):
        opt = _optimizer(model, phase, cfg)
    if not quiet:
        print(f"schedule {cfg.schedule}: from epoch {phase.first_epoch + 1}, {phase.optimizer} at lr {phase.lr:g}, "
              f"continuing from {source}", file=sys.stderr)
    return opt


def _scheduler(opt, cfg: TrainConfig):
    if cfg.schedule == "won2020":
        return None     # fit sets each epoch's rate from its phase
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
    """(mean BCE per track and tag, labels, scores). A batch may hold several chunks per track,
    consecutive in x (x has chunks x tracks rows, y one row per track): the loss is then the mean
    over the chunks (as Won et al.'s validation) and a track's score the mean of its chunks' sigmoids."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    n, ys, ps = 0, [], []
    for x, y, _ in batches:
        x, y = _to_device(x, y, device)
        chunks = x.shape[0] // y.shape[0]
        with autocast():
            logits = model(x).float()
        loss_sum += F.binary_cross_entropy_with_logits(logits, y.repeat_interleave(chunks, dim=0),
                                                       reduction="sum") / (y.shape[1] * chunks)
        n += y.shape[0]
        ys.append(y)
        ps.append(torch.sigmoid(logits).view(y.shape[0], chunks, -1).mean(dim=1))
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
    plot_history(history, out / "curves.png", title=f"Stage {ROMAN[cfg.stage]} {cfg.model}")


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
    if cfg.benchmark:
        from tagfold.pipeline.io import read_config
        made_for = read_config(cfg.labels).get("benchmark")
        if made_for != cfg.benchmark:
            raise UserError(f"{cfg.labels}: not the {cfg.benchmark} labels (made for {made_for or 'no benchmark'}); "
                            f"make them with `tagfold labels --benchmark {cfg.benchmark}`")
    loader_factory = loader_factory or default_loader_factory(cfg, str(device))
    use_bf16 = device.type == "cuda" and cfg.precision == "bf16"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else \
        (lambda: torch.autocast(device.type, enabled=False))

    _seed_all(cfg.seed)
    model = models.build(cfg.model, n_tags=len(tags), width=cfg.width).to(device)
    phases = schedule_phases(cfg)
    opt = _optimizer(model, phases[0], cfg)
    sched = _scheduler(opt, cfg)
    start_epoch, history = 0, []
    # best.pt: the epoch with the highest validation macro PR-AUC, or the lowest validation loss
    best_pr, best_loss = -math.inf, math.inf

    # Run ids: a fresh run claims the folder (refusing, or with --overwrite deleting, an earlier
    # run's files); --resume continues the folder's run and never reads another run's checkpoints.
    from tagfold.pipeline.io import check_same_run, folder_run_id, start_run
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
        saved = state.get("config") or {}
        for key in ("model", "stage", "width", "labels"):
            if saved.get(key) != getattr(cfg, key):
                raise UserError(f"{path}: --resume with {key}={getattr(cfg, key)!r} but the checkpoint "
                                 f"was trained with {key}={saved.get(key)!r}")
        ckpt.load_weights(model, state, path, expected=f"model {cfg.model!r} width {cfg.width} for the "
                                                       f"{len(tags)} tags of {cfg.labels}")
        start_epoch, history = state["epoch"], list(state["history"])
        # the optimiser the saved state belongs to: that of the last finished epoch's phase
        opt = _optimizer(model, phase_at(phases, max(start_epoch - 1, 0)), cfg)
        sched = _scheduler(opt, cfg)    # before the optimiser's state: building a scheduler steps the rate
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        best_pr, best_loss = state["best_pr_auc"], state.get("best_valid_loss", math.inf)
        if not quiet and rank == 0:
            print(f"resumed from {path} after epoch {start_epoch}", file=sys.stderr)

    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # DDP broadcasts rank 0's parameters at construction, so every rank starts identical.
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if not quiet and rank == 0:
        from tagfold.pipeline.io import config_dict, write_text
        from tagfold.training.loaders import choose_backend

        write_text(json.dumps(config_dict(cfg), indent=1), out / "config.json")
        how = "chosen by --device auto" if cfg.device == "auto" else "as given"
        print(f"train: model {cfg.model} width {cfg.width:g}, "
              f"{f'the {cfg.benchmark}' if cfg.benchmark else f'Stage {ROMAN[cfg.stage]}'} labels ({len(tags)} tags), "
              f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} of batch {cfg.batch_size}, lr {cfg.lr:g} ({cfg.schedule}); device {device} "
              f"({how}), loader {choose_backend(cfg.prep, cfg.backend, str(device))}"
              f"{' (chosen by --backend auto)' if cfg.backend == 'auto' else ''}; full config in {out}/config.json",
              file=sys.stderr)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        phase = phase_at(phases, epoch)
        if epoch > 0 and phase != phase_at(phases, epoch - 1):
            opt = _switch_phase(model, opt, phase, cfg, out, world, quiet=quiet or rank != 0)
        if sched is None:
            for group in opt.param_groups:
                group["lr"] = phase.lr
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
        if sched is not None:
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
        if cfg.select == "loss":
            is_best = not math.isnan(val_loss) and val_loss < best_loss
        else:
            # 'last': a final fit on train+valid has no held-out split to choose by; keep the last epoch
            is_best = cfg.select == "last" or (not math.isnan(val_pr) and val_pr > best_pr)
        if is_best:
            best_pr, best_loss = val_pr, val_loss

        if rank == 0:
            state = {"config": dataclasses.asdict(cfg), "epoch": epoch + 1, "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else {},
                     "rng": _rng_state(), "history": history, "best_pr_auc": best_pr,
                     "best_valid_loss": best_loss, "tags": list(tags),
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
                      f"macro ROC-AUC {val_roc:.4f} macro PR-AUC {val_pr:.4f}{' (best)' if is_best else ''} "
                      f"[{row['seconds']:.1f} s]", file=sys.stderr)
    return FitResult(out, model, history)


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    # Without --data the demo under $TAGFOLD_OUT/demo is used; `tagfold train` (tagfold.orchestrate)
    # builds it first. Training itself never builds data: that layer sits above it.
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    from tagfold.pipeline.io import output_lock
    rank, _ = _distributed()
    started = time.time()
    cfg = cfg.resolved()
    if rank == 0:
        with output_lock(cfg.out):
            out = fit(cfg).out
    else:
        out = fit(cfg).out
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if rank == 0:
        print(f"trained in {time.time() - started:.0f} s; run folder: {out} (best.pt, epoch-*.pt, history.csv, "
              f"curves.png, config.json)")
        # the folder make evaluate uses: out/train/stage2-wave -> out/eval-wave
        print(f"next: tagfold evaluate --checkpoint {out}/best.pt --out {Path(cfg.out).parent.parent}/eval-{cfg.input}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
