"""Spectral front end of Music2Latent: waveform <-> compressed complex STFT.

Conventions (the released model's, see the facts file §1):

- STFT with a periodic Hann window of ``n_fft`` samples, hop ``hop``, **no centring and no
  padding**: ``L`` samples give ``(L - n_fft) // hop + 1`` frames.
- One-sided, unnormalised FFT; the Nyquist bin is dropped, leaving ``n_fft // 2`` rows.
- Every coefficient is compressed in amplitude, ``c -> beta |c|^alpha e^{i angle c}``
  (alpha = 0.65, beta = 0.34), and real/imaginary parts are stacked as channels 0/1:
  ``[batch, 2, freq_bins, frames]``.
- Inverse: expand amplitudes, append a zero Nyquist row, inverse FFT per frame, multiply by
  the synthesis window ``w[n] / sum_k w^2[n + k hop]`` and overlap-add. The result has
  ``(frames - 1) * hop + n_fft`` samples, is exact away from the edges and attenuated in the
  first and last ``n_fft - hop`` samples (covered by fewer frames), and is clamped to [-1, 1].
- Length rule: ``k`` latent frames span ``k * samples_per_latent + (n_fft - hop)`` samples
  (``4096 k + 1536`` for the paper config); :meth:`SpectralFrontend.crop_length` crops an
  input to the longest such length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.music2latent.config import Music2LatentConfig


class SpectralFrontend(nn.Module):
    """Waveform ``[B, L]`` <-> representation ``[B, 2, freq_bins, frames]``.

    An ``nn.Module`` only so that ``.to(device)`` moves its two window buffers; it has no
    parameters.
    """

    def __init__(self, config: Music2LatentConfig) -> None:
        super().__init__()
        self.config = config
        self.hop = config.hop
        self.n_fft = config.n_fft
        self.alpha = config.alpha
        self.beta = config.beta
        window = torch.hann_window(config.n_fft, periodic=True, dtype=torch.float64)
        # sum_k w^2[n + k hop] is periodic in n with period hop; tile it over one frame.
        envelope = (window ** 2).reshape(-1, config.hop).sum(0).repeat(config.n_fft // config.hop)
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("synthesis_window", (window / envelope).float(), persistent=False)

    # -- length bookkeeping -------------------------------------------------------------------
    def frames_for_samples(self, length: int) -> int:
        """STFT frames of a ``length``-sample signal (0 if shorter than one window)."""
        return 0 if length < self.n_fft else (length - self.n_fft) // self.hop + 1

    def samples_for_frames(self, frames: int) -> int:
        """Samples that ``frames`` STFT frames span: ``(frames - 1) * hop + n_fft``."""
        return (frames - 1) * self.hop + self.n_fft

    def frames_for_latents(self, latents: int) -> int:
        """STFT frames that ``latents`` latent frames decode to (``8 k`` for the paper config)."""
        return latents * self.config.downsample_time

    def samples_for_latents(self, latents: int) -> int:
        """Samples that ``latents`` latent frames decode to (``4096 k + 1536``, paper config)."""
        return self.samples_for_frames(self.frames_for_latents(latents))

    def latents_for_samples(self, length: int) -> int:
        """Latent frames an input of ``length`` samples yields after cropping (may be 0)."""
        return max(0, (length - self.config.edge_samples) // self.config.samples_per_latent)

    def crop_length(self, length: int) -> int:
        """Longest length ``<= length`` of the form ``k * samples_per_latent + (n_fft - hop)``.

        Raises ``ValueError`` if ``length`` is too short for a single latent frame.
        """
        k = self.latents_for_samples(length)
        if k < 1:
            need = self.samples_for_latents(1)
            raise ValueError(f"audio of {length} samples is too short for one latent frame: "
                             f"need at least {need} samples "
                             f"({need / self.config.sample_rate:.3f} s at "
                             f"{self.config.sample_rate} Hz)")
        return self.samples_for_latents(k)

    # -- transforms ---------------------------------------------------------------------------
    def wave_to_spec(self, wave: torch.Tensor) -> torch.Tensor:
        """Compressed complex STFT.

        Parameters
        ----------
        wave: ``[batch, samples]`` float audio, at least ``n_fft`` samples.

        Returns
        -------
        ``[batch, 2, n_fft // 2, (samples - n_fft) // hop + 1]``: real and imaginary parts of
        ``beta |c|^alpha e^{i angle c}``.
        """
        if wave.ndim != 2:
            raise ValueError(f"wave_to_spec expects [batch, samples], got {tuple(wave.shape)}")
        if wave.shape[-1] < self.n_fft:
            raise ValueError(f"wave_to_spec needs at least n_fft={self.n_fft} samples, got "
                             f"{wave.shape[-1]}")
        stft = torch.stft(wave.float(), self.n_fft, hop_length=self.hop,
                          window=self.window.to(wave.device), center=False, normalized=False,
                          onesided=True, return_complex=True)[:, :-1]
        compressed = torch.polar(self.beta * stft.abs() ** self.alpha, stft.angle())
        return torch.stack((compressed.real, compressed.imag), dim=1)

    def spec_to_wave(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`wave_to_spec` (exact away from the first/last ``n_fft - hop``).

        Parameters
        ----------
        spec: ``[batch, 2, n_fft // 2, frames]``.

        Returns
        -------
        ``[batch, (frames - 1) * hop + n_fft]`` audio clamped to [-1, 1].
        """
        if spec.ndim != 4 or spec.shape[1] != 2 or spec.shape[2] != self.n_fft // 2:
            raise ValueError(f"spec_to_wave expects [batch, 2, {self.n_fft // 2}, frames], got "
                             f"{tuple(spec.shape)}")
        spec = spec.float()
        compressed = torch.complex(spec[:, 0], spec[:, 1])
        coeffs = torch.polar((compressed.abs() / self.beta) ** (1.0 / self.alpha),
                             compressed.angle())
        coeffs = F.pad(coeffs, (0, 0, 0, 1))  # zero Nyquist row
        frames = torch.fft.irfft(coeffs, n=self.n_fft, dim=1)  # [B, n_fft, frames]
        frames = frames * self.synthesis_window.to(spec.device)[:, None]
        n_frames = frames.shape[-1]
        length = self.samples_for_frames(n_frames)
        wave = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft),
                      stride=(1, self.hop))
        return wave.reshape(spec.shape[0], length).clamp(-1.0, 1.0)
