"""Variational spectral autoencoder (codec ``vae``).

Music2Latent's network with a Gaussian posterior: the encoder's last 1x1 conv emits a mean
and a log-variance per latent channel (``2 x latent_dim`` channels, no tanh) at the same latent
rate; training samples ``z = mean + exp(logvar / 2) eps`` (reparameterisation) and adds a
beta-weighted KL divergence to the standard normal prior,

    KL = mean over latent numbers of 0.5 (mean^2 + exp(logvar) - 1 - logvar)   [nats/number]
    L  = regression loss (as the plain AE) + kl_weight * KL.

Encoding returns the posterior mean (deterministic); decoding is the plain AE's deterministic
decoder (one UNet pass at ``sigma_max`` on a zero input).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.autoencoders.common import (AutoencoderCodec, RegressionLossConfig,
                                           deterministic_decode, reconstruction_loss)
from benchmark.music2latent.config import Music2LatentConfig
from benchmark.music2latent.frontend import SpectralFrontend
from benchmark.music2latent.model import Music2Latent

__all__ = ["GaussianMusic2Latent", "VAECodec", "kl_divergence", "vae_loss", "build_model",
           "LOGVAR_RANGE"]

#: log-variance clamp (numerical safety only; a healthy run stays well inside)
LOGVAR_RANGE = (-30.0, 20.0)


class GaussianMusic2Latent(Music2Latent):
    """:class:`Music2Latent` whose encoder outputs a diagonal Gaussian posterior.

    Same modules as Music2Latent except ``encoder.to_latent``, a 1x1 conv to
    ``2 x latent_dim`` channels (mean, log-variance) instead of ``latent_dim`` + tanh.
    """

    def __init__(self, config: Music2LatentConfig) -> None:
        super().__init__(config)
        self.encoder.to_latent = nn.Conv1d(config.bottleneck_channels, 2 * config.latent_dim, 1)

    def moments(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 2, bins, F] -> (mean, logvar)``, each ``[B, latent_dim, F / downsample_time]``."""
        self._check_spec(spec)
        return self.moments_from_features(self.encoder.features(spec))

    def moments_from_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-bottleneck features -> ``(mean, logvar)``. The encoder path is Music2Latent's
        (features, bottleneck, norm, SiLU, 1x1 conv) up to its tanh, which a Gaussian posterior
        does not have."""
        enc = self.encoder
        x = enc.bottleneck_in(features)
        for block in enc.bottleneck:
            x = block(x)
        mean, logvar = enc.to_latent(F.silu(enc.bottleneck_norm(x))).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def latents_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``[B, latent_dim, F / downsample_time]`` (unbounded): what ``encode`` returns."""
        return self.moments_from_features(features)[0]


def build_model(config: Music2LatentConfig) -> GaussianMusic2Latent:
    return GaussianMusic2Latent(config)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per example, in nats per latent number ``[B]``."""
    kl = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float())
    return kl.flatten(1).mean(dim=1)


def vae_loss(model: GaussianMusic2Latent, frontend: SpectralFrontend, spec: torch.Tensor,
             generators: Sequence[torch.Generator], settings: RegressionLossConfig
             ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-example VAE loss ``[B]`` and its terms (``spec_l1``, ``mrstft``, ``kl``).

    ``generators``: one per example; the reparameterisation noise of example ``i`` is drawn
    from ``generators[i]`` (independent of how a batch is split).
    """
    mean, logvar = model.moments(spec)
    eps = torch.cat([torch.randn((1, *mean.shape[1:]), generator=g, device=g.device)
                     for g in generators]).to(mean)
    z = mean + torch.exp(0.5 * logvar) * eps
    estimate = deterministic_decode(model, model.decode_pyramid(z), spec.shape[-1])
    loss, logs = reconstruction_loss(frontend, spec, estimate, settings)
    kl = kl_divergence(mean, logvar)
    logs["kl"] = kl
    logs["posterior_std"] = torch.exp(0.5 * logvar.detach()).flatten(1).mean(dim=1)
    return loss + settings.kl_weight * kl, logs


class VAECodec(AutoencoderCodec):
    """The VAE as a codec: latents are posterior means; deterministic one-pass decoder.

    Options as :class:`baselines.autoencoders.spectral_ae.SpectralAECodec` (``steps`` must be 1).
    """

    name = "vae"
    stochastic = False
    description_prefix = "spectral VAE (Music2Latent network, Gaussian latents, beta-KL)"

    def build_model(self, config: Music2LatentConfig) -> GaussianMusic2Latent:
        return build_model(config)
