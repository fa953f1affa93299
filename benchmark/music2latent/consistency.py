"""Consistency training of Music2Latent (improved-CT recipe, continuous index).

The whole autoencoder (encoder, decoder pyramid and consistency UNet) is trained end to end
by one loss, with no reconstruction, adversarial or KL term. For a clean complex spectrogram
``x`` (the alpha/beta-compressed representation, ``[batch, 2, bins, frames]``):

1. **Karras schedule on a continuous index** ``i in [0, 1]``::

       sigma(i) = (sigma_min^(1/rho) + i (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho

   with sigma_min = 0.002, sigma_max = 80, rho = 7 (sigma(0.5) = 2.5).
2. **Discretisation curriculum** ("exponential"): the pair spacing in index space shrinks
   from 0.1 to 0.001 over training, ``delta(k) = 0.1^(1 + 2k/K)`` clipped at 1e-3, so the
   equivalent number of discretisation steps grows from 10 to 1000.
3. **Index sampling**: a 10 000-point uniform grid in ``i``, each point weighted by the normal
   pdf of ``ln sigma(i)`` (mean -1.1, std 2; pdf values, no Jacobian), a grid point drawn by
   weight plus uniform jitter inside its cell, divided by 9 999 (and clipped to 1).
   Sampled sigma quantiles: 10 % ~ 0.046, 50 % ~ 0.58, 90 % ~ 7.2.
4. **Pair and shared noise**: ``sigma_hi = sigma(i)``, ``sigma_lo = sigma(max(i - delta, 0))``,
   one Gaussian draw ``z`` for both: ``x_hi = x + sigma_hi z``, ``x_lo = x + sigma_lo z``.
5. **Target**: the *same online network* at ``(x_lo, sigma_lo)``, evaluated without gradient
   (stop-gradient; no EMA teacher). The encoder and decoder run once per example and both
   UNet passes share the latent pyramid, so gradients reach the encoder only through the
   ``sigma_hi`` branch.
6. **Loss**: pseudo-Huber on the whole per-example difference, weighted by
   ``lambda = 1 / (sigma_hi - sigma_lo)``, averaged over the batch::

       L = lambda (sqrt(||f(x_hi, sigma_hi) - sg f(x_lo, sigma_lo)||^2 + c^2) - c),
       c = 0.00054 sqrt(d),  d = elements per example (2*1024*64 -> c = 0.1955)

The model is duck-typed: anything with ``encode(spec) -> latents``, ``decode_pyramid(latents)
-> list`` and ``denoise(x_noisy, sigma [batch], pyramid) -> [batch, 2, bins, frames]`` works
(``benchmark.music2latent.model.Music2Latent``). Source of the recipe:
``/work/shared/music2latent-facts.md`` section 3 (the curriculum is the training code's
"exponential" rule, which its authors call unpublished).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import torch

__all__ = [
    "ConsistencySchedule",
    "karras_sigma",
    "curriculum_delta",
    "sample_index",
    "huber_c",
    "pseudo_huber",
    "consistency_loss",
]


def _exponential_delta(step: float, total_steps: float, s: ConsistencySchedule) -> float:
    # Geometric interpolation delta_max -> delta_min over training; with the defaults
    # (0.1 -> 0.001) this is the training code's 0.1^(1 + 2k/K).
    return s.delta_max * (s.delta_min / s.delta_max) ** (step / total_steps)


def _constant_delta(step: float, total_steps: float, s: ConsistencySchedule) -> float:
    return s.delta_min


_CURRICULA = {"exponential": _exponential_delta, "constant": _constant_delta}


@dataclasses.dataclass(frozen=True)
class ConsistencySchedule:
    """Every constant of the consistency-training recipe (defaults: the paper's code).

    sigma_min, sigma_max, rho: Karras noise schedule (sigma in units of the compressed
        spectrogram, whose scale is sigma_data = 0.5).
    p_mean, p_std: mean and std of the normal pdf over ``ln sigma`` used to weight the grid.
    grid_size: points of the uniform index grid (10 000).
    curriculum: ``"exponential"`` (delta_max -> delta_min geometrically over training) or
        ``"constant"`` (delta = delta_min throughout).
    delta_max, delta_min: start and end of the index spacing (0.1 and 0.001).
    huber_factor: ``c = huber_factor * sqrt(d)``.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.1
    p_std: float = 2.0
    grid_size: int = 10_000
    curriculum: str = "exponential"
    delta_max: float = 0.1
    delta_min: float = 1e-3
    huber_factor: float = 0.00054

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"ConsistencySchedule: need 0 < sigma_min < sigma_max, got "
                             f"{self.sigma_min}, {self.sigma_max}")
        if self.curriculum not in _CURRICULA:
            raise ValueError(f"ConsistencySchedule: unknown curriculum {self.curriculum!r}; "
                             f"known: {sorted(_CURRICULA)}")
        if not 0 < self.delta_min <= self.delta_max <= 1:
            raise ValueError("ConsistencySchedule: need 0 < delta_min <= delta_max <= 1")
        if self.grid_size < 2:
            raise ValueError("ConsistencySchedule: grid_size must be >= 2")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> "ConsistencySchedule":
        """Take sigma_min/sigma_max/rho from a model config (attributes or a mapping)."""
        values = {}
        for name in ("sigma_min", "sigma_max", "rho"):
            value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
            if value is not None:
                values[name] = float(value)
        values.update(overrides)
        return cls(**values)


def karras_sigma(index: torch.Tensor | float, schedule: ConsistencySchedule = ConsistencySchedule()
                 ) -> torch.Tensor:
    """Noise level ``sigma(i)`` for a continuous index ``i in [0, 1]`` (tensor of any shape)."""
    i = torch.as_tensor(index, dtype=torch.float64 if not torch.is_tensor(index) else None)
    lo = schedule.sigma_min ** (1.0 / schedule.rho)
    hi = schedule.sigma_max ** (1.0 / schedule.rho)
    return (lo + i * (hi - lo)) ** schedule.rho


def curriculum_delta(step: int, total_steps: int, schedule: ConsistencySchedule = ConsistencySchedule()
                     ) -> float:
    """Index spacing ``delta`` of the pair at training step ``step`` of ``total_steps``.

    Exponential curriculum: ``delta_max (delta_min / delta_max)^(step / total_steps)``, i.e.
    ``0.1^(1 + 2 step/total_steps)`` with the defaults (0.1 at the start, 0.01 half-way,
    0.001 at the end); steps past the end keep ``delta_min``.
    """
    if total_steps <= 0:
        raise ValueError(f"curriculum_delta: total_steps must be positive, got {total_steps}")
    step = min(max(step, 0), total_steps)
    return max(_CURRICULA[schedule.curriculum](step, total_steps, schedule), schedule.delta_min)


def _grid_weights(schedule: ConsistencySchedule) -> torch.Tensor:
    grid = torch.arange(schedule.grid_size, dtype=torch.float64) / (schedule.grid_size - 1)
    log_sigma = torch.log(karras_sigma(grid, schedule))
    return torch.exp(-0.5 * ((log_sigma - schedule.p_mean) / schedule.p_std) ** 2)


_WEIGHTS_CACHE: dict[ConsistencySchedule, torch.Tensor] = {}


def sample_index(batch: int, generator: torch.Generator | None = None,
                 schedule: ConsistencySchedule = ConsistencySchedule()) -> torch.Tensor:
    """Draw ``batch`` continuous indices ``i in [0, 1]`` (float64, ``[batch]``, on CPU).

    Lognormal-pdf weights on a uniform index grid, then uniform jitter inside the cell. The
    draw happens on the CPU (``generator`` must be a CPU generator or None) because it is a
    few numbers per step.
    """
    weights = _WEIGHTS_CACHE.get(schedule)
    if weights is None:
        weights = _WEIGHTS_CACHE.setdefault(schedule, _grid_weights(schedule))
    cells = torch.multinomial(weights, batch, replacement=True, generator=generator)
    jitter = torch.rand(batch, generator=generator, dtype=torch.float64)
    return ((cells.double() + jitter) / (schedule.grid_size - 1)).clamp_(0.0, 1.0)


def huber_c(elements: int, schedule: ConsistencySchedule = ConsistencySchedule()) -> float:
    """Pseudo-Huber constant ``c = 0.00054 sqrt(d)`` for ``d`` elements per example."""
    return schedule.huber_factor * math.sqrt(elements)


def pseudo_huber(diff: torch.Tensor, c: float) -> torch.Tensor:
    """Per-example pseudo-Huber distance ``sqrt(||diff||^2 + c^2) - c`` -> ``[batch]`` (fp32)."""
    sq = diff.float().flatten(1).pow(2).sum(dim=1)
    return torch.sqrt(sq + c * c) - c


def _draw_index(n: int, gen: torch.Generator | None, schedule: ConsistencySchedule) -> torch.Tensor:
    # Index draws are CPU-side (a handful of numbers); a CUDA generator seeds a CPU one.
    if gen is not None and gen.device.type != "cpu":
        seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
        gen = torch.Generator().manual_seed(seed)
    return sample_index(n, gen, schedule)


def _draw(spec: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None,
          schedule: ConsistencySchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (index ``[B]`` float64 CPU, noise ``z`` shaped like ``spec``).

    With one generator the whole batch is drawn from it; with a sequence of ``B`` generators
    each example is drawn from its own, which makes the result independent of how a global
    batch is split over processes or accumulation steps.
    """
    batch = spec.shape[0]
    if generator is None or isinstance(generator, torch.Generator):
        draws = [(generator, batch)]
    else:
        gens = list(generator)
        if len(gens) != batch:
            raise ValueError(f"consistency_loss: got {len(gens)} generators for a batch of {batch}")
        draws = [(gen, 1) for gen in gens]
    indices, noises = [], []
    for gen, n in draws:
        indices.append(_draw_index(n, gen, schedule))
        device = gen.device if gen is not None else spec.device
        noises.append(torch.randn((n, *spec.shape[1:]), generator=gen, device=device))
    z = torch.cat(noises).to(device=spec.device, dtype=spec.dtype)
    return torch.cat(indices), z


def consistency_loss(model: Any, spec: torch.Tensor, step: int, total_steps: int,
                     generator: torch.Generator | Sequence[torch.Generator] | None = None,
                     schedule: ConsistencySchedule | None = None,
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """Consistency-training loss for one batch.

    Parameters
    ----------
    model: Music2Latent-like module (``encode``, ``decode_pyramid``, ``denoise``); its
        ``config`` supplies sigma_min/sigma_max/rho unless ``schedule`` is given.
    spec: clean compressed spectrograms ``[batch, 2, bins, frames]``.
    step, total_steps: training step (0-based) and length of training, for the curriculum.
    generator: source of randomness (index draw and noise). One generator, or one per example
        (then each example's draw is independent of batch splitting). Index draws always use
        CPU generators; noise is drawn on the generator's device and moved to ``spec``.
    schedule: recipe constants; default ``ConsistencySchedule.from_config(model.config)``.

    Returns
    -------
    (loss, logs): scalar fp32 loss (batch mean) with gradient, and floats for logging:
    ``delta``, ``sigma_hi_median``, ``huber_c``, ``distance`` (mean unweighted pseudo-Huber).
    """
    if spec.ndim != 4:
        raise ValueError(f"consistency_loss: expected spec [batch, 2, bins, frames], got {tuple(spec.shape)}")
    if schedule is None:
        schedule = ConsistencySchedule.from_config(getattr(model, "config", {}))
    batch = spec.shape[0]
    delta = curriculum_delta(step, total_steps, schedule)

    index_hi, z = _draw(spec, generator, schedule)
    index_lo = (index_hi - delta).clamp_(min=0.0)
    sigma_hi64 = karras_sigma(index_hi, schedule)
    sigma_lo64 = karras_sigma(index_lo, schedule)
    # lambda = 1 / (sigma_hi - sigma_lo); the floor only matters for i_hi == 0 exactly, where
    # the pair coincides and the distance is exactly 0 (0 * 1e12 = 0 instead of 0/0).
    weight = (1.0 / (sigma_hi64 - sigma_lo64).clamp(min=1e-12)).to(device=spec.device, dtype=torch.float32)
    sigma_hi = sigma_hi64.to(device=spec.device, dtype=spec.dtype)
    sigma_lo = sigma_lo64.to(device=spec.device, dtype=spec.dtype)

    shape = (batch,) + (1,) * (spec.ndim - 1)
    x_hi = spec + sigma_hi.view(shape) * z
    x_lo = spec + sigma_lo.view(shape) * z

    latents = model.encode(spec)
    pyramid = model.decode_pyramid(latents)
    with torch.no_grad():
        target = model.denoise(x_lo, sigma_lo, pyramid)
    prediction = model.denoise(x_hi, sigma_hi, pyramid)

    c = huber_c(spec[0].numel(), schedule)
    distance = pseudo_huber(prediction - target.detach(), c)
    loss = (weight * distance).mean()
    logs = {
        "delta": float(delta),
        "sigma_hi_median": float(sigma_hi64.median()),
        "huber_c": float(c),
        "distance": float(distance.detach().mean()),
    }
    return loss, logs
