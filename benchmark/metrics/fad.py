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
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np

from benchmark.embeddings import EmbeddingBackbone, EmbeddingCache, create_backbone
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


def _stats_from_sums(s1: np.ndarray, s2: np.ndarray, n: int) -> GaussianStats:
    mean = s1 / n
    cov = (s2 - n * np.outer(mean, mean)) / (n - 1)
    return GaussianStats(mean, (cov + cov.T) / 2, n)


class FAD(EmbeddingSetMetric):
    """FAD between a reference set and an estimate set of clips.

    Parameters
    ----------
    backbone: registry name (``musicnn`` default, ``vggish``, ``clap``) or ``"module:Class"``.
    backbone_options: keyword arguments of the backbone (e.g. ``{"checkpoint": path}``).
    reference_name: name of the reference set, stored in the settings (e.g.
        ``"builtin/test"``); a content hash of the reference audio is always stored too.
    clip_seconds: crop every clip to its first ``clip_seconds`` (None: whole clips). Clips
        shorter than that are used whole and counted in ``settings["n_short_clips"]``.
    per_item: compute the leave-one-out contribution of each estimate track.
    cache: cache embeddings on disk (``True``: default cache folder, a path, or ``False``).
    """

    def __init__(self, backbone: str = "musicnn", backbone_options: dict[str, Any] | None = None,
                 reference_name: str = "", clip_seconds: float | None = None, per_item: bool = True,
                 cache: bool | str = True) -> None:
        self.backbone_name = backbone
        self.backbone_options = dict(backbone_options or {})
        self.reference_name = reference_name
        self.clip_seconds = clip_seconds
        self.per_item = per_item
        self._backbone: EmbeddingBackbone | None = None
        self._cache = None if cache is False else EmbeddingCache(None if cache is True else cache)
        self.card = MetricCard(
            name="fad", unit="squared embedding distance", higher_is_better=False,
            convention=(f"Frechet distance of Gaussians fitted to pooled per-patch {backbone} "
                        "embeddings (unbiased covariance, eigendecomposition trace-sqrt); "
                        "comparable only under equal backbone, reference set, clip count and "
                        "duration (see settings); per_item = leave-one-out change"),
            implementation="benchmark.metrics.fad + benchmark.embeddings", version="1")

    @property
    def backbone(self) -> EmbeddingBackbone:
        if self._backbone is None:
            self._backbone = create_backbone(self.backbone_name, **self.backbone_options)
        return self._backbone

    # -- embeddings ---------------------------------------------------------------------------
    def _crop(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).ravel()
        if self.clip_seconds is not None:
            audio = audio[:int(round(self.clip_seconds * sample_rate))]
        return audio

    def embed_clip(self, audio: np.ndarray, sample_rate: int, name: str = "clip") -> np.ndarray:
        """Embeddings ``[patches, dim]`` of one mono clip (cropped, cached); errors name it."""
        audio = self._crop(audio, sample_rate)
        if audio.size == 0 or not np.isfinite(audio).all():
            raise MetricError(f"fad: {name} is empty or contains NaN/inf samples")
        try:
            if self._cache is not None:
                return self._cache.embed(self.backbone, audio, sample_rate)
            return self.backbone.embed(audio, sample_rate)
        except Exception as exc:
            raise MetricError(f"fad: cannot embed {name} with backbone {self.backbone_name!r}: {exc}") from exc

    def embed(self, clips: list[np.ndarray], sample_rate: int, ids: list[str] | None = None) -> list[np.ndarray]:
        """Per-clip embeddings ``[patches, dim]`` (cached)."""
        return [self.embed_clip(clip, sample_rate, ids[i] if ids else f"clip {i}") for i, clip in enumerate(clips)]

    @staticmethod
    def hash_update(hasher, clip: np.ndarray, sample_rate: int) -> None:
        """Feed one reference clip (rate and float32 bytes) to a running SHA-256."""
        hasher.update(f"{int(sample_rate)}:".encode())
        hasher.update(np.ascontiguousarray(clip, dtype=np.float32).tobytes())

    @classmethod
    def reference_hash(cls, clips: list[np.ndarray], sample_rates: list[int]) -> str:
        """16-hex content hash of a reference set (audio bytes and rates, in order)."""
        h = hashlib.sha256()
        for clip, rate in zip(clips, sample_rates):
            cls.hash_update(h, clip, rate)
        return h.hexdigest()[:16]

    # -- metric ---------------------------------------------------------------------------------
    def compute(self, references: list[np.ndarray], estimates: list[np.ndarray], sample_rate: int,
                ids: list[str] | None = None) -> SetMetricResult:
        """FAD of ``estimates`` against ``references`` (lists of mono ``[samples]`` at
        ``sample_rate`` Hz; the two lists need not have the same length). ``ids`` name the
        estimates (keys of ``per_item``)."""
        if len(references) < 1 or len(estimates) < 1:
            raise MetricError("fad: need at least one reference and one estimate clip")
        ids = list(ids) if ids is not None else [f"item{i}" for i in range(len(estimates))]
        if len(ids) != len(estimates):
            raise MetricError(f"fad: {len(ids)} ids for {len(estimates)} estimate clips")
        ref_emb = self.embed(references, sample_rate, [f"reference {i}" for i in range(len(references))])
        est_emb = self.embed(estimates, sample_rate, ids)
        cropped = [self._crop(c, sample_rate) for c in references]
        return self.from_embeddings(
            ref_emb, est_emb, ids,
            reference_seconds=[c.size / sample_rate for c in cropped],
            estimate_seconds=[self._crop(c, sample_rate).size / sample_rate for c in estimates],
            reference_hash=self.reference_hash(cropped, [sample_rate] * len(cropped)))

    def from_embeddings(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray], ids: list[str],
                        reference_seconds: list[float] | None = None,
                        estimate_seconds: list[float] | None = None,
                        reference_hash: str | None = None) -> SetMetricResult:
        """FAD from per-clip embeddings (``[patches, dim]`` each); the optional durations
        (seconds, after cropping) and reference hash go into the settings."""
        ref_all, est_all = np.concatenate(ref_emb), np.concatenate(est_emb)
        if ref_all.shape[0] < 2 or est_all.shape[0] < 2:
            raise MetricError(f"fad: need at least 2 embeddings per set, got {ref_all.shape[0]} "
                              f"reference and {est_all.shape[0]} estimate patches; use more or longer clips")
        ref_stats, est_stats = gaussian_stats(ref_all), gaussian_stats(est_all)
        value = frechet_distance_stats(ref_stats, est_stats)
        per_item = self._leave_one_out(value, ref_stats, est_emb, ids) if self.per_item else {}
        settings = self._settings(ref_emb, est_emb, reference_seconds, estimate_seconds, reference_hash)
        warnings_: list[str] = []
        if min(ref_all.shape[0], est_all.shape[0]) <= ref_all.shape[1]:
            warnings_.append(f"only {min(ref_all.shape[0], est_all.shape[0])} embeddings for "
                             f"{ref_all.shape[1]} dimensions: covariances are rank-deficient and FAD is "
                             "strongly biased; use more or longer clips")
        if warnings_:
            settings["warnings"] = warnings_
            settings["warning"] = "; ".join(warnings_)  # the single string older readers expect
        return SetMetricResult(value=value, per_item=per_item, settings=settings, warnings=warnings_)

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

    def _settings(self, ref_emb, est_emb, reference_seconds, estimate_seconds, reference_hash) -> dict[str, Any]:
        bb = self.backbone
        settings: dict[str, Any] = {
            "backbone": bb.name, "backbone_id": bb.identity, "backbone_dim": bb.dim,
            "backbone_patch_seconds": round(bb.patch_seconds, 4),
            "reference_set": self.reference_name or "unnamed", "reference_hash": reference_hash,
            "n_reference_clips": len(ref_emb), "n_estimate_clips": len(est_emb),
            "n_reference_embeddings": int(sum(e.shape[0] for e in ref_emb)),
            "n_estimate_embeddings": int(sum(e.shape[0] for e in est_emb)),
            "clip_seconds": self.clip_seconds,
            "segment_seconds": None,  # whole clips; ``eval`` sets it when it splits long files
        }
        if reference_seconds:
            settings["mean_reference_seconds"] = round(float(np.mean(reference_seconds)), 4)
            if self.clip_seconds is None:
                # whole clips: the (reference) duration is part of the setting, to 10 ms
                settings["clip_seconds"] = f"whole (mean {np.mean(reference_seconds):.2f} s)"
        if estimate_seconds:
            settings["mean_estimate_seconds"] = round(float(np.mean(estimate_seconds)), 4)
        if self.clip_seconds is not None and (reference_seconds or estimate_seconds):
            durations = list(reference_seconds or []) + list(estimate_seconds or [])
            settings["n_short_clips"] = int(sum(d < self.clip_seconds - 1e-6 for d in durations))
        return settings


# the settings that must be equal for two FAD values to be compared (older name)
COMPARABLE_KEYS = FAD.comparable_on
