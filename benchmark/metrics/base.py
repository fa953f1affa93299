"""Metric protocol, metric cards, comparability and warnings.

Every metric carries a :class:`MetricCard` that travels with each stored value into the
results store and the report: name, unit, direction, convention, implementation and version.

Comparability belongs to the metric: each metric class declares in ``comparable_on`` the
settings keys that must be equal for two of its values to be compared (FAD: backbone, reference
set hash, number of clips, clip duration...; ViSQOL: mode and rate). Its card's ``version`` and
``implementation`` must always match too. :func:`comparability_problems` asks the registered
class, so the report holds no list of keys.

Warnings are data: a metric that has something to say about a value (rank-deficient covariance,
clipping, padded samples) returns it with the value (:attr:`SetMetricResult.warnings`, stored in
the row's ``settings["warnings"]``); callers print it as one line with :func:`format_warning`
and the report shows it beside the number. Metrics never emit raw Python warnings.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import weakref
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from benchmark.errors import BenchmarkError

# always compared, whatever the metric declares (the keys as given to comparability_problems)
CARD_KEYS = ("implementation", "version")


class MetricError(BenchmarkError, ValueError):
    """A metric cannot be computed for this input (message says why)."""


@dataclasses.dataclass(frozen=True)
class MetricCard:
    name: str
    unit: str
    higher_is_better: bool
    convention: str
    implementation: str
    version: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Metric(abc.ABC):
    """What item and set metrics share: a card and a declared comparability.

    ``comparable_on``: settings keys (as stored in the result's ``settings``) that must be equal
    for two values to be compared, besides the card's implementation and version. A key that is
    not recorded counts as ``None``.
    """

    card: MetricCard
    comparable_on: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def comparable_values(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The values two results must share to be compared: ``implementation``, ``version`` and
        every key of ``comparable_on``, read from ``settings`` (override to normalise one, e.g.
        an implementation detail known not to change the value)."""
        return {key: settings.get(key) for key in (*CARD_KEYS, *cls.comparable_on)}

    @classmethod
    def comparability_problems(cls, settings_a: Mapping[str, Any], settings_b: Mapping[str, Any]) -> list[str]:
        """``"key: 'a' vs 'b'"`` for each comparable value that differs (empty: comparable)."""
        a, b = cls.comparable_values(settings_a), cls.comparable_values(settings_b)
        return [f"{key}: {a[key]!r} vs {b.get(key)!r}" for key in a if _canonical(a[key]) != _canonical(b.get(key))]

    @property
    def settings(self) -> dict[str, Any]:
        """This instance's values of the ``comparable_on`` keys (attributes of the same name),
        to store with each value it produces."""
        return {key: getattr(self, key, None) for key in self.comparable_on}


def metric_class(name: str) -> type[Metric] | None:
    """The class registered as metric ``name`` in :data:`benchmark.metrics.METRICS` (imported,
    never constructed), or None for a name that is not registered or cannot be imported."""
    from benchmark.lazy import resolve
    from benchmark.metrics import METRICS  # here: benchmark.metrics imports this module

    if name not in METRICS:
        return None
    try:
        cls = resolve(METRICS, name, "metric", MetricError)
    except MetricError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Metric) else None


def comparability_problems(metric_name: str, settings_a: Mapping[str, Any],
                           settings_b: Mapping[str, Any]) -> list[str]:
    """Why two values of metric ``metric_name`` cannot be compared (empty list: they can).

    ``settings_a`` / ``settings_b``: each value's stored settings plus its card's
    ``implementation`` and ``version``. The keys compared are those the registered metric class
    declares (:attr:`Metric.comparable_on`); for a metric that is not registered only the
    implementation and version. Each problem reads ``"key: 'a' vs 'b'"``.
    """
    return (metric_class(metric_name) or Metric).comparability_problems(settings_a, settings_b)


def _canonical(value: Any) -> Any:
    # settings come back from JSON: 10 and 10.0, tuples and lists are the same setting
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    return str(value)


def format_warning(metric: str, text: str) -> str:
    """One line for the terminal and the report: ``"warning [fad]: only 104 embeddings ..."``."""
    text = " ".join(str(text).split())  # one line, whatever the message
    if text.startswith(f"{metric}: "):
        text = text[len(metric) + 2:]
    return f"warning [{metric}]: {text}"


class ItemMetric(Metric):
    """Per-item metric: ``metric(reference, estimate, sample_rate) -> float``.

    Inputs are mono float arrays ``[samples]`` at ``sample_rate`` (Hz) of equal length (the
    pipeline aligns them first). May return ``float('nan')`` for undefined cases (e.g. silent
    reference); aggregation ignores NaN and reports how many were dropped.
    """

    @abc.abstractmethod
    def __call__(self, reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float: ...

    def batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> list[float]:
        """Score many pairs (override to parallelise)."""
        return [self(r, e, sample_rate) for r, e in pairs]

    def submit(self, pairs: list[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> Callable[[], list[float]]:
        """Start scoring many pairs; returns a function that waits for the values (in order) and
        raises what scoring raised. A metric with a worker pool returns at once, so that the
        caller codes the next items meanwhile; by default the pairs are scored now."""
        values = self.batch(pairs, sample_rate)
        return lambda: values


@dataclasses.dataclass
class SetMetricResult:
    """A set metric's value.

    per_item: each estimate's contribution (metric-specific, e.g. FAD's leave-one-out change).
    settings: everything the value depends on (stored with it; compared by
        :func:`comparability_problems`).
    warnings: what the reader of the value must know (e.g. rank-deficient covariances), one
        sentence each, without the metric's name (see :func:`format_warning`); also stored in
        ``settings["warnings"]``.
    """

    value: float
    per_item: dict[str, float] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


class SetMetric(Metric):
    """Set-level metric (e.g. FAD): compares a reference set with an estimate set.

    ``compute(references, estimates, sample_rate, ids)`` with lists of mono ``[samples]``
    arrays; returns a :class:`SetMetricResult` whose ``settings`` records everything the value
    depends on (backbone, reference set, number of clips, clip duration).
    """

    @abc.abstractmethod
    def compute(self, references: list[np.ndarray], estimates: list[np.ndarray], sample_rate: int,
                ids: list[str] | None = None) -> SetMetricResult: ...


class EmbeddingSetMetric(SetMetric):
    """A distance between the embedding distributions of a reference and an estimate set (FAD,
    FAD-inf, and KAD, the kernel distance of Chung et al. 2025, alike): the embedding machinery
    they share.

    Every clip is embedded by a backbone (:mod:`benchmark.embeddings`; one embedding
    ``[dim]`` per analysis patch) through the on-disk embedding cache, so several of these
    metrics over the same clips and backbone embed each clip once (and build the backbone once
    per process: instances with equal backbone and options share it). A subclass implements
    :meth:`from_embeddings`; :meth:`compute` (whole clips) and the engine's
    ``EmbeddingAccumulator`` (``embed_clip`` per segment, ``hash_update``, then
    ``from_embeddings``) both end there.

    Such a value depends on the backbone, the reference set, the number of clips on each side,
    the clip duration and the segmenting of long files: the shared ``comparable_on`` keys, which
    :meth:`_settings` records (with the backbone's rate and dimension and the embedding
    counts). A subclass extends the tuple with its own fixed choices, returned by
    :meth:`_fixed_settings` (KAD: ``kernel``, ``bandwidth_rule``, ``estimator``; the bandwidth
    itself is a function of the backbone and the reference set, both already compared).

    Parameters
    ----------
    backbone: registry name (``musicnn`` default, ``vggish``, ``clap``) or ``"module:Class"``.
    backbone_options: keyword arguments of the backbone (e.g. ``{"checkpoint": path}``).
    reference_name: name of the reference set, stored in the settings (e.g.
        ``"builtin/test"``); a content hash of the reference audio is always stored too.
    clip_seconds: crop every clip to its first ``clip_seconds`` (None: whole clips). Clips
        shorter than that are used whole and counted in ``settings["n_short_clips"]``.
    per_item: compute each estimate track's contribution (metric-specific).
    cache: cache embeddings on disk (``True``: default cache folder, a path, or ``False``).
    """

    comparable_on = ("backbone", "backbone_id", "reference_set", "reference_hash", "n_reference_clips",
                     "n_estimate_clips", "clip_seconds", "segment_seconds")

    def __init__(self, backbone: str = "musicnn", backbone_options: dict[str, Any] | None = None,
                 reference_name: str = "", clip_seconds: float | None = None, per_item: bool = True,
                 cache: bool | str = True) -> None:
        self.backbone_name = backbone
        self.backbone_options = dict(backbone_options or {})
        self.reference_name = reference_name
        self.clip_seconds = clip_seconds
        self.per_item = per_item
        self._backbone = None
        self._cache = None
        if cache is not False:
            from benchmark.embeddings import EmbeddingCache  # lazy: torch only for embedding metrics

            self._cache = EmbeddingCache(None if cache is True else cache)

    @property
    def backbone(self):
        """The :class:`~benchmark.embeddings.EmbeddingBackbone`, built on first use (shared with
        every live metric built with the same backbone and options)."""
        if self._backbone is None:
            self._backbone = _shared_backbone(self.backbone_name, self.backbone_options)
        return self._backbone

    @property
    def settings(self) -> dict[str, Any]:
        """The ``comparable_on`` values known before any set is seen (the backbone is not built
        here; set-dependent values such as the reference hash are None until a result has them)."""
        known = {"reference_set": self.reference_name or "unnamed", "clip_seconds": self.clip_seconds,
                 **self._fixed_settings()}
        return {key: known.get(key) for key in self.comparable_on}

    # -- embeddings -------------------------------------------------------------------------------
    def _crop(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).ravel()
        if self.clip_seconds is not None:
            audio = audio[:int(round(self.clip_seconds * sample_rate))]
        return audio

    def embed_clip(self, audio: np.ndarray, sample_rate: int, name: str = "clip") -> np.ndarray:
        """Embeddings ``[patches, dim]`` of one mono clip (cropped, cached); errors name it."""
        audio = self._crop(audio, sample_rate)
        if audio.size == 0 or not np.isfinite(audio).all():
            raise MetricError(f"{self.card.name}: {name} is empty or contains NaN/inf samples")
        try:
            if self._cache is not None:
                return self._cache.embed(self.backbone, audio, sample_rate)
            return self.backbone.embed(audio, sample_rate)
        except Exception as exc:
            raise MetricError(f"{self.card.name}: cannot embed {name} with backbone {self.backbone_name!r}: "
                              f"{exc}") from exc

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

    # -- metric -----------------------------------------------------------------------------------
    def compute(self, references: list[np.ndarray], estimates: list[np.ndarray], sample_rate: int,
                ids: list[str] | None = None) -> SetMetricResult:
        """The metric of ``estimates`` against ``references`` (lists of mono ``[samples]`` at
        ``sample_rate`` Hz; the two lists need not have the same length unless the metric pairs
        them). ``ids`` name the estimates (keys of ``per_item``)."""
        name = self.card.name
        if len(references) < 1 or len(estimates) < 1:
            raise MetricError(f"{name}: need at least one reference and one estimate clip")
        ids = list(ids) if ids is not None else [f"item{i}" for i in range(len(estimates))]
        if len(ids) != len(estimates):
            raise MetricError(f"{name}: {len(ids)} ids for {len(estimates)} estimate clips")
        ref_emb = self.embed(references, sample_rate, [f"reference {i}" for i in range(len(references))])
        est_emb = self.embed(estimates, sample_rate, ids)
        cropped = [self._crop(c, sample_rate) for c in references]
        return self.from_embeddings(
            ref_emb, est_emb, ids,
            reference_seconds=[c.size / sample_rate for c in cropped],
            estimate_seconds=[self._crop(c, sample_rate).size / sample_rate for c in estimates],
            reference_hash=self.reference_hash(cropped, [sample_rate] * len(cropped)))

    @abc.abstractmethod
    def from_embeddings(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray], ids: list[str],
                        reference_seconds: list[float] | None = None,
                        estimate_seconds: list[float] | None = None,
                        reference_hash: str | None = None) -> SetMetricResult:
        """The metric from per-clip embeddings (``[patches, dim]`` each; ``ids`` name the
        estimate clips); the optional durations (seconds, after cropping) and reference hash go
        into the settings."""

    def _pooled(self, ref_emb: list[np.ndarray], est_emb: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All patch embeddings of each set, ``[n, dim]`` float64, checked (at least 2 per set,
        equal dimensions, finite)."""
        name = self.card.name
        if not ref_emb or not est_emb:
            raise MetricError(f"{name}: need at least one reference and one estimate clip")
        ref_all = np.concatenate(ref_emb).astype(np.float64)
        est_all = np.concatenate(est_emb).astype(np.float64)
        if ref_all.ndim != 2 or est_all.ndim != 2 or ref_all.shape[1] != est_all.shape[1]:
            raise MetricError(f"{name}: embeddings must be [patches, dim] of one dim, got reference "
                              f"{ref_all.shape} and estimate {est_all.shape}")
        if ref_all.shape[0] < 2 or est_all.shape[0] < 2:
            raise MetricError(f"{name}: need at least 2 embeddings per set, got {ref_all.shape[0]} "
                              f"reference and {est_all.shape[0]} estimate patches; use more or longer clips")
        if not (np.isfinite(ref_all).all() and np.isfinite(est_all).all()):
            raise MetricError(f"{name}: embeddings contain NaN or inf")
        return ref_all, est_all

    def _fixed_settings(self) -> dict[str, Any]:
        """The metric's own fixed choices, stored with every value (override)."""
        return {}

    def _settings(self, ref_emb, est_emb, reference_seconds, estimate_seconds, reference_hash) -> dict[str, Any]:
        """Everything a value depends on: backbone (name, id, rate in Hz, dimension, patch
        length), reference set (name, hash), clip and embedding counts, clip and segment
        durations, and the metric's fixed choices."""
        bb = self.backbone
        settings: dict[str, Any] = {
            "backbone": bb.name, "backbone_id": bb.identity, "backbone_dim": bb.dim,
            "backbone_rate_hz": int(bb.sample_rate), "backbone_patch_seconds": round(bb.patch_seconds, 4),
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
        settings.update(self._fixed_settings())
        return settings

    @staticmethod
    def _result(value: float, per_item: dict[str, float], settings: dict[str, Any],
                warnings: list[str]) -> SetMetricResult:
        """The result, its warnings also stored in the settings."""
        if warnings:
            settings["warnings"] = list(warnings)
            settings["warning"] = "; ".join(warnings)  # the single string older readers expect
        return SetMetricResult(value=float(value), per_item=per_item, settings=settings, warnings=list(warnings))


# live backbones by (name, options): FAD, FAD-inf and KAD over one backbone build it once
_BACKBONES: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def _shared_backbone(name: str, options: dict[str, Any]):
    from benchmark.embeddings import create_backbone  # lazy: torch only for embedding metrics

    key = json.dumps([name, options], sort_keys=True, default=str)
    backbone = _BACKBONES.get(key)
    if backbone is None:
        backbone = create_backbone(name, **options)
        _BACKBONES[key] = backbone
    return backbone
