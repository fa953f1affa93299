import math

import pytest
import torch

from benchmark.music2latent.config import PRESETS
from benchmark.music2latent.frontend import SpectralFrontend


@pytest.fixture(scope="module")
def paper():
    return SpectralFrontend(PRESETS["paper"])


def test_frame_count_and_shape(paper):
    for length in (2048, 2559, 2560, 10000):
        spec = paper.wave_to_spec(torch.zeros(3, length))
        assert spec.shape == (3, 2, 1024, (length - 2048) // 512 + 1)
        assert paper.frames_for_samples(length) == spec.shape[-1]


def test_cosine_at_a_bin_centre_has_the_closed_form_value(paper):
    """A cos(2 pi k0 n / N) with a periodic Hann window: bin k0 = A N / 4 (real, positive,
    when k0 * hop / N is an integer), bins k0 +- 1 = -A N / 8; then beta |c|^alpha."""
    amp, k0, n = 0.5, 100, 2048
    t = torch.arange(4 * n, dtype=torch.float64)
    wave = (amp * torch.cos(2 * math.pi * k0 * t / n)).float()[None]
    spec = paper.wave_to_spec(wave)
    centre = 0.34 * (amp * n / 4) ** 0.65  # 12.498
    side = 0.34 * (amp * n / 8) ** 0.65
    assert centre == pytest.approx(12.4978, abs=1e-4)
    torch.testing.assert_close(spec[0, 0, k0], torch.full_like(spec[0, 0, k0], centre),
                               rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(spec[0, 0, k0 + 1], torch.full_like(spec[0, 0, k0], -side),
                               rtol=1e-4, atol=1e-3)
    assert spec[0, 1, k0].abs().max() < 1e-3  # imaginary part
    assert spec[0, :, k0 + 3:].abs().max() < 1e-2  # Hann leakage stops after one bin


def band_limited_noise(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Noise without content above 0.9 x Nyquist (the front end drops the Nyquist bin),
    peak 0.8 (the inverse clamps to [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    spectrum = torch.fft.rfft(torch.randn(batch, length, generator=g, dtype=torch.float64))
    spectrum[:, int(0.9 * spectrum.shape[-1]):] = 0
    wave = torch.fft.irfft(spectrum, n=length)
    return (0.8 * wave / wave.abs().amax(dim=-1, keepdim=True)).float()


def test_round_trip_is_exact_away_from_the_edges(paper):
    wave = band_limited_noise(2, 4096 * 5 + 1536)
    back = paper.spec_to_wave(paper.wave_to_spec(wave))
    assert back.shape == wave.shape
    inner = slice(1536, -1536)
    torch.testing.assert_close(back[:, inner], wave[:, inner], rtol=0, atol=2e-5)
    # the first sample is covered only by w[0] = 0; edges are attenuated, never amplified
    assert back[:, 0].abs().max() == 0
    assert (back[:, :1536].abs() <= wave[:, :1536].abs() + 1e-5).all()


def test_inverse_clamps_to_unit_range(paper):
    wave = 0.9 * torch.sign(torch.randn(1, 8192))
    back = paper.spec_to_wave(paper.wave_to_spec(wave) * 3.0)
    assert back.abs().max() <= 1.0
    assert back.abs().max() == 1.0


def test_length_rules_match_the_released_model(paper):
    assert paper.crop_length(131072) == 4096 * 31 + 1536
    assert paper.latents_for_samples(131072) == 31
    for k in (1, 2, 31):
        length = paper.samples_for_latents(k)
        assert length == 4096 * k + 1536
        assert paper.frames_for_samples(length) == paper.frames_for_latents(k) == 8 * k
        assert paper.crop_length(length + 4095) == length
    with pytest.raises(ValueError, match="at least 5632 samples"):
        paper.crop_length(5631)


def test_other_configs_round_trip():
    fe = SpectralFrontend(PRESETS["cpu"])
    wave = band_limited_noise(1, fe.samples_for_latents(6))
    back = fe.spec_to_wave(fe.wave_to_spec(wave))
    edge = PRESETS["cpu"].edge_samples
    torch.testing.assert_close(back[:, edge:-edge], wave[:, edge:-edge], rtol=0, atol=2e-5)


def test_bad_shapes_raise(paper):
    with pytest.raises(ValueError, match="at least n_fft"):
        paper.wave_to_spec(torch.zeros(1, 100))
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        paper.wave_to_spec(torch.zeros(100))
    with pytest.raises(ValueError, match="1024"):
        paper.spec_to_wave(torch.zeros(1, 2, 1025, 4))
