"""Model registry: input kinds, crop lengths, output shapes, width scaling, gradients, and the
published architectures' layer shapes and parameter counts."""
import math

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
    """Frames of 3 samples (stride 3), then six 'valid' conv3 + pool3 stages: 59,049 -> 26 steps."""
    m = models.PonsWaveform(n_tags=4, width=0.0625)
    first = m.front[0]
    assert first.kernel_size == (3,) and first.stride == (3,)
    h = m.front(torch.randn(1, 1, models.CROP_SAMPLES))
    assert h.shape[-1] == 26


def test_width_scales_parameters():
    for name in models.REGISTRY:
        small = sum(p.numel() for p in models.build(name, 50, 0.125).parameters())
        full = sum(p.numel() for p in models.build(name, 50, 1.0).parameters())
        assert 40 * small < full, name


# Parameter counts at full width, derived layer by layer from the published architectures.
# A convolution or dense layer has c_out * c_in * kernel weights + c_out biases; a BatchNorm 2 * c.

def conv(c_in, c_out, *kernel):
    return c_out * c_in * math.prod(kernel) + c_out


def bn(c):
    return 2 * c


def pons_back_end(c_in, n_tags=50):
    """Pons et al. 2018, `backend(num_units=500)` in the authors' models.py (the paper's back-end
    figure): three 7-wide convolutions of 512 filters, each with BN; global max + mean pooling
    (2 x 512); dense 500 with BN; output layer."""
    return (conv(c_in, 512, 7) + bn(512) + 2 * (conv(512, 512, 7) + bn(512))
            + conv(2 * 512, 500) + bn(500) + conv(500, n_tags))


def pons_mel(n_mels):
    """Pons et al. 2018 log-mel front end (`spec_frontend`, num_filt 16): timbral filters 7, 3, 1
    frames wide with 16, 32, 64 filters spanning int(0.9 n_mels) and int(0.4 n_mels) bands;
    temporal filters of 165, 128, 64, 32 frames with 16, 32, 64, 128 filters; plus tagfold's
    input BatchNorm (2)."""
    timbral = sum(conv(1, f, int(frac * n_mels), frames) + bn(f)
                  for frac in (0.9, 0.4) for frames, f in ((7, 16), (3, 32), (1, 64)))
    temporal = sum(conv(1, f, length) + bn(f) for length, f in ((165, 16), (128, 32), (64, 64), (32, 128)))
    return bn(1) + timbral + temporal + pons_back_end(2 * (16 + 32 + 64) + (16 + 32 + 64 + 128))


def pons_wave():
    """Pons et al. 2018 waveform front end (`wave_frontend`, Lee et al. 2017's sample-level CNN):
    a stride-3 conv3 of 64 filters, then conv3 layers of 64, 64, 128, 128, 128, 256 filters, each
    with BN."""
    chans = (1, 64, 64, 64, 128, 128, 128, 256)
    return sum(conv(a, b, 3) + bn(b) for a, b in zip(chans[:-1], chans[1:])) + pons_back_end(256)


def won_shortchunk_resnet(n_tags=50):
    """Won et al. 2020 Short-chunk ResNet (`ShortChunkCNN_Res` with `Res_2d` blocks in their
    model.py): input BN; seven residual blocks of 128, 128, 256, 256, 256, 256, 512 channels, each
    a stride-2 3x3 conv + BN, a 3x3 conv + BN and a stride-2 3x3 conv + BN on the shortcut; dense
    512 with BN; output layer."""
    chans = (1, 128, 128, 256, 256, 256, 256, 512)
    blocks = sum(2 * (conv(a, b, 3, 3) + bn(b)) + conv(b, b, 3, 3) + bn(b) for a, b in zip(chans[:-1], chans[1:]))
    return bn(1) + blocks + conv(512, 512) + bn(512) + conv(512, n_tags)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, derived, expected", [
    ("shortchunk_resnet", won_shortchunk_resnet(), 12_104_244),
    ("mel", pons_mel(models.N_MELS), 5_937_624),
    ("wave", pons_wave(), 5_379_126),
])
def test_full_width_parameter_counts(name, derived, expected):
    assert derived == expected
    assert n_params(models.build(name, 50, 1.0)) == expected


def test_pons_mel_at_96_bands():
    # The filter heights are fractions of the mel axis: at musicnn's 96 bands, 86 and 38.
    m = models.PonsMel(50, 1.0, n_mels=96)
    assert [b[0].kernel_size for b in m.timbral] == [(86, 7), (86, 3), (86, 1), (38, 7), (38, 3), (38, 1)]
    assert n_params(m) == pons_mel(96)


def test_pons_layer_shapes_at_full_width():
    torch.manual_seed(0)
    mel = models.build("mel", 50, 1.0).eval()
    assert [b[0].out_channels for b in mel.timbral] == [16, 32, 64, 16, 32, 64]
    assert [b[0].kernel_size for b in mel.timbral] == [(115, 7), (115, 3), (115, 1), (51, 7), (51, 3), (51, 1)]
    assert [(b[1].kernel_size[0], b[1].out_channels) for b in mel.temporal] == [
        (165, 16), (128, 32), (64, 64), (32, 128)]
    with torch.no_grad():
        feats = mel.front(torch.randn(2, models.N_MELS, 231))
        assert feats.shape == (2, 464, 231)                   # 'same' over time in both branches
        back = mel.back
        h1 = back.conv1(feats)
        assert h1.shape == (2, 512, 225)                      # 'valid' 7-wide convolution
        h2 = back.pool(back.conv2(h1) + h1)
        assert h2.shape == (2, 512, 112)                      # max-pool by 2
        assert (back.conv3(h2) + h2).shape == (2, 512, 112)
        assert (back.dense[1].in_features, back.dense[1].out_features) == (1024, 500)

        wave = models.build("wave", 50, 1.0).eval()
        steps = wave.front(torch.randn(2, 1, models.CROP_SAMPLES))
        assert steps.shape == (2, 256, 26)
        assert wave.back.conv1(steps).shape == (2, 512, 20)
    # conv -> ReLU -> BatchNorm, as the at-scale code (ReLU inside the TF conv layer, BN after it)
    assert [type(m).__name__ for m in wave.front[:3]] == ["Conv1d", "ReLU", "BatchNorm1d"]


def test_back_end_zero_pads_only_short_sequences():
    torch.manual_seed(0)
    back = models.PonsBackEnd(8, 3, 0.0625).eval()
    h = torch.randn(2, 8, 5)
    with torch.no_grad():
        assert torch.equal(back(h), back(torch.nn.functional.pad(h, (1, 2))))   # 5 -> 8 steps
        long = torch.randn(2, 8, 30)
        assert not torch.equal(back(long), back(torch.nn.functional.pad(long, (1, 2))))


def test_mel_models_accept_other_lengths():
    # Evaluation crops and demo crops can differ from 231 frames; pooling is global over time.
    for name in ("mel", "shortchunk_resnet"):
        m = models.build(name, 3, 0.0625).eval()
        assert m(example_input(name, frames=128)).shape == (2, 3)
