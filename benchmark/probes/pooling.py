"""Pooling of frame-level embeddings ``[dim, frames]`` into one vector per item.

Registry :data:`POOLINGS`: name -> function ``[dim, frames] -> [out_dim]``. The pooling name
travels with every probe result (it changes the numbers). An embedding that is already a
vector ``[dim]`` is used as is and recorded as ``"given"``.

- ``mean``: time average, ``[dim]``.
- ``mean_std``: time average and standard deviation (population, ``ddof=0``) concatenated,
  ``[2 * dim]``; a single frame has std 0.
- ``max``: time maximum, ``[dim]``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from benchmark.errors import BenchmarkError


class PoolingError(BenchmarkError, ValueError):
    """Embeddings that cannot be pooled; the message names the item."""


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1)


def _mean_std(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x.mean(axis=1), x.std(axis=1)])


def _max(x: np.ndarray) -> np.ndarray:
    return x.max(axis=1)


POOLINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": _mean,
    "mean_std": _mean_std,
    "max": _max,
}
GIVEN = "given"


def pool(embedding: np.ndarray, method: str, name: str = "embedding") -> np.ndarray:
    """Pool one embedding ``[dim, frames]`` (or pass through ``[dim]``) to float64 ``[out_dim]``."""
    x = np.asarray(embedding, dtype=np.float64)
    if x.ndim == 1:
        return x
    if x.ndim != 2 or x.shape[1] == 0:
        raise PoolingError(f"{name}: expected [dim, frames] with frames >= 1 or [dim], got shape {x.shape}")
    if method not in POOLINGS:
        raise PoolingError(f"unknown pooling {method!r}; known: {', '.join(sorted(POOLINGS))}")
    return POOLINGS[method](x)


def pooled_matrix(embeddings: Mapping[str, np.ndarray], ids: Sequence[str], method: str) -> tuple[np.ndarray, str]:
    """Stack pooled embeddings of ``ids`` into ``[n, out_dim]`` float32.

    Returns the matrix and the pooling actually applied (``method``, or ``"given"`` when the
    embeddings are already vectors). Mixed vector / frame inputs, differing dims or non-finite
    values raise :class:`PoolingError` naming the first offending item.
    """
    missing = [i for i in ids if i not in embeddings]
    if missing:
        raise PoolingError(f"{len(missing)} items have no embedding, e.g. {missing[:5]}; "
                           "re-run the embedding stage for this dataset")
    ndims = {np.ndim(embeddings[i]) for i in ids}
    if len(ndims) > 1:
        raise PoolingError("some embeddings are [dim] vectors and others [dim, frames]; "
                           "cache them in one form")
    rows = []
    for i in ids:
        v = pool(embeddings[i], method, name=f"item {i!r}")
        if rows and v.shape != rows[0].shape:
            raise PoolingError(f"item {i!r}: pooled size {v.shape[0]} differs from {rows[0].shape[0]} "
                               "of the first item; embeddings must share one dim")
        if not np.isfinite(v).all():
            raise PoolingError(f"item {i!r}: embedding contains NaN or inf; check the codec's encoder")
        rows.append(v)
    applied = GIVEN if ndims == {1} else method
    return np.stack(rows).astype(np.float32), applied
