"""The Music2Latent consistency autoencoder (encoder, decoder pyramid, consistency UNet).

Shapes for the paper config (F = STFT frames, a multiple of 8):

- representation ``x``: ``[B, 2, 1024, F]`` (see :mod:`benchmark.music2latent.frontend`);
- :meth:`Music2Latent.encode`: ``x -> [B, 64, F / 8]`` latents in (-1, 1);
- :meth:`Music2Latent.encode_features`: ``x -> [B, 8192, F / 8]`` pre-bottleneck features;
- :meth:`Music2Latent.decode_pyramid`: latents -> 5 maps, one per UNet level, finest first:
  ``[B, 64, 1024, F]``, ``[B, 128, 256, F]``, ``[B, 256, 128, F/2]``, ``[B, 256, 64, F/4]``,
  ``[B, 256, 32, F/8]``;
- :meth:`Music2Latent.denoise`: the consistency function ``f(x_sigma, sigma | pyramid)``.

The consistency function uses the EDM / consistency-model preconditioning with boundary
``eps = sigma_min``::

    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)
    c_skip = sigma_data^2 / ((sigma - eps)^2 + sigma_data^2)
    c_out  = sigma_data (sigma - eps) / sqrt(sigma^2 + sigma_data^2)
    f(x, sigma) = c_skip x + c_out F(c_in x, sigma, pyramid)

so ``f(x, eps) = x`` exactly. Inside F, the UNet adds a 1x1-projected pyramid map before
every residual block ("cross connections": ``(x + d) / sqrt 2`` on the way down,
``(x + skip + d) / sqrt 3`` on the way up, ``(x + d) / sqrt 2`` before the head) and scales
its first and last 64-channel feature maps per frequency row by ``1 + s(sigma)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from benchmark.music2latent.config import Music2LatentConfig
from benchmark.music2latent.kernels import Conv2d, conv2d
from benchmark.music2latent.layers import (INV_SQRT2, INV_SQRT3, Downsample, FreqGain,
                                           NoiseEmbedding, ResBlock, Upsample, group_norm,
                                           mlp, zero_init)


def _heads(config: Music2LatentConfig, level: int) -> int | None:
    return config.heads if config.freq_attention and level in config.attention_levels else None


class Encoder(nn.Module):
    """``[B, 2, bins, F] -> [B, latent_dim, F / downsample_time]`` (tanh-bounded)."""

    def __init__(self, config: Music2LatentConfig) -> None:
        super().__init__()
        ch = config.channels
        self.stem = Conv2d(2, ch[0], 3, padding=1)
        self.gain = FreqGain(config.freq_bins) if config.freq_scaling else None
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        for lvl in range(config.levels):
            cin = ch[max(lvl - 1, 0)]
            self.levels.append(nn.ModuleList(
                ResBlock(cin if j == 0 else ch[lvl], ch[lvl], attention_heads=_heads(config, lvl),
                         dropout=config.dropout)
                for j in range(config.encoder_layers[lvl])))
            if lvl < config.levels - 1:
                self.downs.append(Downsample(ch[lvl], ch[lvl], bool(config.freq_downsample[lvl]),
                                             config.freq_factor, prenorm=True))
        self.norm = group_norm(ch[-1])
        bc = config.bottleneck_channels
        self.bottleneck_in = nn.Conv1d(config.feature_dim, bc, 1)
        self.bottleneck = nn.ModuleList(ResBlock(bc, bc, dims=1, dropout=config.dropout)
                                        for _ in range(config.bottleneck_blocks))
        self.bottleneck_norm = group_norm(bc)
        self.to_latent = nn.Conv1d(bc, config.latent_dim, 1)

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """``[B, 2, bins, F] -> [B, C_last * bins_last, F / downsample_time]``; row index =
        ``channel * bins_last + freq``."""
        x = self.stem(spec)
        if self.gain is not None:
            x = self.gain(x)
        for lvl, blocks in enumerate(self.levels):
            for block in blocks:
                x = block(x)
            if lvl < len(self.downs):
                x = self.downs[lvl](x)
        x = self.norm(x)
        return x.flatten(1, 2)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(spec))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-bottleneck features (:meth:`features`) -> latents."""
        x = self.bottleneck_in(features)
        for block in self.bottleneck:
            x = block(x)
        return torch.tanh(self.to_latent(torch.nn.functional.silu(self.bottleneck_norm(x))))


class Decoder(nn.Module):
    """Latents ``[B, latent_dim, T]`` -> conditioning pyramid, one map per UNet level.

    With ``cross_connections=False`` only the coarsest level is built and returned.
    """

    def __init__(self, config: Music2LatentConfig) -> None:
        super().__init__()
        ch = config.channels
        self.config = config
        bc = config.bottleneck_channels
        self.from_latent = nn.Conv1d(config.latent_dim, bc, 1)
        self.bottleneck = nn.ModuleList(ResBlock(bc, bc, dims=1, dropout=config.dropout)
                                        for _ in range(config.bottleneck_blocks))
        self.to_2d = nn.Conv1d(bc, config.feature_dim, 1)
        top = config.levels - 1
        self.first_level = 0 if config.cross_connections else top
        # Indexed by level (finest = 0); levels below first_level are not built.
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        for lvl in range(config.levels):
            if lvl < self.first_level:
                self.levels.append(nn.ModuleList())
                self.ups.append(nn.Identity())
                continue
            self.levels.append(nn.ModuleList(
                ResBlock(ch[lvl], ch[lvl], attention_heads=_heads(config, lvl),
                         dropout=config.dropout)
                for _ in range(config.encoder_layers[lvl])))
            # ups[lvl] takes level lvl to level lvl - 1 (none for level 0).
            self.ups.append(Upsample(ch[lvl], ch[lvl - 1], bool(config.freq_downsample[lvl - 1]),
                                     config.freq_factor)
                            if lvl > self.first_level else nn.Identity())

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        c = self.config
        x = self.from_latent(latents)
        for block in self.bottleneck:
            x = block(x)
        x = self.to_2d(x)
        x = x.reshape(x.shape[0], c.channels[-1], c.latent_freq_bins, x.shape[-1])
        pyramid: list[torch.Tensor] = []
        for lvl in range(c.levels - 1, self.first_level - 1, -1):
            for block in self.levels[lvl]:
                x = block(x)
            pyramid.append(x)
            if lvl > self.first_level:
                x = self.ups[lvl](x)
        return pyramid[::-1]


def _merge(cross: nn.Module, source: torch.Tensor, scale: float,
           *terms: torch.Tensor) -> torch.Tensor:
    """``scale * (cross(source) + sum(terms))`` for a 1x1 conv ``cross``, with ``scale``
    folded into the conv's weights so that each term costs one pass over memory."""
    out = conv2d(source, cross.weight * scale, cross.bias * scale)
    for t in terms:
        out = out.add_(t, alpha=scale) if not torch.is_grad_enabled() else out + scale * t
    return out


class ConsistencyUNet(nn.Module):
    """The raw network ``F(c_in x, sigma, pyramid)`` of the consistency function."""

    def __init__(self, config: Music2LatentConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        cd = config.cond_dim
        self.noise_embedding = NoiseEmbedding(cd)
        self.cond_mlp = mlp([cd, cd, cd], last_activation=True)
        if config.freq_scaling:
            self.scale_in = mlp([cd, cd, cd, config.freq_bins], last_activation=False,
                                zero_last=True)
            self.scale_out = mlp([cd, cd, cd, config.freq_bins], last_activation=False,
                                 zero_last=True)
        else:
            self.scale_in = self.scale_out = None
        self.stem = Conv2d(2, ch[0], 3, padding=1)
        top = config.levels - 1

        def cross(lvl: int, j: int) -> nn.Module:
            if config.cross_connections or (lvl == top and j == 0):
                return Conv2d(ch[lvl], ch[lvl], 1)
            return nn.Identity()

        def block(lvl: int) -> ResBlock:
            return ResBlock(ch[lvl], ch[lvl], cond_dim=cd, attention_heads=_heads(config, lvl),
                            dropout=config.dropout)

        n = config.unet_layers
        self.down_cross = nn.ModuleList(nn.ModuleList(cross(l, j) for j in range(n[l]))
                                        for l in range(config.levels))
        self.down_blocks = nn.ModuleList(nn.ModuleList(block(l) for _ in range(n[l]))
                                         for l in range(config.levels))
        # downs[l]: level l -> l + 1 (changes channels, no norm)
        self.downs = nn.ModuleList(Downsample(ch[l], ch[l + 1], bool(config.freq_downsample[l]),
                                              config.freq_factor) for l in range(top))
        self.up_cross = nn.ModuleList(
            nn.ModuleList(Conv2d(ch[l], ch[l], 1) if config.cross_connections
                          else nn.Identity() for _ in range(n[l]))
            for l in range(config.levels))
        self.up_blocks = nn.ModuleList(nn.ModuleList(block(l) for _ in range(n[l]))
                                       for l in range(config.levels))
        # ups[l - 1]: level l -> l - 1
        self.ups = nn.ModuleList(Upsample(ch[l], ch[l - 1], bool(config.freq_downsample[l - 1]),
                                          config.freq_factor) for l in range(1, top + 1))
        self.head_cross = Conv2d(ch[0], ch[0], 1) if config.cross_connections else None
        self.head_norm = group_norm(ch[0])
        self.head_conv = zero_init(Conv2d(ch[0], 2, 3, padding=1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor,
                pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        """``x`` is the *preconditioned* input ``c_in x_sigma`` ``[B, 2, bins, F]``;
        ``sigma`` ``[B]``; ``pyramid`` from :class:`Decoder`."""
        c = self.config
        top = c.levels - 1
        if len(pyramid) != (c.levels if c.cross_connections else 1):
            raise ValueError(f"pyramid has {len(pyramid)} maps; this model expects "
                             f"{c.levels if c.cross_connections else 1}")

        def level_map(lvl: int) -> torch.Tensor:
            return pyramid[lvl] if c.cross_connections else pyramid[0]

        if sigma.shape[0] > 1 and bool((sigma == sigma[:1]).all()):
            sigma = sigma[:1]  # one level for the batch: [1, ...] embeddings broadcast
        emb = self.noise_embedding(sigma)
        cond = self.cond_mlp(emb)
        inplace = not torch.is_grad_enabled()
        x = self.stem(x)
        if self.scale_in is not None:
            scale = (1.0 + self.scale_in(emb))[:, None, :, None]
            x = x.mul_(scale) if inplace else x * scale
        skips: list[torch.Tensor] = []
        for lvl in range(c.levels):
            for cross, block in zip(self.down_cross[lvl], self.down_blocks[lvl]):
                if not isinstance(cross, nn.Identity):
                    x = _merge(cross, level_map(lvl), INV_SQRT2, x)
                x = block(x, cond)
                skips.append(x)
            if lvl < top:
                x = self.downs[lvl](x)
        for lvl in range(top, -1, -1):
            for cross, block in zip(self.up_cross[lvl], self.up_blocks[lvl]):
                skip = skips.pop()
                if c.cross_connections:
                    x = _merge(cross, pyramid[lvl], INV_SQRT3, x, skip)
                else:
                    x = (x + skip) * INV_SQRT2
                x = block(x, cond)
            if lvl > 0:
                x = self.ups[lvl - 1](x)
        if self.head_cross is not None:
            x = _merge(self.head_cross, pyramid[0], INV_SQRT2, x)
        x = torch.nn.functional.silu(self.head_norm(x), inplace=inplace)
        if self.scale_out is not None:
            scale = (1.0 + self.scale_out(emb))[:, None, :, None]
            x = x.mul_(scale) if inplace else x * scale
        return self.head_conv(x)


class Music2Latent(nn.Module):
    """Consistency autoencoder: encoder, latent decoder (pyramid) and consistency UNet.

    Parameters
    ----------
    config: a :class:`~benchmark.music2latent.config.Music2LatentConfig` (see ``PRESETS``).
    """

    def __init__(self, config: Music2LatentConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.unet = ConsistencyUNet(config)

    # -- encoder ------------------------------------------------------------------------------
    def _check_spec(self, spec: torch.Tensor) -> None:
        c = self.config
        if spec.ndim != 4 or spec.shape[1] != 2 or spec.shape[2] != c.freq_bins:
            raise ValueError(f"expected a representation [batch, 2, {c.freq_bins}, frames], got "
                             f"{tuple(spec.shape)}")
        if spec.shape[-1] % c.downsample_time or spec.shape[-1] == 0:
            raise ValueError(f"frames ({spec.shape[-1]}) must be a positive multiple of "
                             f"{c.downsample_time}; crop the audio with "
                             "SpectralFrontend.crop_length first")

    def encode(self, spec: torch.Tensor) -> torch.Tensor:
        """``[B, 2, bins, F] -> [B, latent_dim, F / downsample_time]`` latents in (-1, 1)."""
        self._check_spec(spec)
        return self.latents_from_features(self.encoder.features(spec))

    def latents_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-bottleneck features (:meth:`encode_features`) -> latents (a variant of the model
        with another posterior overrides this, and :meth:`encode` and :meth:`encode_both` follow)."""
        return self.encoder.head(features)

    def encode_both(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents, pre-bottleneck features)`` from one encoder pass."""
        self._check_spec(spec)
        features = self.encoder.features(spec)
        return self.latents_from_features(features), features

    def encode_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Pre-bottleneck features ``[B, feature_dim, F / downsample_time]`` (8192-d for the
        paper config), after the encoder's last GroupNorm; row = ``channel * 32 + freq``."""
        self._check_spec(spec)
        return self.encoder.features(spec)

    # -- decoder ------------------------------------------------------------------------------
    def decode_pyramid(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Latents ``[B, latent_dim, T]`` -> UNet conditioning maps, finest level first
        (``levels`` maps; one map, the coarsest, when ``cross_connections=False``)."""
        if latents.ndim != 3 or latents.shape[1] != self.config.latent_dim:
            raise ValueError(f"expected latents [batch, {self.config.latent_dim}, frames], got "
                             f"{tuple(latents.shape)}")
        return self.decoder(latents)

    # -- consistency function -----------------------------------------------------------------
    def preconditioning(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                            torch.Tensor]:
        """``(c_in, c_skip, c_out)`` for noise levels ``sigma [B]`` (each ``[B]``)."""
        c = self.config
        sd2 = c.sigma_data ** 2
        root = torch.sqrt(sigma ** 2 + sd2)
        c_in = 1.0 / root
        c_skip = sd2 / ((sigma - c.sigma_min) ** 2 + sd2)
        c_out = c.sigma_data * (sigma - c.sigma_min) / root
        return c_in, c_skip, c_out

    def denoise(self, x_noisy: torch.Tensor, sigma: torch.Tensor | float,
                pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        """Consistency function ``f(x_sigma, sigma)``: estimate of the clean representation.

        Parameters
        ----------
        x_noisy: ``[B, 2, bins, F]`` noisy representation ``x + sigma z``.
        sigma: noise levels ``[B]`` (or a float / 0-d tensor for the whole batch).
        pyramid: output of :meth:`decode_pyramid` for the same batch.

        Returns
        -------
        ``[B, 2, bins, F]``.
        """
        self._check_spec(x_noisy)
        sigma = torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x_noisy.shape[0])
        c_in, c_skip, c_out = (v[:, None, None, None] for v in self.preconditioning(sigma))
        return c_skip * x_noisy + c_out * self.unet(c_in * x_noisy, sigma, pyramid)

    def forward(self, x_noisy: torch.Tensor, sigma: torch.Tensor | float,
                latents: torch.Tensor) -> torch.Tensor:
        """Convenience: ``denoise(x_noisy, sigma, decode_pyramid(latents))``. If ``latents``
        is a clean representation ``[B, 2, bins, F]`` it is encoded first."""
        if latents.ndim == 4:
            latents = self.encode(latents)
        return self.denoise(x_noisy, sigma, self.decode_pyramid(latents))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def randomize_parameters(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter with random values (in place), for tests and benchmarks.

    Fresh models have zero-initialised residual branches, attention outputs and output conv,
    so most paths carry no signal; this makes every path active: matrices/kernels
    ``N(0, 1/fan_in)``, norm weights and gains ``1 + N(0, 0.1^2)``, other vectors
    ``N(0, 0.1^2)``. Iterates ``named_parameters()`` in order with one generator, so a module
    tree with the same names and shapes gets the same values.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                v = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
            elif "norm" in name or "gain" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            else:
                v = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(v)
    return module
