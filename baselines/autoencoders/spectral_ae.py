"""Plain spectral autoencoder: Music2Latent's network trained by regression (codec ``spectral_ae``).

The encoder, latents (tanh-bounded, same rate and dimension), decoder pyramid and UNet are
Music2Latent's; the UNet is run once, deterministically, at ``sigma_max`` on a zero input
(:func:`baselines.autoencoders.common.deterministic_decode`), and the whole network is trained
end to end by L1 on the alpha/beta-compressed complex spectrogram plus a multi-resolution STFT
loss on the waveform (:func:`baselines.autoencoders.common.reconstruction_loss`). It answers:
what does consistency training add over plain regression with the identical network and budget?

Training: ``python -m benchmark train --codec spectral_ae --preset cpu`` (the task is
:class:`baselines.autoencoders.recipes.SpectralAETask`).
"""

from __future__ import annotations

from typing import Any

import torch

from baselines.autoencoders.common import (AutoencoderCodec, RegressionLossConfig,
                                           deterministic_decode, reconstruction_loss)
from benchmark.music2latent.config import Music2LatentConfig
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.model import Music2Latent

__all__ = ["SpectralAECodec", "build_model", "spectral_ae_loss"]


def build_model(config: Music2LatentConfig) -> Music2Latent:
    """The plain AE's network: exactly :class:`Music2Latent` (same parameters)."""
    return Music2Latent(config)


def spectral_ae_loss(model: Music2Latent, frontend: SpectralFrontend, spec: torch.Tensor,
                     settings: RegressionLossConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-example regression loss ``[B]`` of ``spec [B, 2, bins, frames]`` and its terms."""
    pyramid = model.decode_pyramid(model.encode(spec))
    estimate = deterministic_decode(model, pyramid, spec.shape[-1])
    return reconstruction_loss(frontend, spec, estimate, settings)


class SpectralAECodec(AutoencoderCodec):
    """The plain spectral autoencoder as a codec (deterministic decoder, one UNet pass).

    Options: ``checkpoint`` or ``preset`` (+ ``model`` overrides, random init, flagged),
    ``steps`` (must be 1), ``seed`` (random-init seed), ``device``, ``chunk_seconds``; see
    :class:`baselines.autoencoders.common.AutoencoderCodec`.
    """

    name = "spectral_ae"
    stochastic = False
    description_prefix = "plain spectral autoencoder (Music2Latent network, regression loss)"

    def build_model(self, config: Music2LatentConfig) -> Music2Latent:
        return build_model(config)
