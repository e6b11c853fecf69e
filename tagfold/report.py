"""The experiment's report: report.md beside figures/*.png, and one self-contained report.html (the same
tables, figures embedded as base64 PNG: it opens from disk with no network). Both written atomically.

Every cell of the thesis's tables is a mean over seeds with a 95% interval from a two-level bootstrap
(seeds and test tracks, tagfold.stats); the paired differences Stage II - I and III - I are computed
inside each bootstrap replicate on the same tracks, so their interval is the one that answers the
question "does the stage help?".
"""
from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagfold import stats
from tagfold.pipeline.constants import ROMAN
from tagfold.training.evaluate import TRUTHS

TRUTH_TEXT = {"own": "own stage's labels", "stage1": "Stage I labels", "latent": "latent (true) tags"}
CATEGORY_COLOURS = {"genre": "#1f77b4", "emotion": "#d62728", "descriptive": "#2ca02c", "number": "#9467bd",
                    "other": "#7f7f7f"}


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _pct(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{100 * v:.1f}"


def _cell(point: float, lo: float, hi: float, signed: bool = False) -> str:
    if not np.isfinite(point):
        return "n/a"
    f = (lambda v: f"{100 * v:+.1f}") if signed else (lambda v: f"{100 * v:.1f}")
    return f"{f(point)} [{f(lo)}, {f(hi)}]"


# ----------------------------------------------------------------------------- scoring

class Scorer:
    """Point values and bootstrap replicates of macro ROC/PR-AUC per (model, stage, seed, truth)."""

    def __init__(self, results, n_boot: int, boot_seed: int):
        self.ok = [r for r in results if r.scores is not None]
        self.n_boot, self.boot_seed = n_boot, boot_seed
        ref = self.ok[0]
        for r in self.ok[1:]:
            if r.track_ids != ref.track_ids or r.tags != ref.tags:
                raise ValueError(f"{r.run.folder}: scored on other tracks or tags than {ref.run.folder}")
        self.track_ids, self.tags, self.categories = ref.track_ids, ref.tags, ref.categories
        self.weights = stats.bootstrap_weights(len(self.track_ids), n_boot, boot_seed)
        self._cache: dict = {}

    def cats(self) -> list[str]:
        return list(dict.fromkeys(self.categories))

    def get(self, r, truth: str, category: str | None = None):
        """(roc point, pr point, roc [B], pr [B]) for one run."""
        key = (r.run.folder, truth, category)
        if key not in self._cache:
            cols = None if category is None else [j for j, c in enumerate(self.categories) if c == category]
            y = r.truths[truth]
            roc_p, pr_p = stats.macro_auc(y, r.scores, np.ones((1, len(y))), cols)
            roc_b, pr_b = stats.macro_auc(y, r.scores, self.weights, cols)
            self._cache[key] = (float(roc_p[0]), float(pr_p[0]), roc_b, pr_b)
        return self._cache[key]

    def runs(self, model: str, stage: int) -> dict[int, object]:
        return {r.run.seed: r for r in self.ok if r.run.model == model and r.run.stage == stage}

    def cell(self, model, stage, truth, category=None):
        """Mean over seeds and 95% interval, for ROC and PR: ((p, lo, hi), (p, lo, hi))."""
        runs = [r for r in self.runs(model, stage).values() if truth in r.truths]
        if not runs:
            nan = (float("nan"),) * 3
            return nan, nan
        vals = [self.get(r, truth, category) for r in runs]
        draws = stats.seed_draws(len(runs), self.n_boot, self.boot_seed)
        out = []
        for point_i, boot_i in ((0, 2), (1, 3)):
            point = float(np.nanmean([v[point_i] for v in vals])) if any(np.isfinite(v[point_i]) for v in vals) \
                else float("nan")
            reps = stats.two_level_bootstrap(np.stack([v[boot_i] for v in vals]), draws)
            out.append((point, *stats.interval(reps, point)))
        return tuple(out)

    def paired(self, model, stage_a, stage_b, truth, category=None):
        """Stage b - stage a on the same tracks, seed k against seed k: ((p, lo, hi) ROC, (..) PR)."""
        a, b = self.runs(model, stage_a), self.runs(model, stage_b)
        seeds = [s for s in a if s in b and truth in a[s].truths and truth in b[s].truths]
        if not seeds:
            nan = (float("nan"),) * 3
            return nan, nan
        draws = stats.seed_draws(len(seeds), self.n_boot, self.boot_seed)
        out = []
        for point_i, boot_i in ((0, 2), (1, 3)):
            va = [self.get(a[s], truth, category) for s in seeds]
            vb = [self.get(b[s], truth, category) for s in seeds]
            point = float(np.mean([y[point_i] - x[point_i] for x, y in zip(va, vb)]))
            reps = stats.two_level_bootstrap(np.stack([y[boot_i] - x[boot_i] for x, y in zip(va, vb)]), draws)
            out.append((point, *stats.interval(reps, point)))
        return tuple(out)


# ----------------------------------------------------------------------------- tables

def _truths_scored(scorer) -> list[str]:
    present = {t for r in scorer.ok for t in r.truths}
    return [t for t in TRUTHS if t in present]


def overall_table(cfg, scorer, truths) -> Table:
    header = ["model", "stage"] + [f"{m} vs {TRUTH_TEXT[t]}" for t in truths for m in ("ROC-AUC", "PR-AUC")]
    rows = []
    for model in cfg.models:
        for stage in cfg.stages:
            row = [model, ROMAN[stage]]
            for t in truths:
                roc, pr = scorer.cell(model, stage, t)
                row += [_cell(*roc), _cell(*pr)]
            rows.append(row)
    return Table("Table 1: overall (macro over tags, test split, %)", header, rows,
                 f"Mean over seeds [95% interval over seeds and {cfg.n_boot} bootstrap resamples of the "
                 f"{len(scorer.track_ids)} test tracks]. 'own' labels differ per stage (the thesis's way; not "
                 "comparable across stages); Stage I labels and the latent tags are common to all stages.")


def category_table(cfg, scorer, truth) -> Table:
    header = ["model", "category"] + [f"{m} Stage {ROMAN[s]}" for m in ("ROC-AUC", "PR-AUC") for s in cfg.stages]
    rows = []
    for model in cfg.models:
        for cat in scorer.cats():
            cells = {s: scorer.cell(model, s, truth, cat) for s in cfg.stages}
            n = sum(c == cat for c in scorer.categories)
            rows.append([model, f"{cat} ({n} tags)"] + [_cell(*cells[s][0]) for s in cfg.stages]
                        + [_cell(*cells[s][1]) for s in cfg.stages])
    return Table(f"Table 2: per category vs {TRUTH_TEXT[truth]} (macro within category, test split, %)",
                 header, rows, "Mean over seeds [95% interval]; n/a: no tag of the category has a test positive.")


def paired_table(cfg, scorer, common) -> Table:
    header = ["model", "truth", "difference", "ROC-AUC", "PR-AUC", "PR-AUC interval excludes 0"]
    rows = []
    for model in cfg.models:
        for t in common:
            for s in cfg.stages:
                if s == 1 or 1 not in cfg.stages:
                    continue
                roc, pr = scorer.paired(model, 1, s, t)
                excl = "n/a" if not np.isfinite(pr[1]) else ("yes" if pr[1] > 0 or pr[2] < 0 else "no")
                rows.append([model, TRUTH_TEXT[t], f"Stage {ROMAN[s]} - I", _cell(*roc, signed=True),
                             _cell(*pr, signed=True), excl])
    return Table("Paired differences on the common truths (percentage points)", header, rows,
                 "Seed k of one stage against seed k of the other (same initialisation and crops), on the same "
                 "bootstrap resamples of the test tracks; interval 95%.")


def label_quality_table(cfg, data: Path, truth: str, tags) -> Table | None:
    """Precision and recall of each stage's label matrix (all tracks) against the truth."""
    import pyarrow.parquet as pq
    from tagfold.training.evaluate import load_truth

    if not truth:
        return None
    header = ["stage", "positives", "precision", "recall"]
    rows, cats = [], None
    for s in cfg.stages:
        path = data / "labels" / f"labels_stage{s}.parquet"
        if not path.exists():
            continue
        t = pq.read_table(path)
        ids = t.column("track_id").to_pylist()
        y = np.stack([t.column(g).to_numpy() for g in tags], 1).astype(bool)
        z = load_truth(truth, tags, ids).astype(bool)
        tp = int((y & z).sum())
        rows.append([ROMAN[s], f"{int(y.sum()):,}", _pct(tp / max(1, y.sum())), _pct(tp / max(1, z.sum()))])
        cats = cats or int(z.sum())
    return Table("Label quality: each stage's labels against the latent tags (all tracks, %)", header, rows,
                 f"Pairs (track, tag); the latent tags hold {cats:,} positives." if cats else "")


def demo_tag_table(data: Path) -> Table | None:
    """On the demo: how its raw tags that name a latent tag only by meaning fare in Stage II and III."""
    import csv

    import pyarrow.parquet as pq
    from tagfold.pipeline.tags import tagnoise

    tags_csv, s2, s3 = data / "demo-data" / "tags.csv", data / "tags" / "stage2.parquet", data / "tags" / "stage3.parquet"
    if not (tags_csv.exists() and s2.exists() and s3.exists()):
        return None
    meant = {w: t for t, ws in tagnoise.meaning_words().items() for w in ws}
    with open(tags_csv, newline="", encoding="utf-8") as f:
        raw = [t for row in csv.DictReader(f) for t in row["tags"].split(";") if t]

    def mapping(path):
        out: dict[str, set] = {}
        for r in pq.read_table(path, columns=["tag", "target"]).to_pylist():
            if r["target"]:
                out.setdefault(r["tag"], set()).add(r["target"])
        return out
    m2, m3 = mapping(s2), mapping(s3)
    from tagfold.pipeline.selected import load_selected
    selected = set(load_selected().tags)
    unmapped = [t for t in raw if t not in m2 and t not in selected]
    distinct = sorted({t for t in raw if t in meant})
    right2 = sum(meant[t] in m2.get(t, ()) for t in distinct)
    right3 = sum(meant[t] in m3.get(t, ()) for t in distinct)
    new3 = sorted(t for t in m3 if t not in m2)
    rows = [["raw track-tag rows", f"{len(raw):,}"],
            ["rows Stage II leaves unmapped", f"{len(unmapped):,}"],
            ["... of which name a latent tag by meaning", f"{sum(t in meant for t in unmapped):,} "
             f"({_pct(sum(t in meant for t in unmapped) / max(1, len(unmapped)))}%)"],
            ["distinct meaning-only tags used", f"{len(distinct)}"],
            ["... mapped to their latent tag by Stage II (rules)", f"{right2}"],
            ["... mapped to their latent tag by Stage III (rules + embedding)", f"{right3}"],
            ["tags Stage III folds beyond Stage II", f"{len(new3)}" + (": " if new3 else "") + ", ".join(
                f"'{t}' -> {'; '.join(sorted(m3[t]))}" for t in new3[:12]) + (" ..." if len(new3) > 12 else "")]]
    return Table("Demo raw tags that carry a latent tag by meaning only", ["", "count"], rows,
                 "Word lists: pipeline/data/demo/ (written apart from the Stage II rule tables). Reference "
                 "for real tags: 21 of the 211 certain rows of gold_stage3_dev.tsv (tags spelling rules tend "
                 "not to map) carry a target.")


def runs_table(results) -> Table:
    rows = []
    for r in results:
        h = r.history
        best = max((row for row in h if np.isfinite(row.get("valid_pr_auc", np.nan))),
                   key=lambda row: row["valid_pr_auc"], default=None)
        rows.append([r.run.name, r.status.get("status", "?"),
                     str(best["epoch"]) if best else "-", _pct(best["valid_pr_auc"]) if best else "-",
                     f"{r.status.get('seconds', float('nan')):.0f}",
                     r.status.get("reason", "")])
    return Table("Runs", ["run", "status", "best epoch", "valid macro PR-AUC", "seconds", "failure"], rows,
                 "Run folders: runs/<run>-<config hash>/ (train/ holds checkpoints and history).")


# ----------------------------------------------------------------------------- figures

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def fig_curves(cfg, results, model) -> bytes:
    plt = _plt()
    stages = list(cfg.stages)
    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 2.6 * len(stages)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, s in enumerate(stages):
        ax_loss, ax_pr = axes[i]
        for k, seed in enumerate(cfg.seeds):
            r = next((r for r in results if r.run.model == model and r.run.stage == s and r.run.seed == seed), None)
            if r is None or not r.history:
                continue
            c = colours[k % len(colours)]
            ep = [h["epoch"] for h in r.history]
            ax_loss.plot(ep, [h["train_loss"] for h in r.history], "-", color=c, label=f"seed {seed} train")
            ax_loss.plot(ep, [h["valid_loss"] for h in r.history], "--", color=c, label=f"seed {seed} valid")
            pr = [h["valid_pr_auc"] for h in r.history]
            ax_pr.plot(ep, pr, "-o", color=c, markersize=3, label=f"seed {seed}")
            if any(np.isfinite(pr)):
                b = int(np.nanargmax(pr))
                ax_pr.plot(ep[b], pr[b], "*", color=c, markersize=14, markeredgecolor="black")
            if r.status.get("status") == "failed":
                ax_pr.annotate("NaN loss: stopped", (ep[-1] if ep else 0, 0), fontsize=8, color="red")
        ax_loss.set_title(f"{model}, Stage {ROMAN[s]}: BCE loss (train -, valid --)", fontsize=9)
        ax_pr.set_title(f"{model}, Stage {ROMAN[s]}: valid macro PR-AUC (* best epoch)", fontsize=9)
        for ax in (ax_loss, ax_pr):
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        if ax_pr.get_legend_handles_labels()[0]:      # no curve when the run left no history
            ax_pr.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def fig_per_tag(cfg, scorer, model, truth, metric) -> bytes:
    """Per-tag bars (one per stage, mean over seeds), grouped and coloured by category, chance marked."""
    plt = _plt()
    tags, cats = scorer.tags, scorer.categories
    order = sorted(range(len(tags)), key=lambda j: (list(dict.fromkeys(cats)).index(cats[j]), j))
    y_any = next(r.truths[truth] for r in scorer.ok if truth in r.truths)
    n_pos = y_any.sum(axis=0)
    prevalence = n_pos / max(1, len(y_any))
    stages = list(cfg.stages)
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(10, 0.32 * len(tags)), 4.6))
    x = np.arange(len(tags))
    alphas = np.linspace(0.35, 1.0, len(stages))
    for k, s in enumerate(stages):
        runs = [r for r in scorer.runs(model, s).values() if truth in r.truths]
        if not runs:
            continue
        from tagfold.stats import weighted_auc
        vals = []
        for j in order:
            per = [weighted_auc(r.truths[truth][:, j], r.scores[:, j], np.ones(len(r.track_ids)))[
                0 if metric == "roc" else 1][0] for r in runs]
            vals.append(np.nanmean(per) if np.isfinite(per).any() else np.nan)
        colours = [CATEGORY_COLOURS.get(cats[j], "#7f7f7f") for j in order]
        ax.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(vals), width, color=colours, alpha=alphas[k],
               edgecolor="black", linewidth=0.3, label=f"Stage {ROMAN[s]}")
    chance = [0.5] * len(order) if metric == "roc" else [prevalence[j] for j in order]
    for xi, c in zip(x, chance):
        ax.hlines(c, xi - 0.45, xi + 0.45, colors="black", linewidth=1.2)
    ax.plot([], [], color="black", label="chance" + (" (0.5)" if metric == "roc" else " (prevalence)"))
    ax.set_xticks(x, [f"{tags[j]} ({int(n_pos[j])})" for j in order], rotation=90, fontsize=7)
    for lab, j in zip(ax.get_xticklabels(), order):
        lab.set_color(CATEGORY_COLOURS.get(cats[j], "#7f7f7f"))
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.6, len(tags) - 0.4)
    ax.grid(axis="y", alpha=0.3)
    name = "ROC-AUC" if metric == "roc" else "PR-AUC"
    ax.set_ylabel(name)
    ax.set_title(f"{model}: per-tag {name} vs {TRUTH_TEXT[truth]}, mean over seeds; tag (test positives), "
                 f"colour = category, lighter = earlier stage; no bar = undefined", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=CATEGORY_COLOURS.get(c, "#7f7f7f")) for c in dict.fromkeys(cats)]
    leg1 = ax.legend(handles, list(dict.fromkeys(cats)), fontsize=7, loc="upper right", title="category",
                     title_fontsize=7)
    ax.add_artist(leg1)
    ax.legend(fontsize=7, loc="upper left", ncol=len(stages) + 1)
    return _png(fig)


def fig_by_category(cfg, scorer, truth) -> bytes:
    plt = _plt()
    cats = scorer.cats()
    fig, axes = plt.subplots(len(cfg.models), 2, figsize=(11, 3.2 * len(cfg.models)), squeeze=False)
    width = 0.8 / len(cfg.stages)
    for i, model in enumerate(cfg.models):
        for m, ax in enumerate(axes[i]):
            for k, s in enumerate(cfg.stages):
                cells = [scorer.cell(model, s, truth, c)[m] for c in cats]
                p = np.array([c[0] for c in cells])
                err = np.array([[c[0] - c[1], c[2] - c[0]] for c in cells]).T
                ax.bar(np.arange(len(cats)) - 0.4 + width * (k + 0.5), np.nan_to_num(p), width,
                       yerr=np.nan_to_num(err), capsize=3, label=f"Stage {ROMAN[s]}")
            if m == 0:
                ax.axhline(0.5, color="black", linewidth=1, linestyle=":", label="chance")
            else:   # chance PR-AUC of a category: the mean prevalence of its tags with a test positive
                y_any = next(r.truths[truth] for r in scorer.ok if truth in r.truths)
                prev = y_any.mean(axis=0)
                for c_i, c in enumerate(cats):
                    p_c = [prev[j] for j, cc in enumerate(scorer.categories) if cc == c and prev[j] > 0]
                    if p_c:
                        ax.hlines(np.mean(p_c), c_i - 0.45, c_i + 0.45, colors="black", linewidth=1.2,
                                  linestyles=":", label="chance (prevalence)" if c_i == 0 else None)
            ax.set_xticks(np.arange(len(cats)), cats)
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(f"{model}: macro {'ROC-AUC' if m == 0 else 'PR-AUC'} per category vs "
                         f"{TRUTH_TEXT[truth]} (95% interval)", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def fig_paired(cfg, scorer, common) -> bytes | None:
    """Per seed: the common-truth macro PR-AUC of each stage, lines joining a seed's runs; and the
    paired differences with their 95% intervals."""
    plt = _plt()
    if 1 not in cfg.stages or len(cfg.stages) < 2 or not common:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    ax = axes[0]
    truth = common[-1]
    xs = np.arange(len(cfg.stages))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, model in enumerate(cfg.models):
        for seed in cfg.seeds:
            ys = []
            for s in cfg.stages:
                r = scorer.runs(model, s).get(seed)
                ys.append(scorer.get(r, truth)[1] if r is not None and truth in r.truths else np.nan)
            ax.plot(xs + 0.05 * i, ys, "-o", color=colours[i % len(colours)], alpha=0.8,
                    label=model if seed == cfg.seeds[0] else None)
    ax.set_xticks(xs, [f"Stage {ROMAN[s]}" for s in cfg.stages])
    ax.set_ylabel("macro PR-AUC")
    ax.set_title(f"each seed's models across stages vs {TRUTH_TEXT[truth]}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    labels, points, errs = [], [], []
    for model in cfg.models:
        for t in common:
            for s in cfg.stages:
                if s == 1:
                    continue
                _, pr = scorer.paired(model, 1, s, t)
                labels.append(f"{model}, {TRUTH_TEXT[t]}: {ROMAN[s]} - I")
                points.append(pr[0])
                errs.append((pr[0] - pr[1], pr[2] - pr[0]))
    y = np.arange(len(labels))
    ax.errorbar(np.nan_to_num(points), y, xerr=np.nan_to_num(np.array(errs).T), fmt="o", capsize=4)
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("paired difference in macro PR-AUC (95% interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# ----------------------------------------------------------------------------- writing

def _md(t: Table) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(r) + " |" for r in t.rows]
    if t.note:
        lines += ["", t.note]
    return "\n".join(lines) + "\n"


def _html_table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.rows)
    note = f"<p class='note'>{html.escape(t.note)}</p>" if t.note else ""
    return f"<h3>{html.escape(t.title)}</h3><table><tr>{head}</tr>{body}</table>{note}"


def write(cfg, data: Path, truth: str, results, wall_seconds: float) -> Path:
    """report.md (+ figures/*.png) and report.html under cfg.out; returns report.md's path."""
    from tagfold.pipeline.io import atomic_path, write_text

    out = Path(cfg.out)
    texts: list[str] = []        # paragraphs shared by both formats
    tables: list[Table] = []
    figures: list[tuple[str, str, bytes]] = []   # (file name, caption, png)
    failed = [r for r in results if r.status.get("status") != "ok"]
    ok = [r for r in results if r.scores is not None]
    texts.append(f"Dataset {data}; {len(results)} runs (stages {', '.join(ROMAN[s] for s in cfg.stages)} x "
                 f"models {', '.join(cfg.models)} x seeds {', '.join(map(str, cfg.seeds))}), {cfg.epochs} epochs "
                 f"each, width {cfg.width}, device {cfg.device}; test split scored with {cfg.n_chunks} chunks per "
                 f"track. Wall time of this invocation: {wall_seconds / 60:.1f} min (finished runs are reused).")
    if failed:
        texts.append("Failed or missing runs (left out of the tables): " + "; ".join(
            f"{r.run.name}: {r.status.get('reason', r.status.get('status'))}" for r in failed) + ".")
    scorer = Scorer(results, cfg.n_boot, cfg.boot_seed) if ok else None
    if scorer is None:
        texts.append("No run finished, so there is nothing to score.")
    else:
        truths = _truths_scored(scorer)
        missing = [t for t in TRUTHS if t not in truths]
        texts.append("Truths scored: " + ", ".join(TRUTH_TEXT[t] for t in truths) + "."
                     + (" Not available: " + ", ".join(TRUTH_TEXT[t] for t in missing)
                        + (" (the dataset has no latent or human labels; pass --truth FILE)" if "latent" in missing
                           else "") + "." if missing else ""))
        common = [t for t in ("stage1", "latent") if t in truths]
        primary = common[-1] if common else "own"
        tables.append(overall_table(cfg, scorer, truths))
        tables.append(category_table(cfg, scorer, primary))
        if common and 1 in cfg.stages and len(cfg.stages) > 1:
            tables.append(paired_table(cfg, scorer, common))
        for model in cfg.models:
            for metric in ("pr", "roc"):
                figures.append((f"per_tag_{metric}_{model}.png",
                                f"{model}: per-tag {'PR' if metric == 'pr' else 'ROC'}-AUC vs {TRUTH_TEXT[primary]}",
                                fig_per_tag(cfg, scorer, model, primary, metric)))
        figures.append(("by_category.png", f"per-category macro AUC across stages vs {TRUTH_TEXT[primary]}",
                        fig_by_category(cfg, scorer, primary)))
        paired_png = fig_paired(cfg, scorer, common)
        if paired_png is not None:
            figures.append(("paired.png", "stage vs stage: seeds joined across stages, and paired differences",
                            paired_png))
        lq = label_quality_table(cfg, data, truth if "latent" in truths else "", scorer.tags)
        if lq is not None:
            tables.append(lq)
        else:
            texts.append("Label quality: no latent or human truth, so each stage's labels cannot be scored.")
    demo = demo_tag_table(data)
    if demo is not None:
        tables.append(demo)
    tables.append(runs_table(results))
    for model in cfg.models:
        figures.insert(0, (f"curves_{model}.png", f"{model}: training curves per run, best epoch starred",
                           fig_curves(cfg, results, model)))

    for name, _, png in figures:
        with atomic_path(out / "figures" / name) as tmp:
            tmp.write_bytes(png)
    title = "tagfold experiment: do Stage II and III labels make a better tagger?"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    md = [f"# {title}", "", f"Written {stamp} by `tagfold experiment` (config: experiment.json).", ""]
    md += [p + "\n" for p in texts]
    md += [_md(t) for t in tables]
    md += [f"![{cap}](figures/{name})\n" for name, cap, _ in figures]
    write_text("\n".join(md), out / "report.md")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #bbb;"
             "padding:3px 7px;text-align:left}th{background:#eee}.note{color:#555;font-size:12px}"
             "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}")
    body = [f"<h1>{html.escape(title)}</h1><p>Written {stamp} by <code>tagfold experiment</code>.</p>"]
    body += [f"<p>{html.escape(p)}</p>" for p in texts]
    body += [_html_table(t) for t in tables]
    body += [f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
             f"<figcaption>{html.escape(cap)}</figcaption></figure>" for _, cap, png in figures]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    write_text(page, out / "report.html")
    write_text(json.dumps({"tables": [t.__dict__ for t in tables], "notes": texts}, indent=1) + "\n",
               out / "report.json")
    return out / "report.md"
