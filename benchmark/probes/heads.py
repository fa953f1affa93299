"""Probe heads: small PyTorch classifiers trained on frozen, pooled embeddings.

Registry :data:`HEADS`: name -> factory ``(in_dim, n_out, hidden, dropout) -> nn.Module``
mapping ``[batch, in_dim]`` features to ``[batch, n_out]`` logits.

- ``linear``: one affine layer (the classic linear probe).
- ``mlp``: Linear(in_dim, hidden) -> ReLU -> Dropout(dropout) -> Linear(hidden, n_out).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def linear_head(in_dim: int, n_out: int, hidden: int = 512, dropout: float = 0.5) -> nn.Module:
    return nn.Linear(in_dim, n_out)


def mlp_head(in_dim: int, n_out: int, hidden: int = 512, dropout: float = 0.5) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


HEADS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear_head,
    "mlp": mlp_head,
}


def build_head(name: str, in_dim: int, n_out: int, hidden: int = 512, dropout: float = 0.5) -> nn.Module:
    """Build head ``name``; parameters are initialised from torch's current RNG state."""
    if name not in HEADS:
        raise ValueError(f"unknown probe head {name!r}; known: {', '.join(sorted(HEADS))}")
    if in_dim < 1 or n_out < 1:
        raise ValueError(f"probe head needs in_dim >= 1 and n_out >= 1, got {in_dim}, {n_out}")
    return HEADS[name](in_dim, n_out, hidden=hidden, dropout=dropout)


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
