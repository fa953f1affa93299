"""Shared fixtures for the Music2Latent tests: small models with every path active."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.music2latent.config import PRESETS
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.model import Music2Latent, randomize_parameters


@pytest.fixture(scope="module")
def smoke_config():
    return PRESETS["smoke"]


@pytest.fixture(scope="module")
def smoke_model(smoke_config):
    """Smoke-preset model with random (non-zero) weights everywhere, eval mode."""
    return randomize_parameters(Music2Latent(smoke_config), seed=0).eval()


@pytest.fixture(scope="module")
def smoke_frontend(smoke_config):
    return SpectralFrontend(smoke_config)


def make_music_like(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """A deterministic music-like test signal ``[1, samples]``: three decaying harmonic notes
    per second plus a little noise, peak about 0.5."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * sample_rate)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    out = torch.zeros(n, dtype=torch.float64)
    notes = 110.0 * 2 ** (torch.randint(0, 24, (int(math.ceil(seconds * 3)),), generator=g) / 12)
    for i, f0 in enumerate(notes.tolist()):
        start = i / 3.0
        env = torch.where(t >= start, torch.exp(-(t - start) * 4.0), torch.zeros_like(t))
        for h in range(1, 5):
            out += env * torch.sin(2 * math.pi * f0 * h * (t - start)) / h
    out += 0.01 * torch.randn(n, generator=g, dtype=torch.float64)
    return (0.5 * out / out.abs().max()).float()[None]


@pytest.fixture(scope="session")
def music_like():
    """The :func:`make_music_like` signal generator."""
    return make_music_like
