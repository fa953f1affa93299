"""Fréchet Audio Distance (Kilgour et al., Interspeech 2019) over a pluggable backbone.

Convention: lower is better, 0 for identical sets; unit: squared embedding distance of the
backbone (values are only comparable under identical settings).

Every clip is embedded by the backbone (``benchmark.embeddings``; one embedding per analysis
patch: 2.99 s for musicnn, 0.96 s for VGGish, 10 s for CLAP). All patch embeddings of a set are
pooled, a Gaussian (mean, unbiased covariance) is fitted to each set, and FAD is the Fréchet
distance between the two Gaussians (:mod:`benchmark.metrics.frechet`).

A FAD value depends on the backbone, the reference set, the number of clips and the clip
duration (and, for ``eval``'s segment streaming, the segment length: each segment is embedded
separately): all of them are stored in :attr:`SetMetricResult.settings`, declared in
:attr:`FAD.comparable_on` (the keys shared by every embedding-distribution metric, see
:class:`benchmark.metrics.base.EmbeddingSetMetric`), and
:func:`benchmark.metrics.base.comparability_problems` (or :func:`check_comparable` /
:func:`warn_if_incomparable` here) flags comparisons across settings.

With no more embeddings than dimensions the covariances are rank-deficient and FAD is strongly
biased: the result then carries a warning (:attr:`SetMetricResult.warnings`, also in
``settings["warning"]``), never a raw Python warning.

Per-track contribution (``per_item``): leave-one-out change, ``FAD(all) - FAD(all but i)``,
where track ``i``'s patches are removed from the estimate set. Positive values mean the
track pulls the estimate distribution away from the reference; sort descending to find
outliers. The reference set is kept whole.

FAD's bias falls as ``1/N`` but is large at the set sizes of a codec benchmark (two samples
of one Gaussian give FAD ~119 at 104 musicnn embeddings in 200 dimensions): :class:`FADInf`
(``fad_inf``) extrapolates it to infinite N; :class:`benchmark.metrics.kad.KAD` is unbiased
at any N. The embedding machinery (backbone, cache, cropping, reference hash, settings) is
:class:`~benchmark.metrics.base.EmbeddingSetMetric`'s, shared by all three.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from benchmark.metrics.base import (
    EmbeddingSetMetric,
    MetricCard,
    MetricError,
    SetMetricResult,
)
from benchmark.metrics.frechet import (
    GaussianStats,
    frechet_distance_stats,
    gaussian_stats,
)


class FADSettingsWarning(UserWarning):
    """Two FAD values computed under different settings are being compared."""


def check_comparable(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Differences between the settings of two FAD results (empty if comparable); the card's
    implementation and version are compared when the settings carry them."""
    return FAD.comparability_problems(a, b)


def warn_if_incomparable(*settings: dict[str, Any]) -> list[str]:
    """Warn (:class:`FADSettingsWarning`) if any of the given FAD settings differ from the
    first; returns the differences. Use before putting FAD values in one table."""
    diffs: list[str] = []
    for other in settings[1:]:
        diffs += check_comparable(settings[0], other)
    if diffs:
        warnings.warn("FAD values computed under different settings are not comparable: "
                      + "; ".join(sorted(set(diffs))), FADSettingsWarning, stacklevel=2)
    return diffs


def _rank_warnings(n_reference: int, n_estimate: int, dim: int) -> list[str]:
    n = min(n_reference, n_estimate)
    if n > dim:
        return []
    return [f"only {n} embeddings for {dim} dimensions: covariances are rank-deficient and FAD is "
            "strongly biased; use more or longer clips"]


def _stats_from_sums(s1: np.ndarray, s2: np.ndarray, n: int) -> GaussianStats:
    mean = s1 / n
    cov = (s2 - n * np.outer(mean, mean)) / (n - 1)
    return GaussianStats(mean, (cov + cov.T) / 2, n)


class FAD(EmbeddingSetMetric):
    """FAD between a reference set and an estimate set of clips.

    Parameters: those of :class:`~benchmark.metrics.base.EmbeddingSetMetric` (backbone,
    backbone_options, reference_name, clip_seconds, per_item, cache); ``per_item`` here is the
    leave-one-out change of each estimate track.
    """

    def __init__(self, backbone: str = "musicnn", backbone_options: dict[str, Any] | None = None,
                 reference_name: str = "", clip_seconds: float | None = None, per_item: bool = True,
                 cache: bool | str = True) -> None:
        super().__init__(backbone, backbone_options, reference_name, clip_seconds, per_item, cache)
        self.card = MetricCard(
            name="fad", unit="squared embedding distance", higher_is_better=False,
            convention=(f"Frechet distance of Gaussians fitted to pooled per-patch {backbone} "
                        "embeddings (unbiased covariance, eigendecomposition trace-sqrt); "
                        "comparable only under equal backbone, reference set, clip count and "
                        "duration (see settings); per_item = leave-one-out change"),
            implementation="benchmark.metrics.fad + benchmark.embeddings", version="1")

    def from_embeddings(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray], ids: list[str],
                        reference_seconds: list[float] | None = None,
                        estimate_seconds: list[float] | None = None,
                        reference_hash: str | None = None) -> SetMetricResult:
        """FAD from per-clip embeddings (``[patches, dim]`` each); the optional durations
        (seconds, after cropping) and reference hash go into the settings."""
        ref_all, est_all = self._pooled(ref_emb, est_emb)
        ref_stats, est_stats = gaussian_stats(ref_all), gaussian_stats(est_all)
        value = frechet_distance_stats(ref_stats, est_stats)
        per_item = self._leave_one_out(value, ref_stats, est_emb, ids) if self.per_item else {}
        settings = self._settings(ref_emb, est_emb, reference_seconds, estimate_seconds, reference_hash)
        return self._result(value, per_item, settings, _rank_warnings(ref_all.shape[0], est_all.shape[0],
                                                                      ref_all.shape[1]))

    def _leave_one_out(self, value: float, ref_stats: GaussianStats, est_emb: list[np.ndarray],
                       ids: list[str]) -> dict[str, float]:
        emb64 = [e.astype(np.float64) for e in est_emb]
        s1 = sum(e.sum(axis=0) for e in emb64)
        s2 = sum(e.T @ e for e in emb64)
        n = sum(e.shape[0] for e in emb64)
        out: dict[str, float] = {}
        for item_id, e in zip(ids, emb64):
            rest = n - e.shape[0]
            if rest < 2:
                out[item_id] = float("nan")
                continue
            stats = _stats_from_sums(s1 - e.sum(axis=0), s2 - e.T @ e, rest)
            out[item_id] = value - frechet_distance_stats(ref_stats, stats)
        return out


def subset_sizes(n_total: int, min_n: int = 50, n_sizes: int = 8) -> list[int]:
    """FAD-inf's subset sizes: ``n_sizes`` sizes evenly spaced from ``min(min_n, n_total // 2)``
    (at least 2) to ``n_total``, rounded, duplicates removed (fewer when ``n_total`` is small)."""
    low = max(2, min(int(min_n), n_total // 2))
    if n_total < low:
        return []
    return sorted({int(round(n)) for n in np.linspace(low, n_total, int(n_sizes))})


def fit_inverse_n(sizes: list[int], values: list[float]) -> tuple[float, float, float]:
    """Least-squares fit ``value = intercept + slope / N``: ``(intercept, slope, r2)``
    (``r2``: coefficient of determination; 1 when the values are all equal)."""
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = float(np.sum((y - design @ np.array([intercept, slope])) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return float(intercept), float(slope), r2


class FADInf(FAD):
    """FAD-inf: FAD extrapolated to infinitely many clips (FID-inf of Chong & Forsyth, CVPR 2020,
    "Effectively Unbiased FID and Inception Score and where to find them"; FAD-inf of Gui et
    al., ICASSP 2024, fadtk).

    FAD's bias falls as ``1/N`` (``E FAD(N) = FAD_inf + k / N + O(1/N^2)``, N well above the
    dimension): FAD is computed on seeded random subsets (``numpy.random.default_rng(seed)``,
    without replacement, so each subset is a genuine sample of its size) at the sizes of
    :func:`subset_sizes` (``n_sizes`` sizes from ``min(min_n, N_total // 2)`` to ``N_total``),
    and the value is the intercept of the least-squares line of FAD against ``1/N``.

    ``paired=True`` (default; a codec benchmark: estimate clip i is the decode of reference clip
    i): N counts *items*, and each subset takes the same items from both sets (all their
    patches). Both sets' finite-size biases and the covariance between an item and its decode
    then all scale as ``1/N`` and leave the intercept, and identical sets give exactly 0.
    ``paired=False`` (the papers' recipe, for independent sets): N counts estimate *patch
    embeddings*, subsets of the estimate set against the whole reference set, whose own bias
    stays in the value. (With paired sets that recipe is biased: an item and its decode
    covary, which lowers FAD by a term in ``1/N_reference`` that no estimate subset removes; an
    identity codec scores below 0.)

    Settings add ``subsets`` (the recipe), ``subset_sizes``, ``fad_at_size`` (FAD of each
    subset), ``slope`` (k), ``r2`` of the fit, ``seed``, ``min_n`` and ``n_sizes``. Warnings:
    fewer than 3 sizes (a line through 2 points), subsets with no more embeddings than
    dimensions (rank-deficient covariances, far from the ``1/N`` regime). Values may be
    negative (an extrapolation). No per-track contributions (``per_item``): use ``fad``'s.
    """

    comparable_on = (*EmbeddingSetMetric.comparable_on, "subsets", "min_n", "n_sizes")

    def __init__(self, backbone: str = "musicnn", backbone_options: dict[str, Any] | None = None,
                 reference_name: str = "", clip_seconds: float | None = None, per_item: bool = False,
                 cache: bool | str = True, min_n: int = 50, n_sizes: int = 8, seed: int = 0,
                 paired: bool = True) -> None:
        if per_item:
            raise MetricError("fad_inf: no per-track contributions (the subsets are random); use fad's")
        if int(min_n) < 2 or int(n_sizes) < 2:
            raise MetricError(f"fad_inf: need min_n >= 2 and n_sizes >= 2, got {min_n} and {n_sizes}")
        super().__init__(backbone, backbone_options, reference_name, clip_seconds, False, cache)
        self.min_n, self.n_sizes, self.seed, self.paired = int(min_n), int(n_sizes), int(seed), bool(paired)
        self.card = MetricCard(
            name="fad_inf", unit="squared embedding distance", higher_is_better=False,
            convention=(f"FAD-inf: intercept of the least-squares fit FAD(N) = FAD_inf + k/N over "
                        f"{n_sizes} seeded subsets (without replacement; {self._subsets()}), N from "
                        f"min({min_n}, N_total/2) to N_total, pooled per-patch {backbone} embeddings; "
                        "comparable only under equal backbone, reference set, clip count and duration"),
            implementation="benchmark.metrics.fad + benchmark.embeddings", version="1")

    def _subsets(self) -> str:
        return ("paired: N items, the same items from both sets" if self.paired
                else "independent: N estimate embeddings, whole reference set")

    def _fixed_settings(self) -> dict[str, Any]:
        return {"subsets": self._subsets(), "min_n": self.min_n, "n_sizes": self.n_sizes, "seed": self.seed}

    def from_embeddings(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray], ids: list[str],
                        reference_seconds: list[float] | None = None,
                        estimate_seconds: list[float] | None = None,
                        reference_hash: str | None = None) -> SetMetricResult:
        """FAD-inf from per-clip embeddings (``[patches, dim]`` each; clip i of each list is
        item i when paired); as :meth:`FAD.from_embeddings`."""
        ref_all, est_all = self._pooled(ref_emb, est_emb)
        dim = est_all.shape[1]
        if self.paired and len(ref_emb) != len(est_emb):
            raise MetricError(f"fad_inf: paired subsets need one estimate per reference clip, got "
                              f"{len(ref_emb)} reference and {len(est_emb)} estimate clips (or paired=False)")
        n_total = len(est_emb) if self.paired else est_all.shape[0]
        sizes = subset_sizes(n_total, self.min_n, self.n_sizes)
        if len(sizes) < 2:
            raise MetricError(f"fad_inf: {n_total} {'items' if self.paired else 'estimate embeddings'} allow "
                              f"{len(sizes)} subset size(s), need at least 2: use more or longer clips")
        rng = np.random.default_rng(self.seed)
        ref_stats = None if self.paired else gaussian_stats(ref_all)
        values, smallest = [], min(ref_all.shape[0], est_all.shape[0])
        for n in sizes:
            pick = rng.choice(n_total, n, replace=False)
            if self.paired:
                ref, est = (np.concatenate([parts[i] for i in pick]) for parts in (ref_emb, est_emb))
                smallest = min(smallest, ref.shape[0], est.shape[0])
                try:
                    values.append(frechet_distance_stats(gaussian_stats(ref), gaussian_stats(est)))
                except ValueError as exc:
                    raise MetricError(f"fad_inf: a subset of {n} items: {exc}; use more or longer clips") from exc
            else:
                smallest = min(smallest, n)
                values.append(frechet_distance_stats(ref_stats, gaussian_stats(est_all[pick])))
        intercept, slope, r2 = fit_inverse_n(sizes, values)
        settings = self._settings(ref_emb, est_emb, reference_seconds, estimate_seconds, reference_hash)
        settings.update(subset_sizes=sizes, fad_at_size=values, slope=slope, r2=r2)
        warnings_ = []
        if smallest <= dim:
            warnings_.append(f"(sub)sets down to {smallest} embeddings for {dim} dimensions: covariances are "
                             "rank-deficient, far from the regime where FAD(N) = FAD_inf + k/N; the "
                             "extrapolation is unreliable; use more or longer clips")
        if len(sizes) < 3:
            warnings_.append(f"only {len(sizes)} subset sizes ({n_total} "
                             f"{'items' if self.paired else 'estimate embeddings'}): the fit is a line through "
                             "2 points; use more clips")
        return self._result(intercept, {}, settings, warnings_)


# the settings that must be equal for two FAD values to be compared (older name)
COMPARABLE_KEYS = FAD.comparable_on
