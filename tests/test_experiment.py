"""The experiment: bootstrap AUC kernel against scikit-learn, NaN loss handling, and `tagfold
experiment --quick` once end to end (report tables complete and finite, HTML self-contained,
finished runs skipped, a changed run refused naming the keys, a failed run listed)."""
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from tagfold import stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- the AUC kernel

@st.composite
def _scored(draw, max_n=40):
    n = draw(st.integers(0, max_n))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8)
    # few distinct values: ties are the hard case
    s = np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5000001, 0.9, 1.0]), min_size=n, max_size=n)))
    w = np.array(draw(st.lists(st.lists(st.integers(0, 3), min_size=n, max_size=n), min_size=1, max_size=4)),
                 dtype=np.float64).reshape(-1, n) if n else np.zeros((1, 0))
    return y, s, w


@settings(max_examples=300, deadline=None)
@given(_scored())
def test_weighted_auc_equals_sklearn_with_sample_weight(case):
    y, s, w = case
    roc, ap = stats.weighted_auc(y, s, w)
    assert roc.shape == ap.shape == (len(w),)
    for b in range(len(w)):
        pos, neg = w[b][y == 1].sum(), w[b][y == 0].sum()
        if pos == 0 or neg == 0:
            assert np.isnan(roc[b]) and np.isnan(ap[b])
            continue
        assert roc[b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(y, s, sample_weight=w[b]), abs=1e-12)


def test_weighted_auc_long_input_and_unit_weights():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20_000)
    s = rng.random(20_000) + 0.3 * y
    roc, ap = stats.weighted_auc(y, s, np.ones(20_000))
    assert roc[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ap[0] == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_interval_is_centred_on_the_point_and_covers_seed_spread():
    rng = np.random.default_rng(1)
    reps = 0.7 + 0.05 * rng.standard_normal(2000)
    lo, hi = stats.interval(reps, 0.6)
    assert lo < 0.6 < hi and hi - lo == pytest.approx(2 * 1.96 * 0.05, rel=0.1)
    assert all(np.isnan(stats.interval(np.full(5, np.nan), 0.5)))
    # two-level: seeds far apart widen the interval beyond the track resampling alone
    per_seed = np.stack([np.full(500, 0.5), np.full(500, 0.9)])
    r = stats.two_level_bootstrap(per_seed, stats.seed_draws(2, 500, 0))
    assert set(np.round(np.unique(r), 6)) == {0.5, 0.7, 0.9}


# ----------------------------------------------------------------------------- NaN loss

def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path):
    from tests.test_train import SynthLoaders, tiny_config
    from tagfold.training import checkpoint as ckpt
    from tagfold.training.train import NonFiniteLoss, fit

    cfg = tiny_config(tmp_path, epochs=3)
    loaders = SynthLoaders(cfg.labels)

    def poisoned(split, *, train, seed, epoch, rank=0, world=1):
        for step, (x, y, idx) in enumerate(loaders(split, train=train, seed=seed, epoch=epoch, rank=rank, world=world)):
            if train and epoch == 1 and step == 1:
                x = x.clone()
                x[0, 0] = float("nan")
            yield x, y, idx

    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 2"):
        fit(cfg, poisoned, quiet=True)
    state, _ = ckpt.load_latest(cfg.out)
    assert state["epoch"] == 1                        # the NaN epoch wrote no checkpoint
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# ----------------------------------------------------------------------------- the quick experiment

@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from tagfold.experiment import ExperimentConfig, run_experiment
    cfg = ExperimentConfig.quick(out=str(tmp_path_factory.mktemp("exp") / "quick"))
    return cfg, run_experiment(cfg, progress=False)


def _tables(report_json):
    return {t["title"]: t for t in json.loads(report_json.read_text())["tables"]}


def test_quick_experiment_report_is_complete_and_finite(quick):
    cfg, md = quick
    tables = _tables(md.with_name("report.json"))
    overall = next(t for k, t in tables.items() if k.startswith("Table 1"))
    assert len(overall["rows"]) == len(cfg.models) * len(cfg.stages)
    assert len(overall["header"]) == 2 + 2 * 3           # own, Stage I and latent truths, ROC + PR each
    cell = re.compile(r"^-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\]$")
    for row in overall["rows"]:
        for c in row[2:]:
            assert cell.match(c), row
            p, lo, hi = map(float, re.findall(r"-?\d+\.\d", c))
            assert lo <= p <= hi and 0 <= p <= 100
    by_cat = next(t for k, t in tables.items() if k.startswith("Table 2"))
    from tagfold.pipeline.selected import load_selected
    assert {r[1].split(" ")[0] for r in by_cat["rows"]} == set(load_selected().categories)
    paired = next(t for k, t in tables.items() if k.startswith("Paired"))
    assert len(paired["rows"]) == 2 and all(cell.match(c.replace("+", "")) for r in paired["rows"] for c in r[3:5])
    quality = next(t for k, t in tables.items() if k.startswith("Label quality"))
    (_, pos1, p1, r1), (_, pos2, p2, r2) = quality["rows"]
    assert float(p1) > 90 and float(r2) > float(r1)   # Stage I is near-exact; Stage II recovers more
    html = md.with_name("report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)   # nothing fetched from a network
    for name in ("curves_wave", "per_tag_pr_wave", "per_tag_roc_wave", "by_category", "paired"):
        assert (md.parent / "figures" / f"{name}.png").stat().st_size > 5000


def test_rerun_skips_finished_runs_and_refuses_a_changed_run(quick):
    import dataclasses

    from tagfold.experiment import run_experiment
    cfg, md = quick
    runs = sorted((md.parent / "runs").iterdir())
    stamps = [(r / "done.json").stat().st_mtime for r in runs]
    run_experiment(cfg, progress=False)
    assert [(r / "done.json").stat().st_mtime for r in runs] == stamps     # nothing retrained
    saved = json.loads((runs[0] / "run.json").read_text())
    saved["identity"]["lr"] = 0.5
    (runs[0] / "run.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"differs in lr: 0\.5 there, 0\.001 here"):
        run_experiment(cfg, progress=False)
    saved["identity"]["lr"] = cfg.lr
    (runs[0] / "run.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="--stages"):
        run_experiment(dataclasses.replace(cfg, stages=(4,)), progress=False)
    with pytest.raises(ValueError, match="--models: unknown foo; choose from wave, mel"):
        run_experiment(dataclasses.replace(cfg, models=("foo",)), progress=False)


def test_a_failed_run_is_listed_and_the_others_still_reported(quick, monkeypatch):
    from tagfold.experiment import run_experiment
    from tagfold.training import train
    cfg, md = quick
    stage2 = next(r for r in (md.parent / "runs").iterdir() if r.name.startswith("stage2"))
    (stage2 / "done.json").unlink()

    def nan_fit(tcfg, *a, **k):
        raise train.NonFiniteLoss(f"{tcfg.out}: loss became NaN/Inf at epoch 1, step 3")
    monkeypatch.setattr(train, "fit", nan_fit)
    run_experiment(cfg, progress=False)
    text = md.read_text()
    assert "stage2-wave-seed0: " in text and "NaN/Inf at epoch 1, step 3" in text
    runs = _tables(md.with_name("report.json"))["Runs"]["rows"]
    assert {r[0]: r[1] for r in runs} == {"stage1-wave-seed0": "ok", "stage2-wave-seed0": "failed"}
    overall = next(t for k, t in _tables(md.with_name("report.json")).items() if k.startswith("Table 1"))
    assert overall["rows"][0][2] != "n/a" and overall["rows"][1][2] == "n/a"


def test_report_without_latent_truth_says_which_truths_it_scored(tmp_path):
    """A dataset with no latent or human labels: the report names the truths it could score and
    leaves out the label-quality table instead of printing empty columns."""
    from tagfold import report
    from tagfold.experiment import ExperimentConfig, Run, RunResult

    rng = np.random.default_rng(0)
    tags, cats = ("rock", "jazz", "sad", "happy"), ("genre", "genre", "emotion", "emotion")
    y1 = (rng.random((40, 4)) < 0.3).astype(np.uint8)
    y1[0], y1[1] = 1, 0                                   # every tag has a positive and a negative
    cfg = ExperimentConfig(out=str(tmp_path / "exp"), stages=(1, 2), models=("wave",), seeds=(0,), n_boot=50)
    results = []
    for stage in (1, 2):
        y_own = y1 | (rng.random((40, 4)) < 0.1) if stage == 2 else y1
        run = Run(stage, "wave", 0, tmp_path / f"s{stage}", {}, None)
        results.append(RunResult(run, {"status": "ok", "seconds": 1.0}, [], [f"t{i}" for i in range(40)],
                                 rng.random((40, 4)) + 0.5 * y1, {"own": y_own.astype(np.uint8), "stage1": y1},
                                 tags, cats))
    md = report.write(cfg, tmp_path / "no-such-data", "", results, wall_seconds=1.0)
    text = md.read_text()
    assert "Truths scored: own stage's labels, Stage I labels." in text
    assert "Not available: latent (true) tags (the dataset has no latent or human labels" in text
    assert "Label quality" in text and "cannot be scored" in text and "### Label quality" not in text
    overall = next(t for k, t in _tables(md.with_name("report.json")).items() if k.startswith("Table 1"))
    assert len(overall["header"]) == 2 + 2 * 2 and all("n/a" not in c for r in overall["rows"] for c in r)
