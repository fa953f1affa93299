"""Statistics over test items: bootstrap confidence intervals and paired tests.

Small test sets are noisy (convention 6 of the house style), so every probe number comes
with a percentile bootstrap interval over test items, and two codecs are compared on the
same test items with a paired test.

Resampling is expressed as item weights: a bootstrap replicate that draws item i k times
gives it weight k (:func:`bootstrap_weights`, multinomial counts). Every task metric accepts
a ``[n_boot, n]`` weight stack (see :mod:`tasks.base`), so all replicates are scored in one
vectorised call, and a paired test applies the *same* replicate to both systems.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` float64 multinomial counts (each row sums to ``n``): one resample per row."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"bootstrap needs n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` interval of bootstrap ``samples`` (NaN replicates ignored)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_interval(metric: Callable[[np.ndarray | None], np.ndarray | float], n: int,
                       n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Point value and percentile bootstrap interval of ``metric(weights)`` over ``n`` items.

    ``metric(None)`` must return the point value; ``metric(W)`` with ``W [n_boot, n]`` the
    replicate values ``[n_boot]``. Returns ``(value, ci_low, ci_high)``.
    """
    value = float(metric(None))
    lo, hi = percentile_interval(np.asarray(metric(bootstrap_weights(n, n_boot, seed))), level)
    return value, lo, hi


def paired_bootstrap(metric_a: Callable[[np.ndarray | None], np.ndarray | float],
                     metric_b: Callable[[np.ndarray | None], np.ndarray | float], n: int,
                     n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap test of ``delta = metric_a - metric_b`` on the same ``n`` items.

    Each replicate resamples items once and scores both systems on it. The interval is the
    percentile interval of the replicate deltas; the two-sided p-value tests ``delta = 0``
    with the centred bootstrap distribution (the replicate deltas shifted to mean zero under
    the null): ``p = (1 + #{|d_b - d| >= |d|}) / (n_boot + 1)``. Identical systems give
    ``delta = 0`` and ``p = 1``.
    """
    d = float(metric_a(None)) - float(metric_b(None))
    w = bootstrap_weights(n, n_boot, seed)
    db = np.asarray(metric_a(w), dtype=np.float64) - np.asarray(metric_b(w), dtype=np.float64)
    db = db[np.isfinite(db)]
    lo, hi = percentile_interval(db, level)
    tol = 1e-12 * max(1.0, abs(d))
    p = (1 + int(np.sum(np.abs(db - d) >= abs(d) - tol))) / (db.size + 1)
    return {"delta": d, "p_value": float(p), "ci_low": lo, "ci_high": hi,
            "n_items": n, "n_boot": int(db.size), "method": "paired bootstrap"}


def paired_permutation(score_a: np.ndarray, score_b: np.ndarray,
                       metric: Callable[[np.ndarray], float], n_perm: int = 1000,
                       seed: int = 0) -> dict[str, float]:
    """Paired permutation (randomisation) test: swap the two systems' outputs per item.

    ``score_a``, ``score_b``: per-item outputs with items on axis ``-2`` (e.g. ``[seeds, n,
    classes]``); ``metric(scores)`` scores one system. Under the null that the systems are
    exchangeable on every item, each swap pattern is equally likely.
    ``p = (1 + #{|d_perm| >= |d|}) / (n_perm + 1)``.
    """
    a, b = np.asarray(score_a), np.asarray(score_b)
    if a.shape != b.shape:
        raise ValueError(f"paired test: outputs differ in shape {a.shape} vs {b.shape}")
    d = float(metric(a)) - float(metric(b))
    rng = np.random.default_rng(seed)
    n = a.shape[-2]
    tol = 1e-12 * max(1.0, abs(d))
    hits = 0
    for _ in range(n_perm):
        swap = rng.random(n) < 0.5
        mask = swap.reshape((n, 1)) if a.ndim >= 2 else swap
        pa, pb = np.where(mask, b, a), np.where(mask, a, b)
        hits += abs(float(metric(pa)) - float(metric(pb))) >= abs(d) - tol
    return {"delta": d, "p_value": (1 + hits) / (n_perm + 1), "n_items": n,
            "n_perm": n_perm, "method": "paired permutation"}
