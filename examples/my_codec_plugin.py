"""How to add your codec: a complete, working plugin in one file.

Run it through the whole benchmark without registering anything::

    python -m benchmark run all --codecs examples.my_codec_plugin:ExampleCodec,identity

or in a run config: ``codecs: [{name: "examples.my_codec_plugin:ExampleCodec", options: {keep: 32}}]``.

The codec (a deliberately simple transform codec): cut the waveform into non-overlapping frames
of ``frame`` samples, take each frame's orthonormal DCT-II and keep its ``keep`` lowest
coefficients. Latents are ``[batch, keep, frames]`` at ``sample_rate / frame`` Hz, i.e.
``frame / keep`` fewer numbers than the waveform. Decoding zero-fills the dropped
coefficients and inverts the DCT, so it is an exact round trip when ``keep == frame`` and a
brick-wall low-pass at ``keep / frame * sample_rate / 2`` Hz (with block edges) otherwise.

What every codec must do (see ``benchmark/codecs/protocol.py``):

1. call ``super().__init__(**config)`` with every constructor option that changes the output
   (it keys the cache: two configurations never share cached results);
2. set ``self.info`` (a :class:`~benchmark.codecs.CodecInfo`: sample rate, latent shape and
   rate, parameters, weights hash, licences, whether decoding is stochastic);
3. implement ``encode([batch, samples]) -> [batch, dim, frames]`` and
   ``decode([batch, dim, frames]) -> [batch, samples]`` on mono float audio at
   ``info.sample_rate`` (the pipeline resamples and folds channels into the batch);
4. raise :class:`~benchmark.codecs.CodecError` with a message that says what to fix.
"""

from __future__ import annotations

import math

import torch

from benchmark.codecs import Codec, CodecError, CodecInfo
from benchmark.codecs.protocol import check_audio_batch, check_latents


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``[n, n]``: ``coeffs = frames @ D.T``, ``frames = coeffs @ D``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    t = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi / n * (t + 0.5) * k) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


class ExampleCodec(Codec):
    """Frame-wise DCT truncation.

    Parameters
    ----------
    sample_rate: rate (Hz) the codec works at.
    frame: samples per frame (= latent hop).
    keep: DCT coefficients kept per frame (= latent dimension), ``1 <= keep <= frame``.
    """

    version = "1"  # bump when the output changes for the same options

    def __init__(self, sample_rate: int = 44100, frame: int = 256, keep: int = 64) -> None:
        super().__init__(sample_rate=sample_rate, frame=frame, keep=keep)
        if not 1 <= keep <= frame:
            raise CodecError(f"example codec: need 1 <= keep <= frame, got keep={keep}, "
                             f"frame={frame}")
        self.frame, self.keep = int(frame), int(keep)
        self.basis = dct_matrix(self.frame)[: self.keep]  # [keep, frame]
        self.info = CodecInfo(
            name="example_dct", sample_rate=sample_rate, latent_dim=self.keep,
            latent_rate_hz=sample_rate / self.frame, parameters=0,
            description=f"frame-wise DCT, {self.keep} of {self.frame} coefficients kept "
                        f"(low-pass at {self.keep / self.frame * sample_rate / 2:.0f} Hz)")

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples] -> [batch, keep, ceil(samples / frame)]`` (zero-padded end)."""
        check_audio_batch(audio, self.info.name)
        pad = -audio.shape[-1] % self.frame
        frames = torch.nn.functional.pad(audio.float(), (0, pad)).unflatten(-1, (-1, self.frame))
        return (frames @ self.basis.T).transpose(1, 2)  # [batch, keep, frames]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[batch, keep, frames] -> [batch, frames * frame]``."""
        check_latents(latents, self.info.name)
        if latents.shape[1] != self.keep:
            raise CodecError(f"{self.info.name}: latents have {latents.shape[1]} channels, "
                             f"expected keep={self.keep}")
        frames = latents.float().transpose(1, 2) @ self.basis  # [batch, frames, frame]
        return frames.flatten(1).clamp(-1.0, 1.0)
