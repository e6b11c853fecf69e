"""Uncertainty for the experiment's tables: ROC-AUC and PR-AUC under bootstrap weights, and a
two-level bootstrap over seeds and test tracks.

A bootstrap resample of the test tracks is a vector of integer weights (how often each track was
drawn), so one sort per tag serves every resample: `weighted_auc` scores B weight vectors at once.
Its reference is scikit-learn's `roc_auc_score` / `average_precision_score` with
`sample_weight` (tests/test_experiment.py checks them against each other with hypothesis).

`two_level_bootstrap` gives a cell's 95% interval: each replicate draws the seeds with replacement
and the test tracks with replacement (the same tracks for every run, so stages stay paired) and
averages the metric over the drawn seeds. Paired differences (Stage II - I) are taken inside each
replicate, seed k of one stage against seed k of the other (same initialisation and data order).
"""
from __future__ import annotations

import numpy as np

Z_LEVEL = 0.95


def weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of one tag under each row of weights.

    y: {0,1} [n]; s: scores [n]; w: non-negative weights [B, n] (or [n]).
    Returns (roc [B], ap [B]); NaN where the weighted positives or negatives are 0.
    Ties count half for ROC-AUC and share a threshold for AP, as in scikit-learn."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    if y.size == 0:
        nan = np.full(w.shape[0], np.nan)
        return nan, nan.copy()
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])   # one group per distinct score
    wpos = np.where(y[order], w[:, order], 0.0)
    wneg = np.where(y[order], 0.0, w[:, order])
    gp = np.add.reduceat(wpos, starts, axis=1)          # [B, G] positive weight per score group
    gn = np.add.reduceat(wneg, starts, axis=1)
    P, N = gp.sum(axis=1), gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # groups run from the highest score down: negatives below group g = N - cumulative to g
        neg_below = N[:, None] - np.cumsum(gn, axis=1)
        roc = (gp * (neg_below + 0.5 * gn)).sum(axis=1) / (P * N)
        tp, fp = np.cumsum(gp, axis=1), np.cumsum(gn, axis=1)
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        ap = (gp * precision).sum(axis=1) / P
    undefined = (P <= 0) | (N <= 0)
    roc[undefined] = np.nan
    ap[undefined] = np.nan
    return roc, ap


def macro_auc(Y: np.ndarray, S: np.ndarray, w: np.ndarray, columns=None) -> tuple[np.ndarray, np.ndarray]:
    """Macro (mean over tags defined in that resample) ROC-AUC and PR-AUC, [B] each.
    `columns`: the tag indices to average over (a category); default all."""
    cols = range(Y.shape[1]) if columns is None else columns
    w = np.atleast_2d(w)
    rocs, aps = [], []
    for j in cols:
        r, a = weighted_auc(Y[:, j], S[:, j], w)
        rocs.append(r)
        aps.append(a)
    if not rocs:
        nan = np.full(w.shape[0], np.nan)
        return nan, nan.copy()
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return np.nanmean(np.stack(rocs), axis=0), np.nanmean(np.stack(aps), axis=0)


def _quiet_nanmean():
    """nanmean of an all-NaN column is NaN (an undefined cell), not a RuntimeWarning."""
    import warnings

    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)


def bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] multinomial counts: each row one resample of n tracks with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64) if n else np.zeros((n_boot, 0))


def seed_draws(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_seeds] seed indices drawn with replacement (one row per replicate)."""
    return np.random.default_rng((seed, 1)).integers(0, n_seeds, size=(n_boot, n_seeds))


def two_level_bootstrap(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """per_seed [n_seeds, B] (metric of each seed's model on each track resample) -> [B] replicate
    means over the seeds drawn in `draws` [B, n_seeds]."""
    picked = per_seed[draws, np.arange(per_seed.shape[1])[:, None]]   # [B, n_seeds]
    with _quiet_nanmean():
        return np.nanmean(picked, axis=1)


def interval(replicates: np.ndarray, point: float, level: float = Z_LEVEL) -> tuple[float, float]:
    """`point` plus the spread of the finite replicates around their own mean (their percentiles
    minus their mean); (nan, nan) when none is finite.

    Why centred on the point and not the raw percentiles: resampling few test tracks shifts
    macro PR-AUC by itself (a tag with one positive drawn twice scores higher; one drawn zero
    times drops out of the mean), so the replicates' centre can sit away from the estimate and a
    raw percentile interval can even exclude it. The spread is what the bootstrap measures well."""
    r = replicates[np.isfinite(replicates)]
    if r.size == 0 or not np.isfinite(point):
        return float("nan"), float("nan")
    lo, hi = np.percentile(r - r.mean(), [50 * (1 - level), 50 * (1 + level)])
    return float(point + lo), float(point + hi)
