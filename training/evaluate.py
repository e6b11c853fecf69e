"""`tagfold evaluate`: score checkpoints over a whole split and compare stages fairly.

    tagfold evaluate --checkpoint runs/s1/best.pt runs/s2/best.pt runs/s3/best.pt \\
        [--split test] [--n-chunks 16] [--latent demo/latent.parquet] --out reports/

Each track's prediction is the mean sigmoid over `n_chunks` evenly spaced crops (Won 2020), placed
and batched by training/inference.py, the path `tagfold predict` shares.
Each model is scored against
- `own`: the labels of the stage it was trained on (what the thesis reported; relabelling the
  test set with more positives changes the task, so these numbers are not comparable);
- `stage1`: the Stage I labels of the same tracks, one ground truth common to all stages;
- `latent`: the demo's true latent tags (or any human labels given with --latent), when present.
Outputs: tables overall.{md,csv} (thesis table 1) and by_category.{md,csv} (thesis table 2),
per_tag.csv, per-tag bar charts per_tag_{roc,pr}_auc_{truth}.png, predictions per model.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tagfold.training.inference import predict_tracks
from tagfold.training.metrics import score
from tagfold.pipeline.constants import ROMAN
from tagfold.pipeline.errors import UserError

TRUTHS = ("own", "stage1", "latent")


@dataclass(frozen=True)
class EvalConfig:
    checkpoints: tuple[str, ...]
    out: str
    split: str = "test"
    n_chunks: int = 16
    batch_tracks: int = 4
    latent: str = ""
    device: str = "auto"


@dataclass
class Entry:
    """One model's predictions on a split and the label matrices to score them against."""
    name: str
    model: str
    stage: int
    task: str          # what it was trained on, as the tables show it: 'II' (a stage) or 'msd-top50'
    tags: tuple[str, ...]
    categories: tuple[str, ...]
    track_ids: list
    scores: np.ndarray
    truths: dict[str, np.ndarray] = field(default_factory=dict)


def load_truth(path: str | Path, tags, track_ids) -> np.ndarray:
    """Label matrix [len(track_ids), len(tags)] from a wide (track_id + one column per tag) or
    long (track_id, tag) Parquet file. A track absent from the file is an error."""
    import pyarrow.parquet as pq

    path = Path(path)
    table = pq.read_table(path)
    if "track_id" not in table.column_names:
        raise UserError(f"{path}: no track_id column")
    ids = [str(t) for t in table.column("track_id").to_pylist()]
    row_of: dict[str, int] = {}
    if all(t in table.column_names for t in tags):
        mat = np.stack([np.asarray(table.column(t).to_pylist(), dtype=np.uint8) for t in tags], axis=1)
        row_of = {t: i for i, t in enumerate(ids)}
    elif "tag" in table.column_names or "tags" in table.column_names:
        # long: one (track_id, tag) per row; or a list<string> 'tags' column per track (demo latent)
        col = {t: j for j, t in enumerate(tags)}
        uniq = list(dict.fromkeys(ids))
        row_of = {t: i for i, t in enumerate(uniq)}
        mat = np.zeros((len(uniq), len(tags)), np.uint8)
        name = "tag" if "tag" in table.column_names else "tags"
        for tid, value in zip(ids, table.column(name).to_pylist()):
            for tag in ([value] if name == "tag" else (value or [])):
                if tag in col:
                    mat[row_of[tid], col[tag]] = 1
    else:
        raise UserError(f"{path}: expected a column per tag, a 'tag' column or a list 'tags' column")
    missing = [t for t in track_ids if str(t) not in row_of]
    if missing:
        raise UserError(f"{path}: {len(missing)} evaluated tracks are missing, e.g. track {missing[0]!r}")
    return mat[[row_of[str(t)] for t in track_ids]]


# ----------------------------------------------------------------------------- prediction

def load_model(path: str | Path, device="cpu"):
    """(model in eval mode, checkpoint state) from a checkpoint written by `tagfold train`."""
    import torch
    from tagfold.training import checkpoint as ckpt
    from tagfold.training import models

    state = ckpt.load(path)
    cfg = state.get("config") or {}
    if cfg.get("model") not in models.REGISTRY or not isinstance(cfg.get("width"), (int, float)) \
            or not state.get("tags"):
        raise ckpt.CheckpointError(f"{path}: holds {ckpt.describe(state)}; expected one of the models "
                                   f"{', '.join(models.REGISTRY)} with a width and a tag list (from `tagfold train`)")
    model = models.build(cfg["model"], n_tags=len(state["tags"]), width=cfg["width"])
    ckpt.load_weights(model, state, path, expected=f"the weights of that model ({ckpt.describe(state)})")
    return model.to(torch.device(device)).eval(), state


def featurizer(input_: str, device="cpu") -> Callable:
    """Raw 16 kHz chunks -> what the model eats (identity for 'wave', log-mel for 'mel')."""
    if input_ == "wave":
        return lambda x: x
    from tagfold.training.features import LogMel

    logmel = LogMel().to(device)
    return logmel


def _check_runs(path, state: dict) -> None:
    """The labels a checkpoint is scored on are those it was trained on (same labels run), and the
    label files read together (its stage's and Stage I's) come from one run; else UserError."""
    from tagfold.pipeline.io import check_same_run
    labels = Path(state["config"]["labels"])
    now = check_same_run([labels, labels.with_name("labels_stage1.parquet")])
    check_same_run([Path(state["config"]["prep"]) / "index.parquet"])   # not a prep run's stale index
    trained = state.get("labels_run")
    if trained and now and trained != now:
        raise UserError(f"{path}: trained on labels run {trained}, but {labels} now holds run {now}: "
                        "the labels changed since training; train again or evaluate on the labels it used")


def entry_from_checkpoint(path: str, cfg: EvalConfig, chunks_of: Callable | None = None) -> Entry:
    import torch
    from tagfold.pipeline.labels_schema import read_labels

    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else \
        ("cpu" if cfg.device == "auto" else cfg.device)
    model, state = load_model(path, device)
    tcfg = state["config"]
    _check_runs(path, state)
    track_ids, splits, y, tags, cats = read_labels(tcfg["labels"])
    if tuple(tags) != tuple(state["tags"]):
        raise UserError(f"{path}: trained on tags {state['tags'][:3]}... but {tcfg['labels']} has {tags[:3]}...")
    mask = splits == cfg.split
    if not mask.any():
        raise UserError(f"{tcfg['labels']}: no track in split {cfg.split!r} (splits: {sorted(set(splits))})")
    ids = [t for t, m in zip(track_ids, mask) if m]
    if chunks_of is None:
        from tagfold.training.loaders import eval_chunks
        chunks_of = lambda t: eval_chunks(tcfg["prep"], t, n_chunks=cfg.n_chunks,  # noqa: E731
                                          crop_samples=tcfg["crop_samples"])
    scores = predict_tracks(model, featurizer(tcfg["input"], device), chunks_of, ids,
                            batch_tracks=cfg.batch_tracks, device=device, desc=Path(path).parent.name)
    stage = int(tcfg["stage"])
    # A published benchmark's labels are not a stage's: its entry is named by the benchmark.
    task = tcfg.get("benchmark") or ROMAN[stage]
    entry = Entry(name=f"{_task_title(task)} {tcfg['model']}", model=tcfg["model"], stage=stage, task=task,
                  tags=tuple(tags), categories=tuple(cats), track_ids=ids, scores=scores)
    entry.truths["own"] = y[mask]
    stage1 = Path(tcfg["labels"]).with_name("labels_stage1.parquet")
    if stage1.exists() and not tcfg.get("benchmark"):    # a published benchmark's labels are the truth
        entry.truths["stage1"] = load_truth(stage1, tags, ids)
    latent = cfg.latent or str(Path(tcfg["data"]) / "demo-data" / "latent.parquet")
    if latent and Path(latent).exists():
        entry.truths["latent"] = load_truth(latent, tags, ids)
    return entry


# ----------------------------------------------------------------------------- tables

def _task_title(task: str) -> str:
    return f"Stage {task}" if task in ROMAN.values() else task



def score_entries(entries: list[Entry], split: str = "test") -> list[dict]:
    """One row per (entry, truth, tag) with n_pos, roc_auc, pr_auc, plus the aggregates."""
    rows = []
    for e in entries:
        for truth, y in e.truths.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                s = score(y, e.scores, e.tags, context=f"{e.name} vs {truth} labels, split {split}")
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
            rows.append({"entry": e, "truth": truth, "scores": s})
    return rows


def _fmt(v: float) -> str:
    return "undefined" if np.isnan(v) else f"{100 * v:.2f}"


def _md(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def _csv(header: list[str], body: list[list[str]]) -> str:
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(body)
    return buf.getvalue()


def tables(scored: list[dict]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Thesis table 1 (overall by model and stage) and table 2 (by category and stage), per truth."""
    overall_h = ["model", "stage", "truth", "macro ROC-AUC", "macro PR-AUC", "micro ROC-AUC", "micro PR-AUC",
                 "defined tags"]
    overall = []
    for r in sorted(scored, key=lambda r: (TRUTHS.index(r["truth"]), r["entry"].model, r["entry"].stage, r["entry"].task)):
        e, s = r["entry"], r["scores"]
        overall.append([e.model, e.task, r["truth"], _fmt(s.macro_roc_auc), _fmt(s.macro_pr_auc),
                        _fmt(s.micro_roc_auc), _fmt(s.micro_pr_auc), f"{s.n_defined}/{len(e.tags)}"])
    stages = [t for _, t in sorted({(r["entry"].stage, r["entry"].task) for r in scored})]
    cat_h = ["model", "truth", "category"] + [f"ROC-AUC {_task_title(s)}" for s in stages] + \
        [f"PR-AUC {_task_title(s)}" for s in stages]
    by_cat = []
    groups: dict[tuple, dict[int, dict]] = {}
    for r in scored:
        e = r["entry"]
        groups.setdefault((e.model, r["truth"]), {})[e.task] = r["scores"].by_category(e.categories)
    for (model, truth), per_stage in sorted(groups.items(), key=lambda kv: (kv[0][0], TRUTHS.index(kv[0][1]))):
        cats = sorted({c for d in per_stage.values() for c in d})
        for cat in cats:
            roc = [_fmt(per_stage[s][cat]["roc_auc"]) if s in per_stage else "" for s in stages]
            pr = [_fmt(per_stage[s][cat]["pr_auc"]) if s in per_stage else "" for s in stages]
            by_cat.append([model, truth, cat, *roc, *pr])
    return {"overall": (overall_h, overall), "by_category": (cat_h, by_cat)}


def write_report(scored: list[dict], out: str | Path, cfg=None) -> Path:
    import pyarrow as pa
    from tagfold.pipeline.io import write_parquet, write_text
    from tagfold.training.plots import plot_per_tag

    out = Path(out)
    for name, (header, body) in tables(scored).items():
        write_text(_md(header, body), out / f"{name}.md")
        write_text(_csv(header, body), out / f"{name}.csv")
    per_tag = {k: [] for k in ("model", "stage", "truth", "tag", "category", "n_pos", "roc_auc", "pr_auc")}
    for r in scored:
        e, s = r["entry"], r["scores"]
        for j, tag in enumerate(e.tags):
            for k, v in (("model", e.model), ("stage", e.task), ("truth", r["truth"]), ("tag", tag),
                         ("category", e.categories[j]), ("n_pos", int(s.n_pos[j])),
                         ("roc_auc", float(s.roc_auc[j])), ("pr_auc", float(s.pr_auc[j]))):
                per_tag[k].append(v)
    table = pa.table(per_tag)
    write_parquet(table, out / "per_tag.parquet", cfg)
    header = list(per_tag)
    write_text(_csv(header, [[("" if isinstance(v, float) and np.isnan(v) else v) for v in row]
                             for row in zip(*per_tag.values())]), out / "per_tag.csv")
    for truth in TRUTHS:
        chosen = [r for r in scored if r["truth"] == truth]
        if not chosen:
            continue
        e0 = chosen[0]["entry"]
        for metric in ("roc_auc", "pr_auc"):
            values = {r["entry"].name: getattr(r["scores"], metric) for r in chosen if r["entry"].tags == e0.tags}
            plot_per_tag(e0.tags, values, e0.categories, out / f"per_tag_{metric}_{truth}.png",
                         metric=f"{metric.replace('_', '-').upper()} vs {truth} labels")
    return out


def main(argv: list[str] | None = None) -> int:
    from tagfold.pipeline.options import COUNT, parser

    p = parser("tagfold evaluate", __doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="+", required=True, help="one or more checkpoints (e.g. each stage's best.pt)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="which split's tracks to score")
    p.add_argument("--n-chunks", type=COUNT, default=16, help="evenly spaced crops per track, scores averaged")
    p.add_argument("--batch-tracks", type=COUNT, default=4, help="tracks per inference batch")
    p.add_argument("--latent", default="", help="common ground-truth labels (default: the demo's latent.parquet)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, help="output folder (overall.md, by_category.md, per_tag.csv, PNGs)")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    cfg = EvalConfig(checkpoints=tuple(a.checkpoint), out=a.out, split=a.split, n_chunks=a.n_chunks,
                     batch_tracks=a.batch_tracks, latent=a.latent, device=a.device)
    from tagfold.pipeline.io import output_lock
    with output_lock(cfg.out):
        return _run(cfg)


def _run(cfg: EvalConfig) -> int:
    import pyarrow as pa
    from tagfold.pipeline.io import write_parquet

    entries = [entry_from_checkpoint(c, cfg) for c in cfg.checkpoints]
    for e in entries:
        cols = {"track_id": pa.array([str(t) for t in e.track_ids])}
        cols.update({t: pa.array(e.scores[:, j], pa.float32()) for j, t in enumerate(e.tags)})
        task = f"stage{e.stage}" if e.task in ROMAN.values() else e.task
        write_parquet(pa.table(cols), Path(cfg.out) / f"predictions_{task}_{e.model}.parquet", cfg)
    scored = score_entries(entries, cfg.split)
    write_report(scored, cfg.out, cfg)
    header, body = tables(scored)["overall"]
    print(_md(header, body))
    first = entries[0]
    chance = ", ".join(f"{chance_macro_pr_auc(y):.3f} vs {truth} labels" for truth, y in first.truths.items())
    print(f"evaluate: split {cfg.split}, {len(first.track_ids)} tracks x {cfg.n_chunks} chunks; chance level "
          f"(random scores): macro ROC-AUC 0.500, macro PR-AUC {chance}", file=sys.stderr)
    print(f"wrote {cfg.out}/overall.md, by_category.md, per_tag.csv, per_tag_*.png", file=sys.stderr)
    return 0


def chance_macro_pr_auc(y: np.ndarray) -> float:
    """Macro PR-AUC random scores get in expectation on labels `y` [tracks, tags], over the tags
    the metrics can score (a positive and a negative): the chance level to read results against."""
    from tagfold.pipeline.labels import expected_random_ap

    n, positives = len(y), y.sum(axis=0)
    ap = [expected_random_ap(n, int(r)) for r in positives if 0 < r < n]
    return float(np.mean(ap)) if ap else float("nan")


if __name__ == "__main__":
    sys.exit(main())
