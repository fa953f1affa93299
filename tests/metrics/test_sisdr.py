"""SI-SDR golden values: hand-computable cases, invariances, undefined cases."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.metrics.sisdr import MAX_DB, SISDR, si_sdr


def _orthogonal_noise(s: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """Zero-mean noise orthogonal to zero-mean ``s`` with ||s||^2 / ||n||^2 = 10^(snr/10)."""
    n = np.random.default_rng(seed).standard_normal(s.size)
    n -= n.mean()
    n -= (n @ s) / (s @ s) * s
    return n * np.sqrt((s @ s) / (n @ n) / 10 ** (snr_db / 10))


def test_hand_computed_zero_db():
    # s and n are zero-mean, orthogonal and of equal energy 4 -> 10 log10(4/4) = 0 dB
    s = np.array([1.0, -1.0, 1.0, -1.0])
    n = np.array([1.0, 1.0, -1.0, -1.0])
    assert si_sdr(s, s + n) == pytest.approx(0.0, abs=1e-12)


def test_hand_computed_scaled_target():
    # estimate 2s + n: target 2s (energy 16), noise n (energy 4) -> 10 log10(4) = 6.0206 dB
    s = np.array([1.0, -1.0, 1.0, -1.0])
    n = np.array([1.0, 1.0, -1.0, -1.0])
    assert si_sdr(s, 2 * s + n) == pytest.approx(10 * np.log10(4.0), abs=1e-12)


@pytest.mark.parametrize("snr", [-10.0, 0.0, 12.5, 40.0])
def test_orthogonal_noise_of_known_energy(snr):
    s = np.sin(2 * np.pi * 5 * np.arange(1000) / 1000) + 0.3 * np.cos(2 * np.pi * 17 * np.arange(1000) / 1000)
    s -= s.mean()
    assert si_sdr(s, s + _orthogonal_noise(s, snr)) == pytest.approx(snr, abs=1e-9)


def test_scale_and_offset_invariance():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(4000)
    e = s + 0.3 * rng.standard_normal(4000)
    base = si_sdr(s, e)
    assert si_sdr(s, 7.5 * e) == pytest.approx(base, abs=1e-9)
    assert si_sdr(0.01 * s, e) == pytest.approx(base, abs=1e-9)
    assert si_sdr(s, e + 0.25) == pytest.approx(base, abs=1e-9)  # zero-mean convention


def test_not_negated_and_monotone():
    s = np.random.default_rng(2).standard_normal(2000)
    values = [si_sdr(s, s + _orthogonal_noise(s - s.mean(), snr)) for snr in (30, 20, 10, 0)]
    assert values == sorted(values, reverse=True)
    assert values[0] > 0


def test_undefined_and_extreme_cases():
    s = np.random.default_rng(3).standard_normal(100)
    assert np.isnan(si_sdr(np.zeros(100), s))          # silent reference
    assert np.isnan(si_sdr(np.full(100, 0.5), s))      # DC only: silent after mean removal
    assert si_sdr(s, s) == MAX_DB                      # perfect estimate is capped
    assert si_sdr(s, np.zeros(100)) == -MAX_DB         # nothing of the target
    with pytest.raises(ValueError, match="length mismatch"):
        si_sdr(s, s[:-1])


def test_card():
    card = SISDR().card
    assert (card.name, card.unit, card.higher_is_better) == ("si_sdr", "dB", True)
    assert "zero-mean" in card.convention


def test_near_silent_noise_estimate_is_not_perfect():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal(16000)
    estimate = 1e-13 * rng.standard_normal(16000)  # a decoder that outputs (almost) nothing
    assert si_sdr(reference, estimate) < -20.0
