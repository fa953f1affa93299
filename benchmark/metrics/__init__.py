"""Reconstruction metrics: a registry of name -> ``"module:Class"``, imported lazily.

Two kinds (see ``benchmark.metrics.base``):
- item metrics compare one reference with one estimate (SI-SDR, ViSQOL, spectral distances);
- set metrics compare two sets of clips (FAD, FAD-inf, KAD: distances between embedding
  distributions, :class:`EmbeddingSetMetric`). ``fad``/``kad`` take any backbone
  (``metric_options``); ``fad_vggish``, ``kad_vggish``, ``fad_clap``, ``kad_clap``
  (:mod:`benchmark.metrics.variants`) fix a paper-standard backbone and per-clip pooling, so
  that one run can hold FAD and KAD over both.

Each metric class declares which settings must match for two of its values to be compared;
:func:`comparability_problems` asks the class registered under a name (imported, not built).
"""

from __future__ import annotations

from benchmark.lazy import resolve
from benchmark.metrics.base import (
    EmbeddingSetMetric,
    ItemMetric,
    Metric,
    MetricCard,
    MetricError,
    SetMetric,
    SetMetricResult,
    comparability_problems,
    format_warning,
)

METRICS: dict[str, str] = {
    "si_sdr": "benchmark.metrics.sisdr:SISDR",
    "visqol": "benchmark.metrics.visqol:ViSQOL",
    "fad": "benchmark.metrics.fad:FAD",
    "fad_inf": "benchmark.metrics.fad:FADInf",
    "kad": "benchmark.metrics.kad:KAD",
    "fad_vggish": "benchmark.metrics.variants:FADVGGish",
    "kad_vggish": "benchmark.metrics.variants:KADVGGish",
    "fad_clap": "benchmark.metrics.variants:FADClap",
    "kad_clap": "benchmark.metrics.variants:KADClap",
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
    "EmbeddingSetMetric",
    "ItemMetric",
    "Metric",
    "MetricCard",
    "MetricError",
    "SetMetric",
    "SetMetricResult",
    "available_metrics",
    "comparability_problems",
    "create_metric",
    "format_warning",
]
