"""Metric protocol and metric cards.

Every metric carries a :class:`MetricCard` that travels with each stored value into the
results store and the report: name, unit, direction, convention, implementation and version.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np


class MetricError(ValueError):
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


class ItemMetric(abc.ABC):
    """Per-item metric: ``metric(reference, estimate, sample_rate) -> float``.

    Inputs are mono float arrays ``[samples]`` at ``sample_rate`` (Hz) of equal length (the
    pipeline aligns them first). May return ``float('nan')`` for undefined cases (e.g. silent
    reference); aggregation ignores NaN and reports how many were dropped.
    """

    card: MetricCard

    @abc.abstractmethod
    def __call__(self, reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float: ...

    def batch(self, pairs: list[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> list[float]:
        """Score many pairs (override to parallelise)."""
        return [self(r, e, sample_rate) for r, e in pairs]


@dataclasses.dataclass
class SetMetricResult:
    value: float
    per_item: dict[str, float] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


class SetMetric(abc.ABC):
    """Set-level metric (e.g. FAD): compares a reference set with an estimate set.

    ``compute(references, estimates, sample_rate, ids)`` with lists of mono ``[samples]``
    arrays; returns a :class:`SetMetricResult` whose ``settings`` records everything the value
    depends on (backbone, reference set, number of clips, clip duration).
    """

    card: MetricCard

    @abc.abstractmethod
    def compute(self, references: list[np.ndarray], estimates: list[np.ndarray], sample_rate: int,
                ids: list[str] | None = None) -> SetMetricResult: ...
