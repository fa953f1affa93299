import dataclasses
import math

import pytest
import torch

from benchmark.music2latent.config import PRESETS
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.layers import FreqAttention, Upsample
from benchmark.music2latent.model import Music2Latent, randomize_parameters

# The released checkpoint holds 58,185,026 parameters; 4 x (256 x 512 + 512) of them are the
# decoder's never-used conditioning layers, which we do not build.
OFFICIAL_PARAMETERS = 58_185_026
DEAD_DECODER_PARAMETERS = 4 * (256 * 512 + 512)


@pytest.fixture(scope="module")
def paper_meta():
    with torch.device("meta"):
        return Music2Latent(PRESETS["paper"])


def test_paper_parameter_count(paper_meta):
    n = paper_meta.num_parameters()
    assert n == OFFICIAL_PARAMETERS - DEAD_DECODER_PARAMETERS == 57_658_690
    assert abs(n - 58.19e6) / 58.19e6 < 0.01
    parts = {k: sum(p.numel() for p in getattr(paper_meta, k).parameters())
             for k in ("encoder", "decoder", "unet")}
    # facts §2.5: encoder 5.73 M + 10.53 M, decoder 17.29 M - 0.53 M dead, UNet 24.64 M
    assert parts["encoder"] == pytest.approx(16.26e6, rel=0.01)
    assert parts["decoder"] == pytest.approx(16.76e6, rel=0.01)
    assert parts["unet"] == pytest.approx(24.64e6, rel=0.01)


def test_paper_shapes_for_131072_samples(paper_meta):
    config = PRESETS["paper"]
    frontend = SpectralFrontend(config)
    wave = torch.zeros(1, 131072)
    spec = frontend.wave_to_spec(wave[:, :frontend.crop_length(wave.shape[-1])])
    assert spec.shape == (1, 2, 1024, 248)
    spec = spec.to("meta")
    assert paper_meta.encode(spec).shape == (1, 64, 31)
    assert paper_meta.encode_features(spec).shape == (1, 8192, 31)
    pyramid = paper_meta.decode_pyramid(torch.zeros(1, 64, 31, device="meta"))
    assert [tuple(p.shape) for p in pyramid] == [(1, 64, 1024, 248), (1, 128, 256, 248),
                                                  (1, 256, 128, 124), (1, 256, 64, 62),
                                                  (1, 256, 32, 31)]
    assert paper_meta.denoise(spec, 80.0, pyramid).shape == spec.shape


def test_preconditioning_matches_the_edm_formulas(smoke_model):
    c_in, c_skip, c_out = smoke_model.preconditioning(torch.tensor([0.002, 80.0]))
    torch.testing.assert_close(c_skip, torch.tensor([1.0, 0.25 / (79.998 ** 2 + 0.25)]))
    torch.testing.assert_close(c_out, torch.tensor([0.0, 0.5 * 79.998 / math.sqrt(6400.25)]))
    torch.testing.assert_close(c_in, torch.tensor([1 / math.sqrt(0.250004),
                                                   1 / math.sqrt(6400.25)]))


def _inputs(config, batch=2, latents=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = latents * config.downsample_time
    return torch.randn(batch, 2, config.freq_bins, frames, generator=g)


def test_boundary_condition_and_zero_init(smoke_config, smoke_model):
    x = _inputs(smoke_config)
    with torch.no_grad():
        pyramid = smoke_model.decode_pyramid(smoke_model.encode(x))
        # f(x, sigma_min) = x exactly, whatever the weights
        torch.testing.assert_close(smoke_model.denoise(x, smoke_config.sigma_min, pyramid), x)
        # a fresh model has a zero output conv: f(x, sigma) = c_skip(sigma) x
        fresh = Music2Latent(smoke_config).eval()
        sigma = torch.tensor([0.5, 3.0])
        _, c_skip, _ = fresh.preconditioning(sigma)
        out = fresh.denoise(x, sigma, fresh.decode_pyramid(fresh.encode(x)))
        torch.testing.assert_close(out, c_skip[:, None, None, None] * x)


def test_latents_are_bounded_and_shaped(smoke_config, smoke_model):
    x = 10 * _inputs(smoke_config, latents=4)
    with torch.no_grad():
        z = smoke_model.encode(x)
        f = smoke_model.encode_features(x)
    assert z.shape == (2, smoke_config.latent_dim, 4)
    assert z.abs().max() < 1
    assert f.shape == (2, smoke_config.feature_dim, 4)


def test_items_of_a_batch_are_independent(smoke_config, smoke_model):
    x = _inputs(smoke_config)
    y = x.clone()
    y[1] = torch.randn_like(y[1])
    sigma = torch.tensor([0.3, 7.0])
    with torch.no_grad():
        a = smoke_model(x, sigma, x)
        b = smoke_model(y, sigma, y)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_shared_and_per_item_sigma_paths_agree(smoke_config, smoke_model):
    """One sigma for the batch folds the noise embedding into conv biases; per-item sigmas
    add it; both must give the same function."""
    x = _inputs(smoke_config)
    with torch.no_grad():
        pyramid = smoke_model.decode_pyramid(smoke_model.encode(x))
        mixed = smoke_model.denoise(x, torch.tensor([0.4, 2.0]), pyramid)
        first = smoke_model.denoise(x, 0.4, pyramid)[0]
        second = smoke_model.denoise(x, 2.0, pyramid)[1]
    torch.testing.assert_close(mixed[0], first, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed[1], second, rtol=1e-5, atol=1e-5)


def test_training_and_inference_paths_agree(smoke_config, smoke_model):
    """In-place shortcuts are only taken without autograd; results must not differ."""
    x = _inputs(smoke_config)
    sigma = torch.tensor([1.5, 1.5])
    with torch.no_grad():
        ref = smoke_model(x, sigma, x)
    out = smoke_model(x, sigma, x)
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)
    cl = Music2Latent(smoke_config)
    cl.load_state_dict(smoke_model.state_dict())
    cl = cl.eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        out_cl = cl(x.contiguous(memory_format=torch.channels_last), sigma, x)
    torch.testing.assert_close(out_cl, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("switch", [None, "cross_connections", "freq_attention",
                                    "freq_scaling"])
def test_every_parameter_gets_a_gradient(smoke_config, switch):
    """No dead weights, with and without each ablation switch; ablations remove parameters."""
    config = smoke_config if switch is None else dataclasses.replace(smoke_config,
                                                                     **{switch: False})
    model = randomize_parameters(Music2Latent(config), seed=1)
    x = _inputs(config)
    out = model(x + 0.5 * torch.randn_like(x), torch.tensor([0.5, 2.0]), x)
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []
    if switch is not None:
        full = Music2Latent(smoke_config).num_parameters()
        assert model.num_parameters() < full


@pytest.mark.parametrize("freq_only", [False, True])
def test_subpixel_upsampling_equals_nearest_then_conv(freq_only):
    torch.manual_seed(0)
    up = Upsample(6, 4, freq_only=freq_only)
    x = torch.randn(2, 6, 8, 5, requires_grad=True)
    fast, naive = up(x), up.forward_naive(x)
    assert fast.shape == naive.shape == (2, 4, 32 if freq_only else 16, 5 if freq_only else 10)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)
    g_fast = torch.autograd.grad(fast.sum(), (x, up.conv.weight))
    g_naive = torch.autograd.grad(naive.sum(), (x, up.conv.weight))
    for a, b in zip(g_fast, g_naive):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # cached kernels, channels-last layout
        up_cl = up.to(memory_format=torch.channels_last)
        x_cl = x.detach().contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(up_cl(x_cl), naive.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(up_cl(x_cl), naive.detach(), rtol=1e-5, atol=1e-5)


def test_frequency_attention_is_per_frame_and_has_no_position():
    torch.manual_seed(0)
    att = randomize_parameters(FreqAttention(8, heads=2))
    x = torch.randn(1, 8, 6, 4)
    with torch.no_grad():
        y = att(x)
        # attention mixes frequency rows within a frame only (GroupNorm, which takes its
        # statistics over all frames, is taken out for this check)
        norm, att.norm = att.norm, torch.nn.Identity()
        x2 = x.clone()
        x2[..., 3] += 1.0
        torch.testing.assert_close(att(x)[..., :3], att(x2)[..., :3])
        assert not torch.allclose(att(x)[..., 3], att(x2)[..., 3] - 1.0)
        att.norm = norm
        perm = torch.randperm(6)  # permuting frequency rows permutes the output rows
        torch.testing.assert_close(att(x[:, :, perm]), y[:, :, perm], rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise(smoke_config, smoke_model):
    with pytest.raises(ValueError, match="multiple of 2"):
        smoke_model.encode(torch.zeros(1, 2, smoke_config.freq_bins, 3))
    with pytest.raises(ValueError, match="latents"):
        smoke_model.decode_pyramid(torch.zeros(1, 3, 4))


@pytest.mark.parametrize("offset, tolerance", [(0.3, 1e-5), (100.0, 1e-4)])
def test_accurate_group_norm_matches_float64_on_long_channels_last_maps(offset, tolerance):
    """PyTorch's channels-last CPU GroupNorm drifts on long maps (and badly when the mean
    dominates); ours must stay at float32 precision whatever the length and offset."""
    from benchmark.music2latent.layers import AccurateGroupNorm
    torch.manual_seed(0)
    norm = AccurateGroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = (0.5 * torch.randn(1, 16, 64, 3000) + offset).contiguous(memory_format=torch.channels_last)
    reference = torch.nn.functional.group_norm(x.double(), 4, norm.weight.double(), norm.bias.double())
    with torch.no_grad():
        y = norm(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert float((y.double() - reference).abs().max()) < tolerance  # native: 5e-5 / 0.8
    # training and contiguous inputs take the native kernel (autograd), same parameters
    y_native = norm(x.contiguous())
    assert y_native.requires_grad
    assert float((y_native.double() - reference).abs().max()) < 1e-3


@pytest.mark.parametrize("freq_only", [False, True])
def test_subpixel_upsampling_under_cpu_bf16_autocast(freq_only):
    """The phase kernels are computed from the weights in their own dtype even when the first
    call comes under autocast (it used to fail: 'both inputs should have same dtype')."""
    torch.manual_seed(0)
    up = randomize_parameters(Upsample(8, 4, freq_only=freq_only))
    x = torch.randn(1, 8, 8, 6)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = up(x)
        assert low.dtype == torch.bfloat16
        assert up._cached[1].dtype == torch.float32
        torch.testing.assert_close(low.float(), up.forward_naive(x), rtol=0.05, atol=0.05)
