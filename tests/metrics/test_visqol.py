"""ViSQOL wrapper: equals visqol-python called directly, monotone in noise on music-like audio."""

from __future__ import annotations

import numpy as np
import pytest

visqol = pytest.importorskip("visqol")

from benchmark.data.audio import resample  # noqa: E402
from benchmark.metrics.base import MetricError  # noqa: E402
from benchmark.metrics.signals import mixture  # noqa: E402
from benchmark.metrics.visqol import ViSQOL  # noqa: E402


@pytest.fixture(scope="module")
def music48():
    return mixture(48000, 3.0, seed=0)


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return x + n * np.sqrt(np.mean(x ** 2) / np.mean(n ** 2)) * 10 ** (-snr_db / 20)


@pytest.fixture(scope="module")
def metric():
    return ViSQOL(workers=1)


def test_equals_visqol_python_called_directly(metric, music48):
    degraded = _noisy(music48, 20)
    api = visqol.VisqolApi()
    api.create(mode="audio")
    direct = api.measure_from_arrays(music48.astype(np.float64), degraded.astype(np.float64), 48000).moslqo
    # equal up to float round-off (numba's parallel loops do not fix the summation order)
    assert metric(music48, degraded, 48000) == pytest.approx(direct, abs=1e-9)


def test_identical_audio_at_the_audio_mode_ceiling(metric, music48):
    assert metric(music48, music48, 48000) == pytest.approx(4.73, abs=0.02)


def test_decreases_monotonically_with_noise(metric, music48):
    scores = [metric(music48, _noisy(music48, snr), 48000) for snr in (40, 20, 5)]
    assert scores[0] > scores[1] > scores[2]
    assert 1.0 <= scores[2] and scores[0] <= 5.0


def test_resamples_other_rates_to_48k(metric, music48):
    x44 = resample(music48[None], 48000, 44100)[0]
    y44 = _noisy(x44, 20)
    both = resample(np.stack([x44, y44]), 44100, 48000)
    api = visqol.VisqolApi()
    api.create(mode="audio")
    direct = api.measure_from_arrays(both[0].astype(np.float64), both[1].astype(np.float64), 48000).moslqo
    assert metric(x44, y44, 44100) == pytest.approx(direct, abs=1e-9)


def test_silent_reference_and_bad_input(metric, music48):
    assert np.isnan(metric(np.zeros(48000, np.float32), music48[:48000], 48000))
    with pytest.raises(MetricError, match="length mismatch"):
        metric(music48, music48[:-10], 48000)
    bad = music48.copy()
    bad[0] = np.inf
    with pytest.raises(MetricError, match="NaN or inf"):
        metric(music48, bad, 48000)
    with pytest.raises(MetricError, match="mode"):
        ViSQOL(mode="music")


def test_cards_record_mode_rate_and_version():
    audio, speech = ViSQOL().card, ViSQOL(mode="speech").card
    assert "audio mode at 48000 Hz" in audio.convention and "speech mode at 16000 Hz" in speech.convention
    assert audio.implementation.startswith(f"visqol-python {visqol.__version__}")


def test_speech_mode_scores_on_16k(music48):
    x16 = resample(music48[None], 48000, 16000)[0]
    m = ViSQOL(mode="speech", workers=1)
    clean, noisy = m(x16, x16, 16000), m(x16, _noisy(x16, 5), 16000)
    assert 1.0 <= noisy < clean <= 5.0


@pytest.mark.slow
def test_batch_in_worker_processes_equals_sequential(music48):
    pairs = [(music48, _noisy(music48, snr, seed=snr)) for snr in (30, 15)]
    pairs.append((np.zeros_like(music48), music48))
    with ViSQOL(workers=2) as parallel:
        got = parallel.batch(pairs, 48000)
    want = ViSQOL(workers=1).batch(pairs, 48000)
    assert got[:2] == pytest.approx(want[:2], abs=1e-9)
    assert np.isnan(got[2]) and np.isnan(want[2])
