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
from typing import Any, ClassVar, Mapping

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
    and KAD, the kernel distance of Chung et al. 2025, alike).

    Such a value depends on the backbone, the reference set, the number of clips on each side,
    the clip duration and the segmenting of long files: the shared ``comparable_on`` keys, which
    every subclass records in its settings. A subclass extends the tuple with its own (KAD:
    ``kernel``, ``bandwidth``; any metric with a choice of patch pooling: ``pooling``).
    """

    comparable_on = ("backbone", "backbone_id", "reference_set", "reference_hash", "n_reference_clips",
                     "n_estimate_clips", "clip_seconds", "segment_seconds")
