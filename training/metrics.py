"""Tagging metrics: ROC-AUC and PR-AUC per tag, macro, micro and per category.

PR-AUC is average precision (sklearn's `average_precision_score`), as in the tagging
literature (Pons 2018, Won 2020). A tag whose column has no positives (or no negatives) in the
evaluated split has no defined ROC-AUC / PR-AUC: it is reported as NaN with a warning and left
out of every macro mean, never a crash and never a silent 0 or 0.5.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


class UndefinedMetricWarning(UserWarning):
    """A tag has no positives (or no negatives) in the evaluated split."""


@dataclass(frozen=True)
class Scores:
    """Per-tag and aggregate scores of one (labels, predictions) pair."""
    tags: tuple[str, ...]
    n_pos: np.ndarray        # int64 [n_tags]
    roc_auc: np.ndarray      # float64 [n_tags], NaN where undefined
    pr_auc: np.ndarray       # float64 [n_tags], NaN where undefined
    macro_roc_auc: float
    macro_pr_auc: float
    micro_roc_auc: float
    micro_pr_auc: float
    n_defined: int

    @property
    def undefined_tags(self) -> list[str]:
        return [t for t, v in zip(self.tags, self.roc_auc) if np.isnan(v)]

    def by_category(self, categories: tuple[str, ...] | list[str]) -> dict[str, dict[str, float]]:
        """Macro ROC-AUC / PR-AUC over the defined tags of each category (thesis table 2)."""
        cats = np.asarray(categories)
        if len(cats) != len(self.tags):
            raise ValueError(f"{len(cats)} categories for {len(self.tags)} tags")
        out = {}
        for cat in dict.fromkeys(categories):
            m = cats == cat
            out[cat] = {
                "roc_auc": _nanmean(self.roc_auc[m]),
                "pr_auc": _nanmean(self.pr_auc[m]),
                "n_tags": int(m.sum()),
                "n_defined": int((~np.isnan(self.roc_auc[m])).sum()),
            }
        return out


def _nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def _check(y_true, y_score, tags):
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"labels {y_true.shape} and scores {y_score.shape} must be equal 2-D [tracks, tags]")
    if tags is not None and len(tags) != y_true.shape[1]:
        raise ValueError(f"{len(tags)} tag names for {y_true.shape[1]} label columns")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    if not np.isfinite(y_score).all():
        raise ValueError("scores contain NaN or inf (did training diverge?)")
    return y_true.astype(bool), y_score


def score(y_true, y_score, tags=None, *, context: str = "") -> Scores:
    """ROC-AUC and PR-AUC per tag plus macro (defined tags only) and micro averages."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, y_score = _check(y_true, y_score, tags)
    n_tags = y_true.shape[1]
    tags = tuple(tags) if tags is not None else tuple(f"tag{i}" for i in range(n_tags))
    n_pos = y_true.sum(axis=0).astype(np.int64)
    n = y_true.shape[0]
    roc = np.full(n_tags, np.nan)
    pr = np.full(n_tags, np.nan)
    defined = (n_pos > 0) & (n_pos < n)
    for j in np.flatnonzero(defined):
        roc[j] = roc_auc_score(y_true[:, j], y_score[:, j])
        pr[j] = average_precision_score(y_true[:, j], y_score[:, j])
    if not defined.all():
        bad = [f"{tags[j]} ({'no positives' if n_pos[j] == 0 else 'no negatives'})"
               for j in np.flatnonzero(~defined)]
        where = f" in {context}" if context else ""
        warnings.warn(f"ROC-AUC/PR-AUC undefined{where} for {len(bad)} of {n_tags} tags, "
                      f"left out of the macro mean: {', '.join(bad)}", UndefinedMetricWarning, stacklevel=2)
    flat_t, flat_s = y_true.ravel(), y_score.ravel()
    if flat_t.any() and not flat_t.all():
        micro_roc = float(roc_auc_score(flat_t, flat_s))
        micro_pr = float(average_precision_score(flat_t, flat_s))
    else:
        micro_roc = micro_pr = float("nan")
    return Scores(tags=tags, n_pos=n_pos, roc_auc=roc, pr_auc=pr,
                  macro_roc_auc=_nanmean(roc), macro_pr_auc=_nanmean(pr),
                  micro_roc_auc=micro_roc, micro_pr_auc=micro_pr, n_defined=int(defined.sum()))


def roc_auc_reference(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Plain Mann-Whitney ROC-AUC for one tag: P(score_pos > score_neg) + 0.5 P(tie). O(P*N)."""
    y_true = np.asarray(y_true, dtype=bool)
    pos, neg = y_score[y_true], y_score[~y_true]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def average_precision_reference(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Plain average precision for one tag: mean over positives of precision at its rank.

    Tied scores are treated as one threshold (all tied items enter together), as sklearn does.
    """
    y_true = np.asarray(y_true, dtype=bool)
    if not y_true.any():
        return float("nan")
    total = 0.0
    for s in np.unique(y_score[y_true]):
        above = y_score >= s
        prec = y_true[above].sum() / above.sum()
        total += prec * (y_true & (y_score == s)).sum()
    return float(total / y_true.sum())
