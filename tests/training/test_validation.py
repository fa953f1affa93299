"""Validation scores: log-spectral distance, mel distance and SI-SDR, against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.metrics.spectral import mel_distance
from benchmark.training.validation import (SELECT_METRIC, log_spectral_distance, lsd_n_fft,
                                           ltas_distance, reconstruction_metrics)


def _noise(n=2, length=8000, std=0.1, seed=0):
    return torch.randn(n, length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std


def test_lsd_closed_forms():
    x = _noise()
    assert torch.allclose(log_spectral_distance(x, x, 512), torch.zeros(2, dtype=torch.float64))
    # a gain g shifts every bin well above the -80 dB floor by 20 log10 g
    loud = _noise(std=1.0)
    lsd = log_spectral_distance(loud, 2 * loud, 512)
    torch.testing.assert_close(lsd, torch.full((2,), 20 * math.log10(2), dtype=torch.float64), atol=1e-3, rtol=0)
    # more distortion -> larger distance
    d1 = log_spectral_distance(x, x + 0.3 * _noise(seed=1), 512).mean()
    d2 = log_spectral_distance(x, x + 1.0 * _noise(seed=1), 512).mean()
    assert 0 < d1 < d2
    with pytest.raises(ValueError, match="shapes differ"):
        log_spectral_distance(x, x[:, :-1], 512)


def test_reconstruction_metrics_known_snr():
    x = _noise(n=3, length=16000).float()
    noise = _noise(n=3, length=16000, seed=5).float() * 0.1  # 20 dB below the signal
    m = reconstruction_metrics(x, x + noise, 16000)
    assert set(m) == {"si_sdr", "mel", "lsd", "ltas"}
    assert m["si_sdr"] == pytest.approx(20.0, abs=0.3)
    # the mel score is the report's metric, averaged over crops
    expected = sum(mel_distance(r.numpy(), (r + n).numpy(), 16000) for r, n in zip(x, noise)) / 3
    assert m["mel"] == pytest.approx(expected, rel=1e-6) and m["mel"] > 0
    assert m["lsd"] > 0 and 0 < m["ltas"] < 1.0  # white noise 20 dB down hardly changes the LTAS
    # longer estimate is cut to the reference length; silent references are left out of SI-SDR
    ref = torch.cat([x, torch.zeros(1, 16000)])
    est = torch.cat([x, torch.zeros(1, 16000)])
    m2 = reconstruction_metrics(ref, torch.cat([est, torch.zeros(4, 100)], dim=1), 16000)
    assert m2["si_sdr"] == pytest.approx(150.0) and m2["lsd"] == pytest.approx(0.0, abs=1e-9)
    assert m2["mel"] == pytest.approx(0.0, abs=1e-6)  # the silent crop is left out, not NaN
    assert m2["ltas"] == pytest.approx(0.0, abs=1e-9)


def test_lsd_fft_size_follows_the_rate():
    assert lsd_n_fft(44100) == 2048 and lsd_n_fft(22050) == 1024 and lsd_n_fft(16000) == 1024


def test_ltas_closed_forms_and_what_it_ignores():
    x = _noise(std=0.5, length=16000)
    assert torch.allclose(ltas_distance(x, x, 16000, 1024), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(ltas_distance(x, 0.5 * x, 16000, 1024),
                               torch.full((2,), 20 * math.log10(2), dtype=torch.float64), atol=1e-4, rtol=0)
    # same long-term spectrum, different signal: LTAS barely moves while LSD does
    other = _noise(std=0.5, length=16000, seed=7)
    assert ltas_distance(x, other, 16000, 1024).max() < 1.0
    assert log_spectral_distance(x, other, 1024).min() > 5.0
    # a low-passed estimate loses its top bands
    lowpassed = torch.fft.irfft(torch.fft.rfft(x) * (torch.arange(8001) < 2000), n=16000)
    assert ltas_distance(x, lowpassed, 16000, 1024).min() > 10.0


def test_selection_metric_prefers_a_noisy_reconstruction_to_silence():
    """Why ``mel`` selects best.pt: on sparse, clean material (the built-in dataset) LSD scores
    silence better than a reconstruction with every partial right and noise 40 dB down."""
    t = torch.arange(12416) / 16000
    ref = sum(0.3 / k * torch.sin(2 * math.pi * 220 * k * t) for k in range(1, 5))[None].repeat(2, 1)
    ref = torch.round(ref * 32767) / 32767  # 16-bit, like the built-in dataset
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    good = reconstruction_metrics(ref, ref + 0.01 * noise, 16000)
    silent = reconstruction_metrics(ref, torch.zeros_like(ref), 16000)
    assert good["si_sdr"] > 25 and silent["si_sdr"] == pytest.approx(-150.0)
    assert good["lsd"] > silent["lsd"] + 1.0  # LSD would pick the silent output
    assert SELECT_METRIC == "mel" and good["mel"] < silent["mel"] - 2.0
