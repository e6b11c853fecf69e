"""Won et al. 2020's schedule (`--schedule won2020`), scaled down to 10 epochs: the phase switches,
the reload of the best model at each switch, the optimiser and rate per phase, exact resume across
a switch; validation over several chunks per track; selection by validation loss; the presets."""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from test_train import SynthLoaders, tiny_config  # noqa: E402

from tagfold.training import checkpoint as ckpt  # noqa: E402
from tagfold.training import train  # noqa: E402
from tagfold.training.train import fit, parse_args, schedule_phases  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPOCHS = 10     # won2020 scaled: Adam for epochs 1-4, SGD 1e-3 for 5, 1e-4 for 6, 1e-5 for 7-10


class OnlyFirstValidationGood(SynthLoaders):
    """Validation input after the first epoch is scaled by 1000: its loss is huge, so with
    selection by loss best.pt stays at epoch 1 and every switch must go back to it. Records the
    model's weights as each epoch starts (the training loader is asked for after any switch)."""

    def __init__(self, labels_path, holder, **kw):
        super().__init__(labels_path, **kw)
        self.holder, self.starts = holder, {}

    def __call__(self, split, *, train, seed, epoch, rank=0, world=1):
        if train and "model" in self.holder:
            self.starts[epoch] = {k: v.clone() for k, v in self.holder["model"].state_dict().items()}
        for x, y, idx in super().__call__(split, train=train, seed=seed, epoch=epoch, rank=rank, world=world):
            yield (x * 1000 if not train and epoch > 0 else x), y, idx


def won_config(tmp_path, **kw):
    return tiny_config(tmp_path, **{**dict(schedule="won2020", epochs=EPOCHS, lr=1e-3, select="loss", keep=EPOCHS),
                                    **kw})


def test_phases_scale_with_the_epochs():
    full = schedule_phases(train.TrainConfig(schedule="won2020", epochs=200, lr=1e-4))
    assert [(p.first_epoch, p.optimizer, p.lr) for p in full] == [
        (0, "adam", 1e-4), (80, "sgd", 1e-3), (100, "sgd", 1e-4), (120, "sgd", 1e-5)]
    short = schedule_phases(train.TrainConfig(schedule="won2020", epochs=EPOCHS, lr=1e-4))
    assert [p.first_epoch for p in short] == [0, 4, 5, 6]
    assert [p.optimizer for p in schedule_phases(train.TrainConfig(schedule="cosine"))] == ["adam"]
    with pytest.raises(ValueError, match="won2020 needs --epochs >= 10"):
        train.TrainConfig(schedule="won2020", epochs=9).resolved()


def test_won2020_switches_optimiser_and_rate_and_reloads_the_best(tmp_path, monkeypatch):
    holder = {}
    build = train.models.build
    monkeypatch.setattr(train.models, "build", lambda *a, **k: holder.setdefault("model", build(*a, **k)))
    cfg = won_config(tmp_path)
    loaders = OnlyFirstValidationGood(cfg.labels, holder)
    out = fit(cfg, loaders, quiet=True).out
    history = ckpt.load(ckpt.epoch_path(out, EPOCHS))["history"]
    # The rate per epoch: --lr for the Adam phase, then Won's SGD rates.
    assert [r["lr"] for r in history] == [1e-3] * 4 + [1e-3, 1e-4] + [1e-5] * 4
    assert np.argmin([r["valid_loss"] for r in history]) == 0
    assert ckpt.load(out / "best.pt")["epoch"] == 1
    best = ckpt.load(ckpt.epoch_path(out, 1))["model"]
    for epoch in range(1, EPOCHS + 1):
        groups = ckpt.load(ckpt.epoch_path(out, epoch))["optimizer"]["param_groups"]
        if epoch <= 4:
            assert "betas" in groups[0] and groups[0]["weight_decay"] == cfg.weight_decay
        else:
            assert groups[0]["momentum"] == 0.9 and groups[0]["nesterov"] is True
            assert groups[0]["weight_decay"] == cfg.weight_decay
    # Weights at the start of each epoch: the previous epoch's, except after a switch (epochs 5,
    # 6 and 7, 0-based 4, 5, 6), where they are best.pt's (epoch 1).
    for epoch in range(1, EPOCHS):
        expected = best if epoch in (4, 5, 6) else ckpt.load(ckpt.epoch_path(out, epoch))["model"]
        got = loaders.starts[epoch]
        assert all(torch.equal(got[k], expected[k]) for k in expected), f"epoch {epoch + 1}"
    assert not all(torch.equal(best[k], ckpt.load(ckpt.epoch_path(out, 4))["model"][k]) for k in best)


def test_resume_across_phase_switches_is_exact(tmp_path):
    ref = won_config(tmp_path, out=str(tmp_path / "uninterrupted"), select="pr_auc")
    fit(ref, SynthLoaders(ref.labels), quiet=True)
    cfg = dataclasses.replace(ref, out=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):      # just before the Adam -> SGD switch
        fit(cfg, SynthLoaders(cfg.labels, interrupt_at_epoch=4), quiet=True)
    with pytest.raises(KeyboardInterrupt):      # inside SGD, just before the first rate drop
        fit(dataclasses.replace(cfg, resume=True), SynthLoaders(cfg.labels, interrupt_at_epoch=5), quiet=True)
    fit(dataclasses.replace(cfg, resume=True), SynthLoaders(cfg.labels), quiet=True)
    a, b = ckpt.load(ckpt.epoch_path(ref.out, EPOCHS)), ckpt.load(ckpt.epoch_path(cfg.out, EPOCHS))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["best_pr_auc"] == b["best_pr_auc"]


class ChunkModel(torch.nn.Module):
    """A model whose output for a chunk is a known function of the chunk: logit = mean * [1, 2]."""

    def forward(self, x):
        m = x.mean(dim=1, keepdim=True)
        return torch.cat([m, 2 * m], dim=1)


def test_validation_over_chunks_averages_scores_and_losses():
    # 3 tracks x 4 chunks, chunks of a track consecutive in x; y one row per track.
    x = torch.arange(12, dtype=torch.float32).reshape(12, 1).repeat(1, 5) / 6 - 1
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    model = ChunkModel()
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    loss, ys, ps = train.validate(model, [(x, y, torch.arange(3))], torch.device("cpu"), no_autocast)
    logits = model(x).view(3, 4, 2)
    np.testing.assert_allclose(ps, torch.sigmoid(logits).mean(dim=1).numpy(), rtol=1e-6)
    per_chunk = F.binary_cross_entropy_with_logits(logits, y[:, None, :].expand(3, 4, 2), reduction="none")
    assert loss == pytest.approx(float(per_chunk.mean()), rel=1e-6)
    np.testing.assert_array_equal(ys, y.numpy().astype(np.uint8))
    # One chunk per track: the plain per-track loss and scores.
    loss1, _, ps1 = train.validate(model, [(x[::4], y, torch.arange(3))], torch.device("cpu"), no_autocast)
    np.testing.assert_allclose(ps1, torch.sigmoid(model(x[::4])).numpy(), rtol=1e-6)
    assert loss1 == pytest.approx(float(F.binary_cross_entropy_with_logits(model(x[::4]), y)), rel=1e-6)


def test_presets_and_explicit_options():
    won = parse_args(["--data", "d", "--preset", "won2020"]).resolved()
    assert (won.model, won.schedule, won.epochs, won.batch_size, won.lr, won.weight_decay, won.grad_clip,
            won.width, won.val_chunks, won.select, won.precision) == (
        "shortchunk_resnet", "won2020", 200, 16, 1e-4, 1e-4, 0.0, 1.0, 16, "loss", "fp32")
    assert parse_args(["--data", "d", "--preset", "pons2018"]).resolved().model == "mel"
    mine = parse_args(["--data", "d", "--preset", "won2020", "--epochs", "20", "--width", "0.25"])
    assert (mine.epochs, mine.width, mine.schedule) == (20, 0.25, "won2020")
    # The schedule alone brings Won's rate and weight decay; other schedules keep tagfold's defaults.
    alone = parse_args(["--data", "d", "--schedule", "won2020"])
    assert (alone.lr, alone.weight_decay) == (1e-4, 1e-4)
    demo = parse_args([])
    assert (demo.lr, demo.weight_decay, demo.val_chunks, demo.select, demo.precision) == (1e-3, 1e-5, 1, "pr_auc",
                                                                                          "bf16")
    bench = parse_args(["--data", "d", "--benchmark", "msd-top50", "--model", "mel"]).resolved()
    assert bench.labels == "d/labels/labels_msd-top50.parquet" and bench.out.endswith("msd-top50-mel")
