"""Spectral distances: zero on identity, closed forms under gain, growth with distortion."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics.base import MetricError
from benchmark.metrics.signals import mixture
from benchmark.metrics.spectral import (
    MEL_SCALES,
    MelDistance,
    MRSTFTDistance,
    mel_distance,
    mrstft_distance,
)

SR = 44100


@pytest.fixture(scope="module")
def music():
    return mixture(SR, 2.0, seed=0)


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return x + n * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-snr_db / 20)


def _lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(x.size, 1 / SR) > cutoff_hz] = 0
    return np.fft.irfft(spec, x.size).astype(np.float32)


@pytest.mark.parametrize("fn", [mel_distance, mrstft_distance])
def test_zero_for_identical_signals(fn, music):
    assert fn(music, music, SR) == 0.0


def test_gain_closed_forms():
    # broadband noise: every band is far above the floors, so a gain of 1/2 gives
    # mel: log10(2) per scale, summed over 7 scales; MR-STFT: SC = 1/2 and |ln 2| per resolution
    x = 0.3 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    for scale in MEL_SCALES[2:]:
        assert mel_distance(x, 0.5 * x, SR, scales=(scale,)) == pytest.approx(np.log10(2), rel=1e-4)
    # the 32- and 64-sample windows have a lowest band fed almost only by the DC bin, which
    # zero-mean noise leaves near the 1e-5 floor in some frames: slightly less than log10(2)
    full = mel_distance(x, 0.5 * x, SR)
    assert 0.99 * len(MEL_SCALES) * np.log10(2) < full <= len(MEL_SCALES) * np.log10(2)
    assert mrstft_distance(x, 0.5 * x, SR) == pytest.approx(0.5 + np.log(2), rel=1e-4)


@pytest.mark.parametrize("fn", [mel_distance, mrstft_distance])
def test_grow_with_noise_and_with_bandwidth_loss(fn, music):
    noise = [fn(music, _noisy(music, snr), SR) for snr in (40, 25, 10)]
    assert 0 < noise[0] < noise[1] < noise[2]
    lowpass = [fn(music, _lowpass(music, fc), SR) for fc in (12000, 6000, 2000)]
    assert 0 < lowpass[0] < lowpass[1] < lowpass[2]


def test_analysis_rate_resampling(music):
    # at the default 44.1 kHz analysis rate a 48 kHz input is resampled first: same result
    # as resampling by hand; with rate=None it is analysed at its own rate
    from benchmark.data.audio import resample

    x48 = resample(music[None], SR, 48000)[0]
    y48 = _noisy(x48, 20)
    both = resample(np.stack([x48, y48]), 48000, SR)
    assert mel_distance(x48, y48, 48000) == pytest.approx(mel_distance(both[0], both[1], SR), rel=1e-6)
    assert mel_distance(x48, y48, 48000, rate=None) != pytest.approx(mel_distance(x48, y48, 48000), rel=1e-3)


@pytest.mark.parametrize("fn", [mel_distance, mrstft_distance])
def test_silent_reference_is_nan(fn, music):
    assert np.isnan(fn(np.zeros_like(music), music, SR))
    assert np.isnan(fn(np.full_like(music, 1e-6), music, SR))  # -120 dBFS
    assert fn(music, np.zeros_like(music), SR) > 0             # a silent estimate is scored


def test_bad_input(music):
    with pytest.raises(MetricError, match="length mismatch"):
        mel_distance(music, music[:-1], SR)
    bad = music.copy()
    bad[3] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        mrstft_distance(music, bad, SR)
    with pytest.raises(MetricError, match="too short"):
        mrstft_distance(music[:500], music[:500], SR)


def test_cards():
    for metric, name in ((MelDistance(), "mel_distance"), (MRSTFTDistance(), "mrstft_distance")):
        assert metric.card.name == name and metric.card.higher_is_better is False
        assert "44100 Hz" in metric.card.convention
