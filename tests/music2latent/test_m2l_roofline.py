"""The per-stage roofline: its arithmetic against PyTorch's own FLOP counter, its booking to
stages and kinds, and that it leaves the model as it found it."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.music2latent.config import get_preset
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.inference import decode_latents, encode_audio, prepare_for_inference
from benchmark.music2latent.layers import FreqAttention
from benchmark.music2latent.model import Music2Latent, randomize_parameters
from benchmark.music2latent.roofline import (KINDS, STAGES, Peaks, format_roofline,
                                             measure_peaks, profile_inference)


@pytest.fixture(scope="module")
def setup():
    config = get_preset("smoke")
    model = prepare_for_inference(randomize_parameters(Music2Latent(config), seed=3),
                                  channels_last=True)  # direct kernels: FlopCounterMode sees all
    frontend = SpectralFrontend(config)
    g = torch.Generator().manual_seed(0)
    audio = 0.3 * torch.randn(1, frontend.samples_for_latents(6), generator=g)
    return config, model, frontend, audio


def test_arithmetic_matches_pytorchs_flop_counter(setup):
    """Convolutions and linear layers as PyTorch's FlopCounterMode counts them; attention's two
    products (which that counter skips on CPU) as 4 B T F^2 C per frequency-attention call."""
    config, model, frontend, audio = setup
    shapes = []
    handles = [m.register_forward_pre_hook(lambda _m, args: shapes.append(args[0].shape))
               for m in model.modules() if isinstance(m, FreqAttention)]
    try:
        timer, wall, z = profile_inference(model, frontend, audio)
    finally:
        for h in handles:
            h.remove()
    attention_products = sum(4 * b * t * f * f * c for b, c, f, t in shapes)
    assert attention_products > 0
    with FlopCounterMode(display=False) as counter:
        z_ref = encode_audio(model, frontend, audio, chunk_seconds=None)
        decode_latents(model, frontend, z_ref, chunk_latents=None)
    ours = sum(c.flops for c in timer.costs.values())
    assert counter.get_total_flops() > 0
    assert ours == counter.get_total_flops() + attention_products
    torch.testing.assert_close(z, z_ref)  # profiling does not change the results


def test_booking_to_stages_and_kinds(setup):
    config, model, frontend, audio = setup
    timer, wall, _ = profile_inference(model, frontend, audio, steps=2)
    stages = {s for s, _ in timer.costs}
    kinds = {k for _, k in timer.costs}
    assert stages <= set(STAGES) and kinds <= set(KINDS)
    assert {"encoder", "decoder pyramid", "UNet step", "STFT/iSTFT"} <= stages
    assert {"convolutions", "norms", "attention"} <= kinds  # smoke has frequency attention
    flops = {s: sum(c.flops for (st, _), c in timer.costs.items() if st == s) for s in stages}
    assert flops["STFT/iSTFT"] == 0 and flops["encoder"] > 0
    # two steps: the UNet runs twice, the decoder pyramid once
    one_step, _, _ = profile_inference(model, frontend, audio, steps=1)
    unet = [sum(c.flops for (st, _), c in t.costs.items() if st == "UNet step")
            for t in (one_step, timer)]
    assert unet[1] == 2 * unet[0]
    timed = sum(c.seconds for c in timer.costs.values())
    assert 0 < timed <= wall
    # the wrappers and hooks are gone afterwards
    assert "features" not in vars(model.encoder) and "forward" not in vars(model.unet)
    assert "wave_to_spec" not in vars(frontend)
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_table_and_peaks(setup):
    config, model, frontend, audio = setup
    timer, wall, _ = profile_inference(model, frontend, audio)
    text = format_roofline(timer, wall, Peaks(fp32=100.0, bf16=50.0, threads=2))
    for name in ("encoder", "decoder pyramid", "UNet step", "STFT/iSTFT", "convolutions",
                 "norms", "attention", "total"):
        assert name in text
    assert "bf16 products run slower" in text  # bf16 peak below fp32
    peaks = measure_peaks(budget_s=0.2)
    assert peaks.fp32 > 0.1 and peaks.bf16 > 0 and peaks.threads == torch.get_num_threads()
