"""Low-pass reference codec: keep the waveform at 1/``factor`` of the sample rate.

Latents are the band-limited, decimated waveform framed into ``latent_dim`` channels, so the
compression ratio is ``factor`` (up to rounding of the low rate). Decoding resamples back (soxr VHQ). Everything above
``sample_rate / (2 factor)`` Hz is lost: a simple, well-understood lossy reference.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.codecs.protocol import Codec, CodecInfo, check_audio_batch, check_latents
from benchmark.data.audio import resample


class LowpassCodec(Codec):
    def __init__(self, sample_rate: int = 44100, factor: int = 4, latent_dim: int = 16) -> None:
        super().__init__(sample_rate=sample_rate, factor=factor, latent_dim=latent_dim)
        if factor < 1:
            raise ValueError(f"lowpass: factor must be >= 1, got {factor}")
        self.factor, self.dim = factor, latent_dim
        self.low_rate = round(sample_rate / factor)
        self.info = CodecInfo(
            name="lowpass", sample_rate=sample_rate, latent_dim=latent_dim,
            latent_rate_hz=self.low_rate / latent_dim,
            description=f"decimate x{factor} (bandwidth {self.low_rate / 2000:.1f} kHz) and resample back")

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        check_audio_batch(audio, self.info.name)
        low = resample(audio.numpy().astype(np.float32), self.info.sample_rate, self.low_rate)
        frames = -(-low.shape[1] // self.dim)
        padded = np.zeros((low.shape[0], frames * self.dim), dtype=np.float32)
        padded[:, : low.shape[1]] = low
        # [batch, frames, dim] -> [batch, dim, frames]: one latent frame = dim consecutive samples
        return torch.from_numpy(padded.reshape(low.shape[0], frames, self.dim).transpose(0, 2, 1).copy())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        check_latents(latents, self.info.name)
        low = latents.numpy().transpose(0, 2, 1).reshape(latents.shape[0], -1)
        return torch.from_numpy(resample(np.ascontiguousarray(low), self.low_rate, self.info.sample_rate))
