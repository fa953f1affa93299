"""Fréchet distance between Gaussians (the "F" of FAD), without ``scipy.linalg.sqrtm``.

For N(mu1, S1) and N(mu2, S2)::

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

The trace term is computed from symmetric eigendecompositions only. With ``A = S1^(1/2)``
(from the eigendecomposition of S1, negative round-off eigenvalues clipped to 0), ``S1 S2`` is
similar to the symmetric PSD matrix ``A S2 A``, so ``tr((S1 S2)^(1/2)) = sum sqrt(eig(A S2 A))``.
This is exact for singular covariances too (fewer embeddings than dimensions), needs no
complex arithmetic and never returns the spurious imaginary parts ``sqrtm`` produces. All
computation is float64. The result is clipped at 0 (round-off can make it -1e-12).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class GaussianStats:
    """Mean ``[dim]`` and covariance ``[dim, dim]`` of ``n`` embeddings."""

    mean: np.ndarray
    cov: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


def gaussian_stats(embeddings: np.ndarray) -> GaussianStats:
    """Mean and unbiased (ddof=1) covariance of ``[n, dim]`` embeddings (``n >= 2``)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected embeddings [n, dim], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings for a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    mean = x.mean(axis=0)
    centred = x - mean
    return GaussianStats(mean, centred.T @ centred / (x.shape[0] - 1), int(x.shape[0]))


def _sym_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((s1 s2)^(1/2))`` for symmetric PSD ``s1``, ``s2`` via eigendecompositions."""
    a = _sym_sqrt(np.asarray(s1, dtype=np.float64))
    m = a @ np.asarray(s2, dtype=np.float64) @ a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between two Gaussians (>= 0)."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: means {mu1.shape} / {mu2.shape}, covariances "
                         f"{s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    d = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * trace_sqrt_product(s1, s2)
    return max(d, 0.0)


def frechet_distance_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)
