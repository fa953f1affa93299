"""Reconstruction metrics: a registry of name -> ``"module:Class"``, imported lazily.

Two kinds (see ``benchmark.metrics.base``):
- item metrics compare one reference with one estimate (SI-SDR, ViSQOL, spectral distances);
- set metrics compare two sets of clips (FAD).
"""

from __future__ import annotations


from benchmark.lazy import resolve
from benchmark.metrics.base import (
    ItemMetric,
    MetricCard,
    MetricError,
    SetMetric,
    SetMetricResult,
)

METRICS: dict[str, str] = {
    "si_sdr": "benchmark.metrics.sisdr:SISDR",
    "visqol": "benchmark.metrics.visqol:ViSQOL",
    "fad": "benchmark.metrics.fad:FAD",
    "mel_distance": "benchmark.metrics.spectral:MelDistance",
    "mrstft_distance": "benchmark.metrics.spectral:MRSTFTDistance",
}


def available_metrics() -> list[str]:
    return sorted(METRICS)


def create_metric(name: str, **kwargs) -> ItemMetric | SetMetric:
    """Build the metric registered as ``name`` (or given as ``"module:Class"``)."""
    return resolve(METRICS, name, "metric", MetricError)(**kwargs)

__all__ = [
    "METRICS",
    "ItemMetric",
    "MetricCard",
    "MetricError",
    "SetMetric",
    "SetMetricResult",
    "available_metrics",
    "create_metric",
]
