"""PNG figures: training curves (thesis Figures: loss, ROC-AUC, PR-AUC per epoch) and per-tag bars."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    from tagfold.pipeline.io import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return Path(path)


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Train/valid loss, ROC-AUC and PR-AUC per epoch, side by side."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in zip(axes, ("loss", "roc_auc", "pr_auc"), ("BCE loss", "macro ROC-AUC", "macro PR-AUC")):
        for split, style in (("train", "-o"), ("valid", "-s")):
            ax.plot(epochs, [r[f"{split}_{key}"] for r in history], style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, y=1.03)
    return _save(fig, Path(path))


def plot_per_tag(tags, values: dict[str, np.ndarray], categories, path: str | Path, metric: str) -> Path:
    """One bar group per tag (one bar per model/stage), tags grouped by category; NaN = undefined."""
    plt = _plt()
    order = sorted(range(len(tags)), key=lambda i: (categories[i], i))
    names = list(values)
    x = np.arange(len(tags))
    w = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(8, 0.28 * len(tags) * max(1, len(names)) ** 0.5), 4.2))
    for k, name in enumerate(names):
        v = np.asarray(values[name], dtype=float)[order]
        ax.bar(x + k * w - 0.4 + w / 2, np.nan_to_num(v, nan=0.0), w, label=name)
    ax.set_xticks(x, [f"{tags[i]}" for i in order], rotation=90, fontsize=7)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"per-tag {metric} (grouped by category; missing bar = undefined)")
    return _save(fig, Path(path))
