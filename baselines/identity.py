"""Identity codec: latents are the waveform itself. The reconstruction upper bound."""

from __future__ import annotations

import torch

from benchmark.codecs.protocol import Codec, CodecInfo, check_audio_batch, check_latents


class IdentityCodec(Codec):
    """``encode`` returns audio as ``[batch, 1, samples]``; ``decode`` returns it unchanged."""

    def __init__(self, sample_rate: int = 44100) -> None:
        super().__init__(sample_rate=sample_rate)
        self.info = CodecInfo(name="identity", sample_rate=sample_rate, latent_dim=1,
                              latent_rate_hz=float(sample_rate),
                              description="waveform passthrough (upper bound of reconstruction)")

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        check_audio_batch(audio, self.info.name)
        return audio[:, None, :].clone()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        check_latents(latents, self.info.name)
        return latents[:, 0, :].clone()
