"""Consistency-training recipe: schedule, curriculum, sampling, loss and gradient flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.music2latent.config import get_preset
from benchmark.music2latent.consistency import (ConsistencySchedule, consistency_loss,
                                                curriculum_delta, huber_c, karras_sigma,
                                                pseudo_huber, sample_index)
from benchmark.music2latent.model import Music2Latent

S = ConsistencySchedule()


class StandIn(nn.Module):
    """Tiny model with the Music2Latent interface; records how it is called."""

    def __init__(self, bins: int = 8) -> None:
        super().__init__()
        self.config = get_preset("smoke")
        self.enc = nn.Conv2d(2, 3, kernel_size=(bins, 8), stride=(bins, 8))
        self.dec = nn.Linear(3, 2)
        self.net = nn.Conv2d(2, 2, kernel_size=3, padding=1)
        self.calls: list[tuple[str, bool, int]] = []

    def encode(self, spec):
        self.calls.append(("encode", torch.is_grad_enabled(), 0))
        return self.enc(spec).squeeze(2)  # [B, 3, T/8]

    def decode_pyramid(self, latents):
        self.calls.append(("decode", torch.is_grad_enabled(), 0))
        cond = self.dec(latents.mean(-1))  # [B, 2]
        return [cond]

    def denoise(self, x, sigma, pyramid):
        self.calls.append(("denoise", torch.is_grad_enabled(), id(pyramid)))
        sd, smin = 0.5, 0.002
        s = sigma.view(-1, 1, 1, 1)
        c_skip = sd ** 2 / ((s - smin) ** 2 + sd ** 2)
        c_out = sd * (s - smin) / torch.sqrt(s ** 2 + sd ** 2)
        c_in = 1 / torch.sqrt(s ** 2 + sd ** 2)
        return c_skip * x + c_out * (self.net(c_in * x) + pyramid[0][:, :, None, None])


def test_karras_sigma_golden_values():
    assert float(karras_sigma(0.0)) == pytest.approx(0.002, rel=1e-12)
    assert float(karras_sigma(1.0)) == pytest.approx(80.0, rel=1e-12)
    assert float(karras_sigma(0.25)) == pytest.approx(0.16975, rel=1e-3)
    assert float(karras_sigma(0.5)) == pytest.approx(2.5152, rel=1e-3)
    assert float(karras_sigma(0.75)) == pytest.approx(17.528, rel=1e-3)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert bool((karras_sigma(grid).diff() > 0).all())


def test_curriculum_delta_exponential_and_constant():
    assert curriculum_delta(0, 800_000) == pytest.approx(0.1)
    assert curriculum_delta(200_000, 800_000) == pytest.approx(0.1 ** 1.5)
    assert curriculum_delta(400_000, 800_000) == pytest.approx(0.01)
    assert curriculum_delta(800_000, 800_000) == pytest.approx(0.001)
    assert curriculum_delta(10**9, 800_000) == pytest.approx(0.001)  # clipped past the end
    constant = ConsistencySchedule(curriculum="constant")
    assert curriculum_delta(0, 100, constant) == curriculum_delta(100, 100, constant) == 1e-3
    with pytest.raises(ValueError, match="curriculum"):
        ConsistencySchedule(curriculum="cosine-ish")


def test_sampled_sigma_quantiles():
    gen = torch.Generator().manual_seed(0)
    index = sample_index(200_000, gen)
    assert index.min() >= 0 and index.max() <= 1
    q = np.quantile(karras_sigma(index).numpy(), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(q, [0.046, 0.58, 7.1], rtol=0.04)


def test_huber_constant_and_closed_form():
    assert huber_c(2 * 1024 * 64) == pytest.approx(0.19550, abs=1e-5)
    diff = torch.zeros(2, 4)
    diff[0, 0], diff[0, 1] = 3.0, 4.0  # norm 5
    c = 0.5
    np.testing.assert_allclose(pseudo_huber(diff, c).numpy(), [math.sqrt(25 + c * c) - c, 0.0], rtol=1e-6)


def _spec(batch=3, bins=8, frames=16, seed=1):
    return torch.randn(batch, 2, bins, frames, generator=torch.Generator().manual_seed(seed)) * 0.5


def test_loss_matches_the_recipe_written_out():
    torch.manual_seed(0)
    model, spec = StandIn(), _spec()
    loss, logs = consistency_loss(model, spec, step=30, total_steps=100,
                                  generator=torch.Generator().manual_seed(5))
    # Replay the same draws by hand.
    gen = torch.Generator().manual_seed(5)
    i_hi = sample_index(3, gen)
    z = torch.randn(spec.shape, generator=gen)
    delta = 0.1 ** (1 + 2 * 30 / 100)
    s_hi, s_lo = karras_sigma(i_hi), karras_sigma((i_hi - delta).clamp(min=0))
    pyr = model.decode_pyramid(model.encode(spec))
    with torch.no_grad():
        f_lo = model.denoise(spec + s_lo.float().view(-1, 1, 1, 1) * z, s_lo.float(), pyr)
        f_hi = model.denoise(spec + s_hi.float().view(-1, 1, 1, 1) * z, s_hi.float(), pyr)
    c = 0.00054 * math.sqrt(2 * 8 * 16)
    per = (torch.sqrt(((f_hi - f_lo) ** 2).flatten(1).sum(1) + c * c) - c) / (s_hi - s_lo).float()
    assert float(loss.detach()) == pytest.approx(float(per.mean()), rel=1e-5)
    assert logs["delta"] == pytest.approx(delta)
    assert logs["huber_c"] == pytest.approx(c)


def test_encoder_runs_once_and_target_has_no_gradient():
    model = StandIn()
    loss, _ = consistency_loss(model, _spec(), 0, 10, torch.Generator().manual_seed(0))
    names = [c[0] for c in model.calls]
    assert names == ["encode", "decode", "denoise", "denoise"]
    (_, grad_lo, pyr_lo), (_, grad_hi, pyr_hi) = model.calls[2], model.calls[3]
    assert grad_lo is False and grad_hi is True  # sigma_lo pass without autograd (stop-gradient)
    assert pyr_lo == pyr_hi  # both passes share one pyramid object


def test_encoder_gradient_comes_only_from_the_sigma_hi_branch():
    torch.manual_seed(0)
    model, spec = StandIn(), _spec()
    loss, _ = consistency_loss(model, spec, 5, 10, torch.Generator().manual_seed(3))
    grad = torch.autograd.grad(loss, model.enc.weight)[0]
    assert grad.abs().sum() > 0
    # Same draws; target as a constant: identical gradient. Target with gradient: different.
    gen = torch.Generator().manual_seed(3)
    i_hi = sample_index(3, gen)
    z = torch.randn(spec.shape, generator=gen)
    s_hi = karras_sigma(i_hi).float()
    s_lo = karras_sigma((i_hi - curriculum_delta(5, 10)).clamp(min=0)).float()
    weight = 1 / (karras_sigma(i_hi) - karras_sigma((i_hi - curriculum_delta(5, 10)).clamp(min=0))).float()
    c = huber_c(spec[0].numel())

    def manual(detach_target: bool):
        pyr = model.decode_pyramid(model.encode(spec))
        f_lo = model.denoise(spec + s_lo.view(-1, 1, 1, 1) * z, s_lo, pyr)
        f_hi = model.denoise(spec + s_hi.view(-1, 1, 1, 1) * z, s_hi, pyr)
        f_lo = f_lo.detach() if detach_target else f_lo
        return (weight * pseudo_huber(f_hi - f_lo, c)).mean()

    torch.testing.assert_close(torch.autograd.grad(manual(True), model.enc.weight)[0], grad)
    g_both = torch.autograd.grad(manual(False), model.enc.weight)[0]
    assert (g_both - grad).abs().max() > 1e-3 * grad.abs().max()


def test_per_example_generators_make_the_loss_split_invariant():
    torch.manual_seed(0)
    model, spec = StandIn(), _spec(batch=4)
    gens = lambda: [torch.Generator().manual_seed(100 + k) for k in range(4)]  # noqa: E731
    full, _ = consistency_loss(model, spec, 3, 10, gens())
    g = gens()
    a, _ = consistency_loss(model, spec[:2], 3, 10, g[:2])
    b, _ = consistency_loss(model, spec[2:], 3, 10, g[2:])
    assert float(full.detach()) == pytest.approx(float((a + b).detach() / 2), rel=1e-6)
    with pytest.raises(ValueError, match="generators"):
        consistency_loss(model, spec, 3, 10, gens()[:3])


def test_real_model_boundary_condition_and_loss():
    torch.manual_seed(0)
    config = get_preset("smoke")
    model = Music2Latent(config)
    frames = config.crop_frames
    spec = torch.randn(2, 2, config.freq_bins, frames) * 0.5
    pyramid = model.decode_pyramid(model.encode(spec))
    x = torch.randn_like(spec)
    with torch.no_grad():
        out = model.denoise(x, torch.full((2,), config.sigma_min), pyramid)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)  # f(x, sigma_min) = x
    loss, logs = consistency_loss(model, spec, 0, 100, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0
    assert logs["huber_c"] == pytest.approx(0.00054 * math.sqrt(spec[0].numel()))
    # The UNet head is zero-initialised, so at init nothing flows back to the encoder; give
    # the zero-initialised weights a value to see the gradient path.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.02)
    loss, _ = consistency_loss(model, spec, 0, 100, torch.Generator().manual_seed(0))
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
