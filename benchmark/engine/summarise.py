"""From item results to stored rows: per-item rows, error rows, and the summaries of a table.

Failures are visible and never help: every codec is summarised on the items that **all** the
compared sources scored (``failure_policy="common"``, the default), with ``n`` (items in the
mean) and ``n_failed`` (items this source failed) in every row; or, with
``failure_policy="worst"``, on every item that some source scored, a failed item counting as
the worst value any source got on it. Set metrics (FAD) are computed on the common items in
both cases, against the same reference set for every source. A source that scored no item at
all is left out of the intersection (it gets ``n = 0``), so one broken codec does not empty
everybody's table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmark.engine.reconstruct import Outcome
from benchmark.engine.segments import segment_settings
from benchmark.metrics import ItemMetric
from benchmark.metrics.align import POLICY, POLICY_VERSION

FAILURE_POLICIES = ("common", "worst")


def bootstrap_ci(values: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN for fewer than 2 values)."""
    if values.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def common_items(outcomes: list[Outcome], items: list[str]) -> list[str]:
    """Items (in ``items`` order) scored by every outcome that scored anything."""
    active = [o.scored() for o in outcomes]
    active = [s for s in active if s]
    return [i for i in items if all(i in s for s in active)]


def metric_values(outcomes: list[Outcome], metric: ItemMetric, items: list[str], policy: str
                  ) -> tuple[list[str], dict[str, np.ndarray]]:
    """The items a metric is summarised on and each outcome's values on them (NaN = undefined)."""
    if policy not in FAILURE_POLICIES:
        raise ValueError(f"failure_policy {policy!r}: choose one of {FAILURE_POLICIES}")
    name, higher = metric.card.name, metric.card.higher_is_better
    table = {o.label: {r.item.id: (r.values.get(name, float("nan")) if r.ok and r.status.get(name) != "error"
                                   else None) for r in o.results} for o in outcomes}
    if policy == "common":
        active = [t for t in table.values() if any(v is not None for v in t.values())]
        chosen = [i for i in items if all(t.get(i) is not None for t in active)]
        return chosen, {label: np.array([t.get(i) if t.get(i) is not None else np.nan for i in chosen], float)
                        for label, t in table.items()}
    chosen = [i for i in items if any(t.get(i) is not None for t in table.values())]
    worst = {}
    for i in chosen:
        scored = [t[i] for t in table.values() if t.get(i) is not None and math.isfinite(t[i])]
        worst[i] = (min(scored) if higher else max(scored)) if scored else float("nan")
    return chosen, {label: np.array([t[i] if t.get(i) is not None else worst[i] for i in chosen], float)
                    for label, t in table.items()}


def item_rows(outcome: Outcome, base: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict]]:
    """(item rows, segment rows, error rows) of one outcome; ``base`` holds the codec columns."""
    rows, segments, errors = [], [], []
    for r in outcome.results:
        common = dict(base, split=r.item.split, item=r.item.id)
        if not r.ok:
            errors.append({"codec_label": outcome.label, "stage": "reconstruct", "item": r.item.id,
                           "path": str(r.item.path), "error": r.error})
            rows.append(dict(common, metric="*", value=float("nan"), status="error", note=r.error))
            continue
        facts = r.facts.as_dict() if r.facts else {}
        notes = (r.facts.notes(r.sample_rate) if r.facts and r.sample_rate else []) + list(r.notes)
        for metric, value in r.values.items():
            status = r.status.get(metric, "ok")
            message = "; ".join(filter(None, [r.messages.get(metric, "")] + notes))
            rows.append(dict(common, metric=metric, value=value, status=status, note=message,
                             segments=r.segments, seconds=round(r.seconds, 4), sample_rate=r.sample_rate,
                             padded_samples=facts.get("padded", 0), cut_samples=facts.get("cut", 0)))
            if status == "error":
                errors.append({"codec_label": outcome.label, "stage": f"metric:{metric}", "item": r.item.id,
                               "path": str(r.item.path), "error": r.messages.get(metric, "")})
        for seg in r.segment_rows:
            segments.append(dict(common, **seg))
    return rows, segments, errors


def summary_rows(outcomes: list[Outcome], metrics: list, items: list[str], *, policy: str = "common",
                 seed: int = 0, segment_seconds: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per outcome label: the summary rows of every metric (item metrics over the chosen items,
    set metrics from ``outcome.set_results``)."""
    out: dict[str, list[dict[str, Any]]] = {o.label: [] for o in outcomes}
    n_active = sum(1 for o in outcomes if o.scored())
    shared = {"failure_policy": policy, "alignment": POLICY, "alignment_version": POLICY_VERSION,
              **segment_settings(segment_seconds)}
    for metric in metrics:
        card = metric.card
        columns = {"metric": card.name, "unit": card.unit, "higher_is_better": card.higher_is_better,
                   "convention": card.convention, "implementation": card.implementation,
                   "metric_version": card.version}
        if isinstance(metric, ItemMetric):
            chosen, values = metric_values(outcomes, metric, items, policy)
            for o in outcomes:
                v = values[o.label]
                finite = v[np.isfinite(v)]
                failed = sum(1 for r in o.results if not r.ok or r.status.get(card.name) == "error")
                low, high = bootstrap_ci(finite, seed=seed)
                out[o.label].append(dict(
                    columns, value=float(finite.mean()) if finite.size else float("nan"),
                    std=float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                    ci_low=low, ci_high=high, n=int(finite.size), n_failed=failed,
                    settings=dict(shared, items=f"{policy} items of {n_active} sources", n_items=len(chosen),
                                  n_undefined=int(v.size - finite.size), **o.source.settings(),
                                  **dict(getattr(metric, "settings", {}) or {}))))
        else:
            for o in outcomes:
                failed = sum(1 for r in o.results if not r.ok)
                result = o.set_results.get(card.name)
                if result is None:
                    continue
                settings = dict(result.settings, **shared, **o.source.settings())
                warnings = list(getattr(result, "warnings", []) or [])
                if warnings:
                    settings["warnings"] = warnings
                out[o.label].append(dict(columns, value=result.value, n=settings.get("n_estimate_clips"),
                                         n_failed=failed, settings=settings))
    return out
