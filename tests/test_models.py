"""Model registry: input kinds, crop lengths, output shapes, width scaling, gradients."""
import pytest
import torch

from tagfold.training import models


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def example_input(name, batch=2, crop=models.CROP_SAMPLES, frames=231):
    # 59,049 samples with a 256-sample hop give ~231 log-mel frames.
    if models.spec(name).input == "wave":
        return torch.randn(batch, crop)
    return torch.randn(batch, models.N_MELS, frames)


@pytest.mark.parametrize("name", list(models.REGISTRY))
def test_forward_backward_shapes(name):
    torch.manual_seed(0)
    model = models.build(name, n_tags=50, width=0.0625)
    x = example_input(name)
    logits = model(x)
    assert logits.shape == (2, 50) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_registry_entries():
    assert models.spec("wave").input == "wave"
    assert models.spec("mel").input == "mel"
    assert models.spec("shortchunk_resnet").input == "mel"
    assert all(s.crop_samples == 59_049 for s in models.REGISTRY.values())
    assert models.default_model_for("mel") == "mel"
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of wave, mel, shortchunk_resnet"):
        models.build("vgg", 50)
    with pytest.raises(ValueError, match="width"):
        models.build("wave", 50, width=0)
    with pytest.raises(ValueError, match="input must be"):
        models.default_model_for("cqt")


def test_waveform_front_end_is_sample_level():
    """Frames of 3 samples (stride 3), then six conv3 + pool3 stages: 59,049 -> 27 steps."""
    m = models.PonsWaveform(n_tags=4, width=0.0625)
    first = m.front[0]
    assert first.kernel_size == (3,) and first.stride == (3,)
    h = m.front(torch.randn(1, 1, models.CROP_SAMPLES))
    assert h.shape[-1] == 27


def test_width_scales_parameters():
    small = sum(p.numel() for p in models.build("shortchunk_resnet", 50, 0.125).parameters())
    full = sum(p.numel() for p in models.build("shortchunk_resnet", 50, 1.0).parameters())
    assert 40 * small < full
    # Won 2020's Short-chunk ResNet at full width has ~12 M parameters.
    assert 11e6 < full < 13.5e6


def test_mel_models_accept_other_lengths():
    # Evaluation crops and demo crops can differ from 231 frames; pooling is global over time.
    for name in ("mel", "shortchunk_resnet"):
        m = models.build(name, 3, 0.0625).eval()
        assert m(example_input(name, frames=128)).shape == (2, 3)
