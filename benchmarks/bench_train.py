"""Training throughput per model on CPU, batch 16 (and on CUDA when present).

    .venv/bin/python -m pytest benchmarks/bench_train.py --benchmark-only

samples/s = 16 / (mean seconds per step); both are stored in extra_info. Each benchmark first
checks that the step trains (the loss on a fixed batch falls after a few steps), then times
one optimizer step (forward, BCE, backward, clip, Adam) on synthetic input of the model's
real shape: 59,049 samples, or 128 mels x 231 frames.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from tagfold.training import models

BATCH = 16
N_TAGS = 50
# 0.125 is what the CPU demo trains; full width (the published size) takes 10-40 s per model
# on a 2-core box, so CI runs it only when asked: TAGFOLD_BENCH_FULL=1.
WIDTHS = (0.125, 1.0)
FULL = os.environ.get("TAGFOLD_BENCH_FULL") == "1"


def make_batch(name, device):
    g = torch.Generator().manual_seed(0)
    if models.spec(name).input == "wave":
        x = torch.randn(BATCH, models.CROP_SAMPLES, generator=g)
    else:
        x = torch.randn(BATCH, models.N_MELS, 231, generator=g)
    y = (torch.rand(BATCH, N_TAGS, generator=g) < 0.1).float()
    return x.to(device), y.to(device)


def train_step(model, opt, x, y, device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(x).float()
    loss = F.binary_cross_entropy_with_logits(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    return loss.detach()


def _devices():
    return ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(models.REGISTRY))
def bench_train_step(benchmark, name, width, device):
    if width == 1.0 and device == "cpu" and not FULL:
        pytest.skip("full-width CPU step is slow; set TAGFOLD_BENCH_FULL=1")
    device = torch.device(device)
    torch.manual_seed(0)
    model = models.build(name, N_TAGS, width).to(device).train()
    # Dropout off for the check: a fixed batch must then be fitted monotonically-ish.
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = make_batch(name, device)
    first = float(train_step(model, opt, x, y, device))
    for _ in range(2):
        last = float(train_step(model, opt, x, y, device))
    assert last < first, f"{name}: loss did not fall on a fixed batch ({first:.4f} -> {last:.4f})"

    def step():
        train_step(model, opt, x, y, device)
        if device.type == "cuda":
            torch.cuda.synchronize()   # SYNC: time the GPU work, not just the launch

    benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=0)
    if benchmark.stats is not None:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info.update(steps_per_s=1 / mean, samples_per_s=BATCH / mean, batch=BATCH,
                                    torch_threads=torch.get_num_threads(),
                                    params=sum(p.numel() for p in model.parameters()))
