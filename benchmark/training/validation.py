"""Reconstruction scores used to validate and select checkpoints during training.

- ``si_sdr``: :func:`benchmark.metrics.sisdr.si_sdr` (dB, higher is better, zero-mean),
  averaged over crops.
- ``mel``: :func:`benchmark.metrics.spectral.mel_distance`, the multi-scale log-mel L1
  distance of the benchmark report (DAC convention, computed at 44.1 kHz; lower is better),
  averaged over crops. **It selects** ``best.pt`` (:data:`SELECT_METRIC`, for every training
  task of the benchmark, so that all compared models are selected by one rule).
- ``lsd``: log-spectral distance (dB, lower is better)::

      LSD = mean_frames sqrt( mean_bins (10 log10(P + eps) - 10 log10(P_hat + eps))^2 )

  with power spectra ``P`` from a Hann STFT of ``n_fft`` samples (2048 at 44.1 kHz, scaled
  with the rate: ~46 ms) and hop ``n_fft / 4``, normalised by the window sum (a full-scale
  sinusoid peaks at 0.25, i.e. -6 dB), and a floor ``eps = 1e-8`` (-80 dB) so that
  inaudible bins do not dominate; averaged over crops. It ignores phase, which a generative
  decoder does not copy. On very clean, sparse material (e.g. the synthesised built-in
  dataset, whose bins between harmonics sit at the 16-bit noise floor) it punishes noise
  between the partials harder than silence: on the built-in validation crops the untrained
  Music2Latent (whose zero-initialised output head makes it decode to noise ~80 dB down)
  scored a better LSD than each of our 19 300-step trial runs at its last step, although
  those were far better by the mel and MR-STFT distances, so selecting by LSD picked the
  least trained checkpoint. It is still logged, but no longer selects (protocol version 2).
- ``ltas``: long-term average spectrum distance (dB, lower is better): RMS over 32 mel bands
  of the difference of the crops' time-averaged band powers in dB (same STFT and floor). It
  measures spectral balance only (timbre, level), not fine structure or timing, and shows
  the first thing a short training run learns.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from benchmark.metrics.sisdr import si_sdr

__all__ = ["log_spectral_distance", "ltas_distance", "reconstruction_metrics", "lsd_n_fft",
           "SELECT_METRIC", "VALIDATION_VERSION"]

#: Validation score that picks ``best.pt`` (lower is better) in every benchmark training task.
SELECT_METRIC = "mel"
#: Version of the validation protocol (scores and selection rule); part of every training
#: run's identity, so that a cached run selected under another rule is not reused.
#: 1: selection by ``lsd``; 2: ``mel`` added and selects.
VALIDATION_VERSION = 2

_EPS = 1e-8
LTAS_BANDS = 32


def lsd_n_fft(sample_rate: int) -> int:
    """Power-of-two FFT size closest to 46.4 ms (2048 at 44.1 kHz, 1024 at 22.05 kHz)."""
    return 2 ** max(6, round(math.log2(sample_rate * 2048 / 44100)))


def _power(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Window-sum-normalised power spectrogram ``[batch, n_fft // 2 + 1, frames]`` (float64)."""
    window = torch.hann_window(n_fft, dtype=torch.float64, device=x.device)
    spec = torch.stft(x.double(), n_fft, hop_length=n_fft // 4, window=window, center=False,
                      return_complex=True) / window.sum()
    return spec.abs() ** 2


def _check_pair(reference: torch.Tensor, estimate: torch.Tensor, name: str) -> None:
    if reference.shape != estimate.shape:
        raise ValueError(f"{name}: shapes differ {tuple(reference.shape)} vs "
                         f"{tuple(estimate.shape)}; align the signals first")


def log_spectral_distance(reference: torch.Tensor, estimate: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Per-item log-spectral distance in dB.

    Parameters
    ----------
    reference, estimate: ``[batch, samples]`` audio (same length, at least ``n_fft``).
    n_fft: STFT size (window = FFT length, hop ``n_fft // 4``, no centring).

    Returns
    -------
    ``[batch]`` float64 LSD (dB); 0 for identical signals.
    """
    _check_pair(reference, estimate, "log_spectral_distance")
    diff = 10.0 * (torch.log10(_power(reference, n_fft) + _EPS) - torch.log10(_power(estimate, n_fft) + _EPS))
    return diff.pow(2).mean(dim=1).sqrt().mean(dim=1)


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, bands: int) -> torch.Tensor:
    import librosa  # heavy import, only when a validation runs

    return torch.from_numpy(librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=bands,
                                                norm=None, htk=False)).double()


def ltas_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, n_fft: int,
                  bands: int = LTAS_BANDS) -> torch.Tensor:
    """Per-item distance (dB) between long-term average spectra in ``bands`` mel bands.

    ``sqrt(mean_bands (10 log10(E + eps) - 10 log10(E_hat + eps))^2)`` with ``E`` the band
    power averaged over all frames; ``[batch]`` float64, 0 for identical signals and
    ``20 log10 g`` for a gain ``g`` (bands well above the floor).
    """
    _check_pair(reference, estimate, "ltas_distance")
    mel = _mel_filters(sample_rate, n_fft, bands).to(reference.device)

    def band_db(x: torch.Tensor) -> torch.Tensor:
        power = _power(x, n_fft)  # [batch, bins, frames]
        return 10.0 * torch.log10(torch.einsum("mf,bft->bm", mel, power) / power.shape[-1] + _EPS)

    return (band_db(reference) - band_db(estimate)).pow(2).mean(dim=1).sqrt()


def reconstruction_metrics(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int
                           ) -> dict[str, float]:
    """Mean ``si_sdr``, ``mel``, ``lsd`` and ``ltas`` of ``estimate`` against ``reference``.

    Both ``[batch, samples]`` at ``sample_rate``; the longer one is cut to the shorter length.
    Crops with a silent reference (NaN SI-SDR or mel distance) are left out of those means.
    """
    from benchmark.metrics.spectral import mel_distance  # librosa: only when a validation runs

    length = min(reference.shape[-1], estimate.shape[-1])
    reference = reference[..., :length].detach().cpu()
    estimate = estimate[..., :length].detach().cpu().float()
    scores = [si_sdr(r.numpy(), e.numpy()) for r, e in zip(reference, estimate)]
    finite = [s for s in scores if not math.isnan(s)]
    mels = [mel_distance(r.numpy(), e.numpy(), sample_rate) for r, e in zip(reference, estimate)]
    mels = [m for m in mels if not math.isnan(m)]
    n_fft = min(lsd_n_fft(sample_rate), 2 ** int(math.log2(length)))  # short crops: smaller FFT
    lsd = log_spectral_distance(reference, estimate, n_fft)
    ltas = ltas_distance(reference, estimate, sample_rate, n_fft)
    return {"si_sdr": float(np.mean(finite)) if finite else float("nan"),
            "mel": float(np.mean(mels)) if mels else float("nan"),
            "lsd": float(lsd.mean()), "ltas": float(ltas.mean())}


def validate_in_batches(audio: torch.Tensor, reconstruct, batch: int, device: torch.device | str, seed: int,
                        sample_rate: int) -> dict[str, float]:
    """Reconstruct validation ``audio`` ``[n, samples]`` in batches and score it.

    ``reconstruct(chunk, generators) -> waveform`` decodes one batch; example ``j`` of the
    whole set always gets the generator seeded ``seed + j``, so validation noise does not
    depend on the batch size.
    """
    estimates = []
    for start in range(0, audio.shape[0], batch):
        chunk = audio[start:start + batch].to(device)
        generators = [torch.Generator(device=device).manual_seed(seed + start + j) for j in range(chunk.shape[0])]
        estimates.append(reconstruct(chunk, generators).cpu())
    return reconstruction_metrics(audio, torch.cat(estimates), sample_rate)
