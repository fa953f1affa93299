"""Optimiser, learning-rate schedule and EMA of the weights.

- RAdam (``torch.optim.RAdam``), no weight decay by default.
- :class:`WarmupCosine`: linear warm-up from 0 to the peak lr over ``warmup`` steps, then a
  half cosine down to ``final_lr`` at ``total`` steps; constant ``final_lr`` afterwards.
- :class:`ModelEMA`: exponential moving average of the parameters with the warm-up decay
  ``min(decay, (1 + n) / (10 + n))`` (n = updates so far); buffers are copied, not averaged.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["build_optimizer", "WarmupCosine", "build_scheduler", "ModelEMA"]


def build_optimizer(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float],
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """RAdam over ``params`` (the paper's optimiser: lr 1e-4, betas (0.9, 0.999), no decay)."""
    return torch.optim.RAdam(list(params), lr=lr, betas=betas, weight_decay=weight_decay)


class WarmupCosine:
    """Multiplier of the peak lr at step ``k`` (a picklable ``LambdaLR`` lambda).

    ``k < warmup``: ``(k + 1) / warmup``; then ``f + (1 - f) (1 + cos(pi t)) / 2`` with
    ``t = (k - warmup) / (total - warmup)`` clipped to [0, 1] and ``f = final_lr / lr``.
    """

    def __init__(self, warmup: int, total: int, final_ratio: float) -> None:
        self.warmup = int(warmup)
        self.total = int(total)
        self.final_ratio = float(final_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        t = min(max((step - self.warmup) / span, 0.0), 1.0)
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(optimizer: torch.optim.Optimizer, lr: float, final_lr: float, warmup: int,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`WarmupCosine` (its state is saved with the scheduler)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total, final_lr / lr))


class ModelEMA:
    """EMA copy of a model, used for validation and export.

    ``module`` is a frozen deep copy in eval mode. :meth:`update` after every optimiser step:
    ``ema <- d ema + (1 - d) param`` with ``d = min(decay, (1 + n) / (10 + n))``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        for e, p in zip(ema_params, params):
            e.lerp_(p.to(e.dtype), 1.0 - d)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
