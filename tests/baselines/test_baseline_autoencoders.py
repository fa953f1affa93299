"""Baseline autoencoders (plain spectral AE, VAE, diffusion-decoder AE) and the M2L ablations.

Smoke-sized models (16 kHz, hop 64, 8-d latents every 128 samples): seconds on CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from baselines.autoencoders.common import (RegressionLossConfig, deterministic_decode,
                                           multi_resolution_stft_loss, reconstruction_loss,
                                           spec_to_wave_differentiable)
from baselines.autoencoders.diffusion_ae import (DiffusionAECodec, EDMSettings, edm_denoise,
                                                 edm_preconditioning, edm_sample, edm_sigmas,
                                                 network_evaluations)
from baselines.autoencoders.recipes import BASELINE_CODECS, BUDGET_KEYS, shared_budget
from baselines.autoencoders.spectral_ae import SpectralAECodec
from baselines.autoencoders.vae import GaussianMusic2Latent, VAECodec, kl_divergence
from benchmark.codecs.protocol import CodecError
from benchmark.codecs.registry import create_codec
from benchmark.music2latent.codec import Music2LatentCodec, file_sha256
from benchmark.music2latent.config import PRESETS, get_preset
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.model import Music2Latent, randomize_parameters
from benchmark.training import train
from benchmark.training.config import resolve_train_config, train_presets
from benchmark.training.tasks import Batch, build_task

RATE = 16000
CODECS = {"spectral_ae": SpectralAECodec, "vae": VAECodec, "diffusion_ae": DiffusionAECodec}
ABLATIONS_YAML = Path(__file__).resolve().parents[2] / "benchmark" / "presets" / "ablations.yaml"


def music_like(seconds: float, seed: int = 0) -> torch.Tensor:
    """``[1, samples]`` at 16 kHz: decaying harmonic notes plus a little noise, peak 0.5."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    y = np.zeros_like(t)
    for i, f0 in enumerate(110.0 * 2 ** (g.integers(0, 24, size=int(math.ceil(seconds * 3))) / 12)):
        env = np.where(t >= i / 3, np.exp(-(t - i / 3) * 4.0), 0.0)
        y += sum(env * np.sin(2 * np.pi * f0 * h * (t - i / 3)) / h for h in range(1, 5))
    y += 0.01 * g.standard_normal(t.size)
    return torch.from_numpy(0.5 * y / np.abs(y).max()).float()[None]


@pytest.fixture(scope="module")
def smoke():
    return PRESETS["smoke"]


# -- codec protocol ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(CODECS))
def test_latents_match_music2latent_and_decode_length(kind, smoke):
    codec = CODECS[kind](preset="smoke")
    reference = Music2LatentCodec(preset="smoke")
    audio = music_like(0.5)  # 8000 samples -> (8000 - 192) // 128 = 61 latent frames
    z = codec.encode(audio)
    assert z.shape == reference.encode(audio).shape == (1, smoke.latent_dim, 61)
    out = codec.decode(z)
    assert out.shape == (1, 61 * 128 + 192) and torch.isfinite(out).all()
    info = codec.info
    assert (info.latent_dim, info.latent_rate_hz, info.sample_rate) == (8, 125.0, RATE)
    assert info.compression_ratio == pytest.approx(16.0)
    assert info.weights_id == "random-init:smoke:seed0" and "RANDOM" in info.description
    assert info.stochastic is (kind == "diffusion_ae")
    assert info.decode_steps == (8 if kind == "diffusion_ae" else None)  # Euler, 8 steps
    # same network as Music2Latent; the VAE's encoder head is twice as wide (mean, log-variance)
    extra = (smoke.bottleneck_channels + 1) * smoke.latent_dim if kind == "vae" else 0
    assert info.parameters == reference.info.parameters + extra
    assert codec.features(audio).shape == (1, smoke.feature_dim, 61)


@pytest.mark.parametrize("kind", sorted(CODECS) + ["music2latent"])
def test_one_encoder_pass_gives_the_latents_and_features_of_two(kind):
    """``encode_with_features`` (the encode stage's one pass) equals ``encode`` and ``features``,
    for the VAE too, whose latents are the posterior mean (no tanh); across encoder chunks as well."""
    codec = (CODECS.get(kind) or Music2LatentCodec)(preset="smoke", chunk_seconds=0.2)
    randomize_parameters(codec.model, seed=3)  # non-zero heads: the latents must differ by kind
    audio = torch.cat([music_like(0.6, seed=1), music_like(0.6, seed=2)])
    z, f = codec.encode_with_features(audio)
    torch.testing.assert_close(z, codec.encode(audio), rtol=0, atol=0)
    torch.testing.assert_close(f, codec.features(audio), rtol=0, atol=0)
    assert (z.abs().max() > 1) == (kind == "vae")  # the posterior mean is not squashed by a tanh


def test_decoding_is_deterministic_given_seed():
    audio = music_like(0.4)
    outs = {}
    for kind in ("spectral_ae", "diffusion_ae"):
        for seed in (0, 1):
            codec = CODECS[kind](preset="smoke", seed=seed)
            randomize_parameters(codec.model, seed=3)  # every path active, same weights for both
            z = codec.encode(audio)
            outs[kind, seed] = (codec.decode(z), codec.decode(z))
    for a, b in outs.values():
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same codec, same seed: identical
        assert a.abs().max() > 1e-3
    torch.testing.assert_close(outs["spectral_ae", 0][0], outs["spectral_ae", 1][0])
    assert (outs["diffusion_ae", 0][0] - outs["diffusion_ae", 1][0]).abs().max() > 1e-3


def test_codec_options_are_validated():
    with pytest.raises(CodecError, match="deterministic decoder"):
        SpectralAECodec(preset="smoke", steps=4)
    with pytest.raises(CodecError, match="unknown sampler"):
        DiffusionAECodec(preset="smoke", sampler="ddim")
    with pytest.raises(CodecError, match="unknown Music2Latent preset"):
        VAECodec(preset="tiny")
    with pytest.raises(CodecError, match="too short"):
        VAECodec(preset="smoke").encode(torch.zeros(1, 300))
    narrow = SpectralAECodec(preset="smoke", model={"latent_dim": 4})
    assert narrow.encode(music_like(0.2)).shape[1] == 4
    assert narrow.identity != SpectralAECodec(preset="smoke").identity
    assert DiffusionAECodec(preset="smoke", steps=4, sampler="heun").info.decode_steps == 7
    with pytest.raises(CodecError, match="not found"):
        VAECodec(checkpoint="/nonexistent/best.pt")


# -- front-end pieces of the regression loss ----------------------------------------------------
def test_differentiable_inverse_matches_frontend_and_has_finite_gradients(smoke):
    frontend = SpectralFrontend(smoke)
    spec = frontend.wave_to_spec(music_like(0.3))
    torch.testing.assert_close(spec_to_wave_differentiable(frontend, spec),
                               frontend.spec_to_wave(spec), rtol=1e-4, atol=1e-5)
    zero = torch.zeros_like(spec, requires_grad=True)  # the zero-initialised UNet output
    loss, terms = reconstruction_loss(frontend, spec, zero, RegressionLossConfig())
    loss.sum().backward()
    assert torch.isfinite(zero.grad).all() and zero.grad.abs().sum() > 0
    # the two terms, golden: L1 = mean |S|, and the MRSTFT of a silent estimate
    torch.testing.assert_close(terms["spec_l1"], spec.abs().flatten(1).mean(1))
    assert float(terms["mrstft"].detach()) > 1.0


def test_multi_resolution_stft_loss_is_zero_for_identity_and_grows_with_noise():
    x = music_like(0.5)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    assert float(multi_resolution_stft_loss(x, x.clone(), (128, 256, 512))) == pytest.approx(0, abs=1e-6)
    values = [float(multi_resolution_stft_loss(x, x + a * noise, (128, 256, 512)))
              for a in (0.003, 0.03, 0.3)]
    assert values == sorted(values) and values[0] > 0


# -- VAE -----------------------------------------------------------------------------------------
def test_kl_divergence_closed_form():
    zero = torch.zeros(1, 3, 5)
    assert float(kl_divergence(zero, zero)) == 0.0
    assert float(kl_divergence(zero + 1.0, zero)) == pytest.approx(0.5)
    assert float(kl_divergence(zero, zero + math.log(4.0))) == pytest.approx(0.5 * (3 - math.log(4)))


def test_vae_encoder_is_music2latents_encoder_without_tanh(smoke):
    torch.manual_seed(0)
    vae = randomize_parameters(GaussianMusic2Latent(smoke), seed=2).eval()
    m2l = Music2Latent(smoke).eval()
    state = dict(vae.state_dict())
    for name in ("encoder.to_latent.weight", "encoder.to_latent.bias"):
        state[name] = state[name][: smoke.latent_dim]  # the mean half
    m2l.load_state_dict(state)
    spec = SpectralFrontend(smoke).wave_to_spec(music_like(0.3))
    with torch.no_grad():
        mean, logvar = vae.moments(spec)
        torch.testing.assert_close(torch.tanh(mean), m2l.encode(spec), rtol=1e-5, atol=1e-6)
        assert mean.shape == logvar.shape == m2l.encode(spec).shape
        torch.testing.assert_close(vae.encode(spec), mean)


# -- diffusion decoder ---------------------------------------------------------------------------
def test_edm_preconditioning_closed_form(smoke):
    c_in, c_skip, c_out = edm_preconditioning(torch.tensor([0.5]), 0.5)
    assert (float(c_in), float(c_skip), float(c_out)) == pytest.approx(
        (1 / (0.5 * math.sqrt(2)), 0.5, 0.5 / math.sqrt(2)))
    sigma = torch.tensor([0.01, 1.0, 80.0])
    c_in, c_skip, c_out = edm_preconditioning(sigma, 0.5)
    weight = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(weight * c_out ** 2, torch.ones(3))  # EDM: unit effective weight
    # a fresh model's UNet output conv is zero-initialised, so D(x, sigma) = c_skip x
    model = Music2Latent(smoke).eval()
    spec = SpectralFrontend(smoke).wave_to_spec(music_like(0.3))
    x = spec + 2.0 * torch.randn_like(spec)
    with torch.no_grad():
        out = edm_denoise(model, x, 2.0, model.decode_pyramid(model.encode(spec)))
    torch.testing.assert_close(out, x * 0.25 / (4.0 + 0.25))


def test_edm_sigmas_and_evaluation_counts():
    assert edm_sigmas(1, 0.002, 80.0) == [80.0, 0.0]
    grid = edm_sigmas(4, 0.002, 80.0, 7.0)
    assert grid[0] == pytest.approx(80.0) and grid[-2] == pytest.approx(0.002) and grid[-1] == 0
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert [network_evaluations(n, "heun") for n in (1, 2, 8)] == [1, 3, 15]
    assert network_evaluations(8, "euler") == 8


def test_sampler_converges_to_the_exact_ode_solution_on_gaussian_data():
    """Data N(mu, s^2) per element: the ideal denoiser and the probability-flow ODE solution
    are closed forms, x(0) = mu + s / sqrt(s^2 + sigma_max^2) (x(sigma_max) - mu)."""
    mu, s, smax = 0.3, 0.5, 80.0
    x0 = smax * torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    denoise = lambda x, sigma: mu + s * s / (s * s + sigma * sigma) * (x - mu)  # noqa: E731
    exact = mu + s / math.sqrt(s * s + smax * smax) * (x0 - mu)
    err = {(m, n): float((edm_sample(denoise, x0, n, m) - exact).abs().max())
           for m in ("euler", "heun") for n in (1, 2, 4, 8, 16, 32)}
    euler = [err["euler", n] for n in (1, 2, 4, 8, 16, 32)]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(euler, euler[1:]))  # more steps: closer
    assert 1.6 < err["euler", 16] / err["euler", 32] < 2.5  # first order
    assert err["heun", 16] / err["heun", 32] > 3.5  # second order
    assert err["heun", 32] < err["euler", 32] / 4
    assert err["heun", 2] > 20 * err["euler", 2]  # why Euler is the default at few steps
    assert err["euler", 1] == pytest.approx(err["heun", 1])  # one step: D(sigma_max z)


# -- training ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BASELINE_CODECS)
def test_a_few_steps_reduce_the_loss_on_a_tiny_signal(kind):
    config = resolve_train_config(kind, "smoke")
    torch.manual_seed(0)
    task = build_task(kind, config, torch.device("cpu"))
    audio = torch.cat([music_like(0.2, seed=i)[:, :task.crop_samples] for i in range(2)])
    batch = Batch(audio, torch.tensor([11, 12]))  # fixed seeds: a fixed objective to descend
    opt = torch.optim.Adam(task.model.parameters(), lr=2e-3)
    losses = []
    for step in range(8):
        loss, logs = task.loss(batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # monotone descent
    assert losses[-1] < (0.9 if kind == "diffusion_ae" else 0.5) * losses[0], losses
    if kind == "vae":
        assert float(logs["kl"]) > 0 and "posterior_std" in logs


def test_loss_is_independent_of_batch_splitting():
    config = resolve_train_config("diffusion_ae", "smoke")
    torch.manual_seed(0)
    task = build_task("diffusion_ae", config, torch.device("cpu"))
    batch = Batch(0.1 * torch.randn(4, task.crop_samples), torch.arange(4) + 100)
    with torch.no_grad():
        full = float(task.loss(batch, 0)[0])
        halves = [float(task.loss(b, 0)[0]) for b in batch.split(2)]
    assert full == pytest.approx(sum(halves) / 2, rel=1e-5)


def test_presets_share_music2latents_budget():
    for preset in train_presets("music2latent"):
        reference = resolve_train_config("music2latent", preset)
        for kind in BASELINE_CODECS:
            config = resolve_train_config(kind, preset)
            assert config.codec == kind and config.loss == {}
            for key in BUDGET_KEYS:
                assert getattr(config, key) == getattr(reference, key), (kind, preset, key)
    assert "codec" not in shared_budget("cpu")
    config = resolve_train_config("vae", "cpu", {"model.latent_dim": 16, "loss.kl_weight": 1e-3})
    assert config.model == {"latent_dim": 16} and config.loss == {"kl_weight": 1e-3}
    with pytest.raises(ValueError, match="unknown regression loss settings"):
        build_task("vae", resolve_train_config("vae", "smoke", {"loss.beta": 1}), torch.device("cpu"))
    assert RegressionLossConfig().kl_weight == 1e-2 and EDMSettings().p_mean == -1.2


def test_trained_checkpoint_through_the_codec(tmp_path):
    """train() -> best.pt -> codec: weights hash, budget and decoding; wrong kind is refused."""
    root = tmp_path / "music"
    root.mkdir()
    for i in range(3):
        sf.write(root / f"clip{i}.wav", music_like(1.0, seed=i)[0].numpy(), RATE)
    best = train("vae", "smoke", dataset=str(root), out_dir=tmp_path / "runs", device="cpu",
                 progress=False, tensorboard=False)
    codec = create_codec("baselines.autoencoders.vae:VAECodec", checkpoint=str(best))
    steps = shared_budget("smoke")["steps"]
    best_step = torch.load(best, map_location="cpu", weights_only=True)["step"]  # chosen by validation
    assert 0 < best_step <= steps
    assert codec.info.weights_id == file_sha256(best) and f"step {best_step}" in codec.info.description
    assert codec.training["step"] == best_step and codec.training["train_seconds"] > 0
    for key, value in shared_budget("smoke").items():
        assert codec.training["train"][key] == (list(value) if isinstance(value, tuple) else value)
    out = codec.decode(codec.encode(music_like(0.5)))
    assert out.shape == (1, 61 * 128 + 192) and torch.isfinite(out).all()
    with pytest.raises(CodecError, match="checkpoint of 'vae', not of 'spectral_ae'"):
        SpectralAECodec(checkpoint=str(best))
    with pytest.raises(CodecError, match="carries its own config"):
        VAECodec(checkpoint=str(best), model={"latent_dim": 4})


def test_diffusion_decoding_with_more_steps_is_different_and_finite(smoke):
    codec = DiffusionAECodec(preset="smoke", steps=1)
    randomize_parameters(codec.model, seed=5)
    z = codec.encode(music_like(0.3))
    outs = []
    for steps in (1, 2, 4):
        codec.steps = steps
        outs.append(codec.decode(z))
    assert all(torch.isfinite(o).all() for o in outs)
    assert (outs[0] - outs[2]).abs().max() > 1e-4


def test_deterministic_decoder_ignores_the_noise_input(smoke):
    """The plain AE's decoder is the consistency function at sigma_max on a zero input."""
    model = randomize_parameters(Music2Latent(smoke), seed=4).eval()
    spec = SpectralFrontend(smoke).wave_to_spec(music_like(0.3))
    with torch.no_grad():
        pyramid = model.decode_pyramid(model.encode(spec))
        out = deterministic_decode(model, pyramid, spec.shape[-1])
        _, _, c_out = model.preconditioning(torch.tensor([smoke.sigma_max]))
        raw = model.unet(torch.zeros_like(spec), torch.tensor([smoke.sigma_max]), pyramid)
    torch.testing.assert_close(out, c_out * raw)


# -- Music2Latent ablations ----------------------------------------------------------------------
def test_ablation_switches_remove_the_expected_parameters():
    cpu = get_preset("cpu")
    full = Music2Latent(cpu).num_parameters()
    counts = {s: Music2Latent(cpu.replace(**{s: False})).num_parameters()
              for s in ("cross_connections", "freq_attention", "freq_scaling")}
    assert all(n < full for n in counts.values())
    cd, bins = cpu.cond_dim, cpu.freq_bins
    scaling_mlp = (cd * cd + cd) * 2 + cd * bins + bins
    assert full - counts["freq_scaling"] == 2 * scaling_mlp + bins  # two MLPs + encoder gain

    def attention(c):  # GroupNorm + qkv + output projection
        return 2 * c + c * 3 * c + 3 * c + c * c + c

    per_level = 4  # encoder, decoder, UNet down, UNet up: one block each at the cpu preset
    assert full - counts["freq_attention"] == sum(per_level * attention(cpu.channels[level])
                                                  for level in cpu.attention_levels)


def test_ablations_preset_passes_model_overrides_to_training():
    config = yaml.safe_load(ABLATIONS_YAML.read_text())
    labels = [c.get("label", c["name"]) for c in config["codecs"]]
    assert len(set(labels)) == len(labels)
    switches = set()
    trained = [c for c in config["codecs"] if "train" in c]
    assert {c["name"] for c in trained} == {"music2latent", *BASELINE_CODECS}
    for codec in trained:
        train_options = codec["train"]
        overrides = train_options.get("overrides", {})
        resolved = resolve_train_config(codec["name"], train_options["preset"], overrides)
        model_config = get_preset(resolved.model_preset, **resolved.model)
        for key, value in overrides.items():
            switches.add(key)
            assert getattr(model_config, key.split(".", 1)[1]) == value
    assert switches == {"model.cross_connections", "model.freq_attention", "model.freq_scaling"}
