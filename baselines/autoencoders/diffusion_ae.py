"""Diffusion-decoder autoencoder (codec ``diffusion_ae``): Music2Latent's network trained as an
EDM denoiser instead of a consistency model.

Same encoder (tanh latents), decoder pyramid and UNet as Music2Latent; the UNet is wrapped in
the EDM preconditioning (Karras et al., 2022) with ``sigma_data = 0.5``::

    c_in = 1 / sqrt(sigma^2 + sigma_data^2)        c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    D(x, sigma) = c_skip x + c_out F(c_in x, sigma | pyramid)

(the UNet embeds ``ln(sigma) / 4`` itself, EDM's ``c_noise``). Training, per example::

    ln sigma ~ N(P_mean = -1.2, P_std = 1.2),  n ~ N(0, I)
    L = lambda(sigma) mean (D(x + sigma n, sigma) - x)^2,  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2

Sampling (:func:`edm_sample`): the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``
from ``x = sigma_max z`` down to 0 on the Karras grid of ``steps`` levels (sigma_max ... sigma_min,
rho = 7, then 0), by Euler (``steps`` network evaluations) or Heun (EDM's Algorithm 1 without
churn: ``2 steps - 1`` evaluations, the last step is Euler). One step of either is
``D(sigma_max z, sigma_max)``, the analogue of Music2Latent's single-step decoding.

Default: Euler, 8 steps. At a handful of steps the first interval of the Karras grid spans
almost the whole noise range (80 -> ~10 for 8 steps, 80 -> 0.002 for 2), where Heun's
trapezoidal correction is unreliable: on Gaussian data with the exact denoiser, Heun with 2
steps misses the exact ODE solution by ~80x more than Euler (see the tests); Heun overtakes
Euler only beyond ~16 steps.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import torch

from baselines.autoencoders.common import AutoencoderCodec, like_model, settings_from_mapping
from benchmark.codecs.protocol import CodecError
from benchmark.music2latent.config import Music2LatentConfig
from benchmark.music2latent.model import Music2Latent

__all__ = ["EDMSettings", "edm_preconditioning", "edm_denoise", "edm_loss", "edm_sigmas",
           "edm_sample", "representation_sampler", "SAMPLERS", "network_evaluations", "DiffusionAECodec", "build_model"]

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class EDMSettings:
    """Training and validation settings of the diffusion decoder.

    p_mean, p_std: the log-normal training distribution of sigma (EDM: -1.2, 1.2).
    val_steps, val_sampler: sampler used to score validation crops during training.
    """

    p_mean: float = -1.2
    p_std: float = 1.2
    val_steps: int = 8
    val_sampler: str = "euler"

    def __post_init__(self) -> None:
        if self.p_std <= 0:
            raise ValueError(f"EDMSettings: p_std must be > 0, got {self.p_std}")
        if self.val_steps < 1 or self.val_sampler not in SAMPLERS:
            raise ValueError(f"EDMSettings: need val_steps >= 1 and val_sampler in "
                             f"{sorted(SAMPLERS)}, got {self.val_steps}, {self.val_sampler!r}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> "EDMSettings":
        return settings_from_mapping(cls, settings, "diffusion loss")


def build_model(config: Music2LatentConfig) -> Music2Latent:
    """The diffusion AE's network: exactly :class:`Music2Latent` (same parameters)."""
    return Music2Latent(config)


# -- denoiser --------------------------------------------------------------------------------
def edm_preconditioning(sigma: torch.Tensor, sigma_data: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_in, c_skip, c_out)`` for noise levels ``sigma`` (any shape)."""
    sd2 = sigma_data ** 2
    root = torch.sqrt(sigma ** 2 + sd2)
    return 1.0 / root, sd2 / (sigma ** 2 + sd2), sigma * sigma_data / root


def edm_denoise(model: Music2Latent, x_noisy: torch.Tensor, sigma: torch.Tensor | float,
                pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    """EDM denoiser ``D(x, sigma | pyramid)``: estimate of the clean spectrogram.

    x_noisy: ``[B, 2, bins, F]``; sigma: ``[B]`` or a float; pyramid: ``model.decode_pyramid``.
    """
    sigma = torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x_noisy.shape[0])
    c_in, c_skip, c_out = (v[:, None, None, None]
                           for v in edm_preconditioning(sigma, model.config.sigma_data))
    return c_skip * x_noisy + c_out * model.unet(c_in * x_noisy, sigma, pyramid)


def edm_loss(model: Music2Latent, spec: torch.Tensor, generators: Sequence[torch.Generator],
             settings: EDMSettings) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-example EDM loss ``[B]`` of clean spectrograms ``spec [B, 2, bins, F]``.

    ``generators``: one per example; sigma and noise of example ``i`` come from
    ``generators[i]``. Logs: ``sigma`` and the unweighted ``mse`` per example.
    """
    draws = [(torch.randn(1, generator=g, device=g.device),
              torch.randn((1, *spec.shape[1:]), generator=g, device=g.device)) for g in generators]
    sigma = torch.exp(settings.p_mean + settings.p_std * torch.cat([d[0] for d in draws]))
    sigma = sigma.to(device=spec.device, dtype=spec.dtype)
    noise = torch.cat([d[1] for d in draws]).to(spec)
    pyramid = model.decode_pyramid(model.encode(spec))
    denoised = edm_denoise(model, spec + sigma[:, None, None, None] * noise, sigma, pyramid)
    sd = model.config.sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    mse = (denoised.float() - spec.float()).pow(2).flatten(1).mean(dim=1)
    return weight.float() * mse, {"sigma": sigma.detach().float(), "mse": mse.detach()}


# -- sampling --------------------------------------------------------------------------------
def edm_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """``steps + 1`` levels: the Karras grid of ``steps`` levels from ``sigma_max`` to
    ``sigma_min`` (just ``sigma_max`` for one step), then 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps == 1:
        return [float(sigma_max), 0.0]
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return [(hi + i / (steps - 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


def _euler(denoise: Denoiser, x: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, s)) / s
        x = x + (s_next - s) * d
    return x


def _heun(denoise: Denoiser, x: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, s)) / s
        x_euler = x + (s_next - s) * d
        if s_next == 0:
            x = x_euler
        else:  # second-order correction (trapezoidal rule)
            d_next = (x_euler - denoise(x_euler, s_next)) / s_next
            x = x + (s_next - s) * 0.5 * (d + d_next)
    return x


#: ODE solvers: ``solver(denoise, x_init, sigmas) -> x_0``.
SAMPLERS: dict[str, Callable[[Denoiser, torch.Tensor, Sequence[float]], torch.Tensor]] = {
    "euler": _euler,
    "heun": _heun,
}


def network_evaluations(steps: int, sampler: str) -> int:
    """Denoiser evaluations of ``steps`` sampler steps: ``steps`` (Euler), ``2 steps - 1`` (Heun)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known: {sorted(SAMPLERS)}")
    return steps if sampler == "euler" else 2 * steps - 1


def edm_sample(denoise: Denoiser, x_init: torch.Tensor, steps: int, sampler: str = "heun",
               sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
               ) -> torch.Tensor:
    """Solve the probability-flow ODE from ``x_init = sigma_max z`` to sigma = 0.

    denoise: ``D(x, sigma)`` (``sigma`` a float); x_init: initial state at ``sigma_max``.
    Returns the sample, shaped like ``x_init``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known: {sorted(SAMPLERS)}")
    return SAMPLERS[sampler](denoise, x_init, edm_sigmas(steps, sigma_min, sigma_max, rho))


def representation_sampler(model: Music2Latent, pyramid: Sequence[torch.Tensor], frames: int,
                           steps: int, noise_fn: Callable[[int, int, int], torch.Tensor],
                           frame_offset: int = 0, sampler: str = "heun") -> torch.Tensor:
    """Sample the spectrogram ``[B, 2, bins, frames]`` given a pyramid; the ``sampler``
    hook of :func:`benchmark.music2latent.inference.decode_latents`. The initial noise is
    ``noise_fn(0, ...)``, addressed by global frame index (independent of chunking)."""
    c = model.config
    x = like_model(model, c.sigma_max * noise_fn(0, frame_offset, frame_offset + frames))
    return edm_sample(lambda v, s: edm_denoise(model, v, s, pyramid), x, steps, sampler,
                      c.sigma_min, c.sigma_max, c.rho)


# -- codec -----------------------------------------------------------------------------------
class DiffusionAECodec(AutoencoderCodec):
    """The diffusion-decoder autoencoder as a codec (stochastic: the initial noise is seeded).

    Options: ``checkpoint`` or ``preset`` (+ ``model`` overrides; random init, flagged),
    ``steps`` (sampler steps, default 8), ``sampler`` (``euler`` default, or ``heun``),
    ``seed`` (decoding noise; same seed -> same audio), ``device``, ``chunk_seconds``.
    ``info.decode_steps`` is the number of network evaluations (Heun: ``2 steps - 1``).
    """

    name = "diffusion_ae"
    version = "3"  # 2: noise addressed by the rows' names (input audio); 3: Winograd CPU convolutions
    stochastic = True
    description_prefix = "diffusion-decoder autoencoder (Music2Latent network, EDM denoiser)"

    def __init__(self, checkpoint: str | None = None, preset: str = "paper",
                 model: Mapping[str, Any] | None = None, steps: int = 8, sampler: str = "euler",
                 seed: int = 0, device: str = "cpu", **options: Any) -> None:
        if sampler not in SAMPLERS:
            raise CodecError(f"{self.name}: unknown sampler {sampler!r}; known: "
                             f"{', '.join(sorted(SAMPLERS))}")
        super().__init__(checkpoint=checkpoint, preset=preset, model=model, steps=steps,
                         seed=seed, device=device, sampler=sampler, **options)

    def build_model(self, config: Music2LatentConfig) -> Music2Latent:
        return build_model(config)

    def sampler(self) -> Callable[..., torch.Tensor]:
        return functools.partial(representation_sampler, sampler=self.options["sampler"])

    def decode_steps(self) -> int:
        return network_evaluations(self.steps, self.options["sampler"])

