"""Kernel Audio Distance (Chung et al. 2025, "KAD: No More FAD! An Effective and Efficient
Evaluation Metric for Audio Generation", arXiv:2502.15602) over a pluggable backbone.

Convention: lower is better; ``KAD = 1000 x MMD^2`` (``SCALE``; the scale the paper reports;
note that the ``kadtk`` code we read, YoonjinXD/kadtk at 7ec65d7, multiplies by 100), unitless.
0 in expectation for equal distributions at *any* number of clips: the estimate is unbiased,
so it is often negative when the two sets do not differ.

KAD is the squared maximum mean discrepancy (Gretton et al., JMLR 2012) between the
distributions P (reference) and Q (estimate) of the backbone's patch embeddings::

    MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y),     x, x' ~ P,  y, y' ~ Q independent
    k(a, b)     = exp(-||a - b||^2 / (2 sigma^2))             (Gaussian RBF kernel)

Bandwidth: ``sigma`` = the median of the Euclidean distances between all pairs of *reference*
embeddings (zero distances, e.g. repeated patches, left out; :func:`median_pairwise_distance`),
never taken from the estimate set: a codec cannot move its own yardstick, and every estimate
set is measured with the same kernel. It is a function of the backbone and the reference set
(both in the comparability keys) and is stored in ``settings["bandwidth"]``.

Estimator (:func:`mmd2_unbiased`): each expectation is replaced by the mean of the kernel over
the pairs of embeddings that are independent draws, a U-statistic, unbiased for MMD^2::

    KAD/1000 = sum_{(a,b) in Pxx} k(x_a, x_b) / |Pxx| + sum_{Pyy} k(y_a, y_b) / |Pyy|
               - 2 sum_{(a,b) in Pxy} k(x_a, y_b) / |Pxy|

``paired=False`` (the paper's estimator, for independent sets such as generated audio): Pxx
and Pyy are all pairs a != b, Pxy all pairs. ``paired=True`` (the default; a codec benchmark:
estimate i is the decode of reference i, and each clip gives several patches): every pair of
embeddings from the same item is left out of all three sums (Pxx, Pyy: a and b from different
clips; Pxy: x_a from reference clip i, y_b from estimate clip j != i). Those pairs are not
independent draws: with the paper's estimator an identity codec scores
``-2000 (1 - mean_{a != b} k(x_a, x_b)) / m`` instead of 0 (m patches, one per clip): a bias
in 1/m, the very dependence on N that KAD is meant to remove, and every good codec is pulled
down the same way. Paired KAD of identical sets is exactly 0.

Per-track contribution (``per_item``): ``KAD(all) - KAD(all but i)``, estimate clip ``i``'s
patches removed (the reference set, and with it the bandwidth, kept whole), from the same
per-clip kernel block sums (exact, no recomputation).

Cost: O((m + n)^2 d) time in row blocks of bounded memory; the bandwidth needs the m(m-1)/2
reference distances in memory (400 MB at m = 10 000 patches).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import pdist

from benchmark.metrics.base import EmbeddingSetMetric, MetricCard, MetricError, SetMetricResult

SCALE = 1000.0
KERNEL = "gaussian-rbf"
BANDWIDTH_RULE = "median pairwise distance of the reference embeddings"
_BLOCK_ELEMENTS = 1 << 21  # kernel entries per row block (16 MB of float64)


def median_pairwise_distance(x: np.ndarray) -> float:
    """Median Euclidean distance over all pairs ``a < b`` of ``x`` ``[n, dim]``, zero distances
    (repeated rows) left out. Raises ``ValueError`` when no pair is at a positive distance."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected embeddings [n, dim], got shape {x.shape}")
    distances = pdist(x)
    distances = distances[distances > 0]
    if distances.size == 0:
        raise ValueError(f"no two distinct embeddings among {x.shape[0]}: the bandwidth is undefined")
    return float(np.median(distances))


def _segment_sums(values: np.ndarray, bounds: np.ndarray, axis: int) -> np.ndarray:
    """Sums of the contiguous segments ``bounds[g]:bounds[g + 1]`` of ``values`` along ``axis``
    (an empty segment sums to 0)."""
    cs = np.cumsum(values, axis=axis)
    cs = np.concatenate([np.zeros_like(np.take(cs, [0], axis=axis)), cs], axis=axis)
    return np.take(cs, bounds[1:], axis=axis) - np.take(cs, bounds[:-1], axis=axis)


def _bounds(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([p.shape[0] for p in parts])]).astype(np.int64)


def kernel_block_sums(a_parts: list[np.ndarray], b_parts: list[np.ndarray], bandwidth: float,
                      same: bool = False) -> np.ndarray:
    """``G[i, j] = sum over a in a_parts[i], b in b_parts[j] of k(a, b)``, ``[len(a_parts),
    len(b_parts)]``, Gaussian RBF of ``bandwidth``; ``same``: the two lists are one set, and the
    terms ``k(a, a)`` of an embedding with itself are left out (0). Computed in row blocks."""
    a = np.concatenate(a_parts).astype(np.float64)
    b = np.concatenate(b_parts).astype(np.float64)
    a_bounds, b_bounds = _bounds(a_parts), _bounds(b_parts)
    gamma = 1.0 / (2.0 * bandwidth ** 2)
    b_sq = np.einsum("ij,ij->i", b, b)
    out = np.zeros((len(a_parts), len(b_parts)))
    rows = max(1, _BLOCK_ELEMENTS // max(1, b.shape[0]))
    for start in range(0, a.shape[0], rows):
        block = a[start:start + rows]
        d2 = np.einsum("ij,ij->i", block, block)[:, None] + b_sq[None, :] - 2.0 * (block @ b.T)
        np.maximum(d2, 0.0, out=d2)  # round-off
        if same:
            d2[np.arange(block.shape[0]), start + np.arange(block.shape[0])] = np.inf
        per_column_group = _segment_sums(np.exp(-gamma * d2), b_bounds, axis=1)
        local = np.clip(a_bounds - start, 0, block.shape[0])
        out += _segment_sums(per_column_group, local, axis=0)
    return out


class _KernelSums:
    """Per-clip kernel block sums of a reference set X (m_i patches per clip) and an estimate set
    Y (n_i), and the U-statistic built from them (module docstring)."""

    def __init__(self, ref: list[np.ndarray], est: list[np.ndarray], bandwidth: float, paired: bool) -> None:
        if paired and len(ref) != len(est):
            raise ValueError(f"paired estimator: {len(ref)} reference and {len(est)} estimate clips; "
                             "pass paired=False for independent sets")
        self.paired = paired
        self.m_i = np.array([r.shape[0] for r in ref], dtype=np.float64)
        self.n_i = np.array([e.shape[0] for e in est], dtype=np.float64)
        self.gxx = kernel_block_sums(ref, ref, bandwidth, same=True)
        self.gyy = kernel_block_sums(est, est, bandwidth, same=True)
        self.gxy = kernel_block_sums(ref, est, bandwidth)

    def _terms(self) -> tuple[float, float, float, float, float, float]:
        """``(Sxx, Nxx, Syy, Nyy, Sxy, Nxy)``: kernel sums over the kept pairs and their counts."""
        m, n = self.m_i.sum(), self.n_i.sum()
        if self.paired:
            return (self.gxx.sum() - np.trace(self.gxx), m * m - np.sum(self.m_i ** 2),
                    self.gyy.sum() - np.trace(self.gyy), n * n - np.sum(self.n_i ** 2),
                    self.gxy.sum() - np.trace(self.gxy), m * n - np.sum(self.m_i * self.n_i))
        return self.gxx.sum(), m * (m - 1), self.gyy.sum(), n * (n - 1), self.gxy.sum(), m * n

    def mmd2(self) -> float:
        sxx, nxx, syy, nyy, sxy, nxy = self._terms()
        if min(nxx, nyy, nxy) <= 0:
            raise ValueError("too few independent pairs of embeddings (paired: at least 2 clips per set)")
        return float(sxx / nxx + syy / nyy - 2.0 * sxy / nxy)

    def leave_one_out(self) -> np.ndarray:
        """MMD^2 with each estimate clip's patches removed in turn (NaN where too few remain)."""
        sxx, nxx, syy, nyy, sxy, nxy = self._terms()
        own_yy, own_xy = np.diag(self.gyy), np.diag(self.gxy) if self.paired else 0.0
        rows_yy, cols_xy = self.gyy.sum(axis=1), self.gxy.sum(axis=0)
        rest = self.n_i.sum() - self.n_i
        if self.paired:
            # pairs (a in i, b not in i) leave, both orders; pairs inside clip i were never counted
            syy_i = syy - 2.0 * (rows_yy - own_yy)
            nyy_i = rest ** 2 - (np.sum(self.n_i ** 2) - self.n_i ** 2)
            sxy_i = sxy - (cols_xy - own_xy)
            nxy_i = self.m_i.sum() * rest - (np.sum(self.m_i * self.n_i) - self.m_i * self.n_i)
        else:
            syy_i = syy - 2.0 * rows_yy + own_yy
            nyy_i = rest * (rest - 1)
            sxy_i = sxy - cols_xy
            nxy_i = self.m_i.sum() * rest
        with np.errstate(divide="ignore", invalid="ignore"):
            out = sxx / nxx + syy_i / nyy_i - 2.0 * sxy_i / nxy_i
        return np.where((nyy_i > 0) & (nxy_i > 0), out, np.nan)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float, x_groups: np.ndarray | None = None,
                  y_groups: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 (U-statistic, unscaled) of ``x`` ``[m, dim]`` and ``y`` ``[n, dim]`` with the
    Gaussian RBF kernel ``exp(-||a - b||^2 / (2 bandwidth^2))``.

    Without groups: the paper's estimator (within-set pairs ``a != b``, all cross pairs). With
    ``x_groups`` ``[m]`` and ``y_groups`` ``[n]`` (integer item labels, shared by the two sets):
    every pair with equal labels, within a set or across the sets, is left out (the paired
    estimator of the module docstring). May be negative.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected [m, dim] and [n, dim], got {x.shape} and {y.shape}")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if (x_groups is None) != (y_groups is None):
        raise ValueError("give both x_groups and y_groups, or neither")
    if x_groups is None:
        sums = _KernelSums([x], [y], bandwidth, paired=False)
    else:
        xg, yg = np.asarray(x_groups), np.asarray(y_groups)
        if xg.shape != (x.shape[0],) or yg.shape != (y.shape[0],):
            raise ValueError(f"groups must label every row: {xg.shape} for {x.shape[0]}, {yg.shape} for {y.shape[0]}")
        labels = np.union1d(xg, yg)
        sums = _KernelSums([x[xg == g] for g in labels], [y[yg == g] for g in labels], bandwidth, paired=True)
    return sums.mmd2()


class KAD(EmbeddingSetMetric):
    """KAD between a reference set and an estimate set of clips (module docstring).

    Parameters: those of :class:`~benchmark.metrics.base.EmbeddingSetMetric` (backbone,
    backbone_options, reference_name, clip_seconds, per_item, cache), and
    paired: reference clip i and estimate clip i are the same item (a codec's decode): pairs of
        embeddings from one item are left out of every kernel sum. False: the paper's estimator
        for independent sets (the two lists may then differ in length).
    """

    comparable_on = (*EmbeddingSetMetric.comparable_on, "kernel", "bandwidth_rule", "estimator")

    def __init__(self, backbone: str = "musicnn", backbone_options: dict[str, Any] | None = None,
                 reference_name: str = "", clip_seconds: float | None = None, per_item: bool = True,
                 cache: bool | str = True, paired: bool = True) -> None:
        super().__init__(backbone, backbone_options, reference_name, clip_seconds, per_item, cache)
        self.paired = bool(paired)
        self.card = MetricCard(
            name="kad", unit="MMD^2 x 1000", higher_is_better=False,
            convention=(f"1000 x unbiased MMD^2 (U-statistic; {self._estimator()}) of pooled per-patch "
                        f"{backbone} embeddings, Gaussian RBF kernel, sigma = {BANDWIDTH_RULE}; 0 in "
                        "expectation for equal distributions at any N, may be negative; comparable only "
                        "under equal backbone, reference set, clip count and duration; per_item = "
                        "leave-one-out change"),
            implementation="benchmark.metrics.kad + benchmark.embeddings", version="1")

    def _estimator(self) -> str:
        return ("paired: same-item pairs left out" if self.paired
                else "independent sets: diagonal left out")

    def _fixed_settings(self) -> dict[str, Any]:
        return {"kernel": KERNEL, "bandwidth_rule": BANDWIDTH_RULE, "estimator": self._estimator(),
                "scale": SCALE}

    def from_embeddings(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray], ids: list[str],
                        reference_seconds: list[float] | None = None,
                        estimate_seconds: list[float] | None = None,
                        reference_hash: str | None = None) -> SetMetricResult:
        """KAD from per-clip embeddings (``[patches, dim]`` each; clip i of each list is item
        ``ids[i]`` when paired); the optional durations (seconds, after cropping) and reference
        hash go into the settings."""
        ref_all, _ = self._pooled(ref_emb, est_emb)
        if self.paired and len(ref_emb) != len(est_emb):
            raise MetricError(f"kad: paired estimator needs one estimate per reference clip, got "
                              f"{len(ref_emb)} reference and {len(est_emb)} estimate clips (or paired=False)")
        try:
            bandwidth = median_pairwise_distance(ref_all)
            sums = _KernelSums(ref_emb, est_emb, bandwidth, self.paired)
            mmd2 = sums.mmd2()
        except ValueError as exc:
            raise MetricError(f"kad: {exc}") from exc
        per_item = {}
        if self.per_item:
            per_item = {i: float(SCALE * (mmd2 - v)) for i, v in zip(ids, sums.leave_one_out())}
        settings = self._settings(ref_emb, est_emb, reference_seconds, estimate_seconds, reference_hash)
        settings["bandwidth"] = bandwidth
        return self._result(SCALE * mmd2, per_item, settings, [])
