"""Spectral distances between a reference and an estimate (lower is better, 0 when identical).

A silent reference (RMS below -90 dBFS) gives NaN, as for every item metric (see
:mod:`benchmark.metrics.align`). Both are computed at a fixed analysis rate (default 44.1 kHz;
soxr resampling when the input rate differs) so that codecs working at different rates are
compared on the same grid. STFTs use a periodic Hann window, centred frames with reflect
padding (``torch.stft``), float32.

``mel_distance`` (as DAC's ``MelSpectrogramLoss``, Kumar et al. 2023)
    Sum over 7 scales ``(window, mels) = (32, 5), (64, 10), (128, 20), (256, 40), (512, 80),
    (1024, 160), (2048, 320)``, hop = window / 4, of the mean absolute difference of
    ``log10(max(mel, 1e-5))``, where ``mel`` is the Slaney mel filterbank (librosa's default,
    0 Hz to Nyquist) applied to the STFT *magnitude*.

``mrstft_distance`` (Parallel WaveGAN's multi-resolution STFT loss, Yamamoto et al. 2020)
    Mean over 3 resolutions ``(fft, hop, window) = (1024, 120, 600), (2048, 240, 1200),
    (512, 50, 240)`` of spectral convergence ``||S_ref - S_est||_F / ||S_ref||_F`` plus the
    mean absolute difference of ``ln S``, with ``S = sqrt(max(|STFT|^2, 1e-7))``.
"""

from __future__ import annotations

import functools

import librosa
import numpy as np
import torch

from benchmark.data.audio import resample
from benchmark.metrics.align import is_silent
from benchmark.metrics.base import ItemMetric, MetricCard, MetricError

MEL_SCALES = ((32, 5), (64, 10), (128, 20), (256, 40), (512, 80), (1024, 160), (2048, 320))
MEL_EPS = 1e-5
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
MRSTFT_EPS = 1e-7
DEFAULT_RATE = 44100


@functools.lru_cache(maxsize=64)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    return torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32))


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, periodic=True, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, win, window=window, center=True, pad_mode="reflect", return_complex=True)
    return spec.abs()


def _pair(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, rate: int | None,
          name: str) -> tuple[torch.Tensor, int] | None:
    ref = np.asarray(reference, dtype=np.float32).ravel()
    est = np.asarray(estimate, dtype=np.float32).ravel()
    if ref.shape != est.shape:
        raise MetricError(f"{name}: length mismatch {ref.size} vs {est.size}; align the signals first")
    if not (np.isfinite(ref).all() and np.isfinite(est).all()):
        raise MetricError(f"{name}: NaN or inf samples")
    if is_silent(ref):
        return None
    if rate is not None and sample_rate != rate:
        both = resample(np.stack([ref, est]), sample_rate, rate)
        return torch.from_numpy(both), rate
    return torch.from_numpy(np.stack([ref, est])), sample_rate


def mel_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                 rate: int | None = DEFAULT_RATE, scales=MEL_SCALES) -> float:
    """Multi-scale log-mel L1 distance (DAC convention; see module docstring)."""
    pair = _pair(reference, estimate, sample_rate, rate, "mel_distance")
    if pair is None:
        return float("nan")
    x, sr = pair
    if x.shape[1] < max(w for w, _ in scales) // 2 + 1:
        raise MetricError(f"mel_distance: signal of {x.shape[1]} samples is shorter than half the "
                          f"largest window ({max(w for w, _ in scales)})")
    total = 0.0
    for win, n_mels in scales:
        mel = _mel_basis(sr, win, n_mels) @ _magnitude(x, win, win // 4, win)  # [2, mels, frames]
        logmel = mel.clamp_min(MEL_EPS).log10()
        total += float((logmel[0] - logmel[1]).abs().mean())
    return total


def mrstft_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                    rate: int | None = DEFAULT_RATE, resolutions=MRSTFT_RESOLUTIONS) -> float:
    """Multi-resolution STFT distance (Parallel WaveGAN convention; see module docstring)."""
    pair = _pair(reference, estimate, sample_rate, rate, "mrstft_distance")
    if pair is None:
        return float("nan")
    x = pair[0]
    if x.shape[1] < max(n for n, _, _ in resolutions) // 2 + 1:
        raise MetricError(f"mrstft_distance: signal of {x.shape[1]} samples is too short for a "
                          f"{max(n for n, _, _ in resolutions)}-point STFT")
    total = 0.0
    for n_fft, hop, win in resolutions:
        power = _magnitude(x, n_fft, hop, win).square()
        mag = power.clamp_min(MRSTFT_EPS).sqrt()
        ref, est = mag[0], mag[1]
        sc = float(torch.linalg.norm(ref - est) / torch.linalg.norm(ref))
        log_l1 = float((ref.log() - est.log()).abs().mean())
        total += sc + log_l1
    return total / len(resolutions)


class MelDistance(ItemMetric):
    """Multi-scale log-mel L1 distance; ``rate``: analysis rate in Hz (None: input rate)."""

    comparable_on = ("rate",)  # the analysis rate: another grid, another value

    def __init__(self, rate: int | None = DEFAULT_RATE) -> None:
        self.rate = rate
        self.card = MetricCard(
            name="mel_distance", unit="log10-mel L1 (sum of 7 scales)", higher_is_better=False,
            convention=("DAC MelSpectrogramLoss: windows 32..2048 (hop win/4) with 5..320 Slaney "
                        "mel bands, |STFT| magnitudes, mean |log10(max(mel,1e-5))| difference, "
                        f"summed over scales; at {rate or 'the input'} Hz; NaN for silent reference"),
            implementation="benchmark.metrics.spectral (torch.stft float32, librosa mel filters)",
            version="1")

    def __call__(self, reference, estimate, sample_rate):
        return mel_distance(reference, estimate, sample_rate, self.rate)


class MRSTFTDistance(ItemMetric):
    """Multi-resolution STFT distance; ``rate``: analysis rate in Hz (None: input rate)."""

    comparable_on = ("rate",)  # the analysis rate: another grid, another value

    def __init__(self, rate: int | None = DEFAULT_RATE) -> None:
        self.rate = rate
        self.card = MetricCard(
            name="mrstft_distance", unit="SC + ln-magnitude L1 (mean of 3 resolutions)",
            higher_is_better=False,
            convention=("Parallel WaveGAN multi-resolution STFT loss: (fft, hop, win) = "
                        "(1024,120,600), (2048,240,1200), (512,50,240); spectral convergence + "
                        f"mean |ln S| difference, averaged over resolutions; at {rate or 'the input'} Hz; "
                        "NaN for silent reference"),
            implementation="benchmark.metrics.spectral (torch.stft float32)", version="1")

    def __call__(self, reference, estimate, sample_rate):
        return mrstft_distance(reference, estimate, sample_rate, self.rate)
