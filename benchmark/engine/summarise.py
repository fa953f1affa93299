"""From item results to stored rows: per-item rows, error rows, and the summaries of a table.

Failures are visible and never help: every codec is summarised on the items that **all** the
compared sources scored (``failure_policy="common"``, the default), with ``n`` (items in the
mean) and ``n_failed`` (items this source failed) in every row; or, with
``failure_policy="worst"``, on every item that some source scored, a failed item counting as
the worst value any source got on it. Set metrics (FAD) are computed on the common items in
both cases, against the same reference set for every source. A source that scored no item at
all is left out of the intersection (it gets ``n = 0``), so one broken codec does not empty
everybody's table.

A learned codec trained with several seeds is a **group** of replicates (one outcome per
training seed, all on the same items): :func:`group_rows` summarises it as one row, the mean
over seeds of the per-seed means, with a crossed bootstrap interval (:func:`crossed_bootstrap`)
that covers both the training seed and the test items; each replicate keeps its own row.
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


def seed_effects(seed_means: np.ndarray) -> np.ndarray:
    """Centred per-seed values, inflated by ``sqrt(S / (S - 1))`` so that resampling them has the
    unbiased seed variance (the plain bootstrap of ``S`` values has ``(S - 1) / S`` of it: 2/3 at
    3 seeds)."""
    m = np.asarray(seed_means, dtype=np.float64)
    if m.size < 2:
        return np.zeros(m.size)
    return (m - m.mean()) * math.sqrt(m.size / (m.size - 1))


def crossed_bootstrap(cells: np.ndarray, seed: int = 0, n_boot: int = 1000) -> np.ndarray:
    """``[n_boot]`` bootstrap replicates of the grand mean of a seed x item table ``cells [S, n]``.

    Seeds and items are crossed random factors (every training seed scores the same items), so a
    replicate resamples both: the mean over resampled items of the seed-averaged item values, plus
    the mean of ``S`` resampled seed effects (:func:`seed_effects`). With one seed this is the
    item bootstrap of :func:`bootstrap_ci` (same draws for the same ``seed``). Its variance is
    ``var_i / n + var_s / S``: what a new test set *and* a new set of training runs would move.
    """
    c = np.atleast_2d(np.asarray(cells, dtype=np.float64))
    n_seeds, n = c.shape
    rng = np.random.default_rng(seed)
    reps = c.mean(axis=0)[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    if n_seeds > 1:
        reps = reps + seed_effects(c.mean(axis=1))[rng.integers(0, n_seeds, size=(n_boot, n_seeds))].mean(axis=1)
    return reps


def crossed_ci(cells: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of :func:`crossed_bootstrap` (NaN for fewer than 2 items)."""
    c = np.atleast_2d(np.asarray(cells, dtype=np.float64))
    if c.shape[1] < 2:
        return float("nan"), float("nan")
    reps = crossed_bootstrap(c, seed, n_boot)
    alpha = (1 - level) / 2
    return float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


def ci_covers(n_seeds: int) -> str:
    """What a summary interval covers, in words."""
    if n_seeds > 1:
        return f"training seed x item (crossed bootstrap over {n_seeds} training runs and the test items)"
    return "test items (one run: the interval does not cover training seeds)"


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
                             padded_samples=facts.get("padded", 0), cut_samples=facts.get("cut", 0),
                             kbps=r.coding.kbps if r.coding is not None else None))
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
    for rows in out.values():
        for row in rows:
            row["settings"].setdefault("ci_covers", ci_covers(1))
    return out


def group_rows(outcomes: list[Outcome], metrics: list, items: list[str], members: list[str],
               replicate_rows: dict[str, list[dict[str, Any]]], *, policy: str = "common", seed: int = 0,
               seeds: list[Any] | None = None) -> list[dict[str, Any]]:
    """The summary rows of one group of training-seed replicates (outcome labels ``members``).

    Item metrics: the mean over seeds of each seed's mean on the items every replicate scored
    (``value``), its crossed bootstrap interval, ``std`` = the item SD of the seed-averaged values
    and ``settings["seed_std"]`` = the SD of the per-seed means. Set metrics (FAD...): the mean over
    seeds, with their SD and values. ``replicate_rows``: :func:`summary_rows` of the replicates."""
    first = replicate_rows[members[0]]
    rows = []
    for metric in metrics:
        name = metric.card.name
        template = next((r for r in first if r["metric"] == name), None)
        if template is None:
            continue
        per_seed = [next((r for r in replicate_rows[m] if r["metric"] == name), None) for m in members]
        failed = sum(r["n_failed"] for r in per_seed if r is not None)
        settings = dict(template["settings"], seeds=list(seeds or range(len(members))), replicates=list(members),
                        ci_covers=ci_covers(len(members)))
        if isinstance(metric, ItemMetric):
            _, values = metric_values(outcomes, metric, items, policy)
            cells = np.stack([values[m] for m in members])
            cells = cells[:, np.isfinite(cells).all(axis=0)]
            seed_means = cells.mean(axis=1) if cells.shape[1] else np.full(len(members), np.nan)
            low, high = crossed_ci(cells, seed=seed)
            item_means = cells.mean(axis=0)
            settings.update(seed_std=float(seed_means.std(ddof=1)) if len(members) > 1 else float("nan"),
                            seed_values=[float(v) for v in seed_means])
            rows.append(dict(template, value=float(cells.mean()) if cells.size else float("nan"),
                             std=float(item_means.std(ddof=1)) if item_means.size > 1 else float("nan"),
                             ci_low=low, ci_high=high, n=int(cells.shape[1]), n_failed=failed, settings=settings))
        else:
            vals = np.array([r["value"] if r is not None else np.nan for r in per_seed], dtype=np.float64)
            finite = vals[np.isfinite(vals)]
            settings.update(seed_std=float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                            seed_values=[float(v) for v in vals])
            rows.append(dict(template, value=float(finite.mean()) if finite.size else float("nan"),
                             n_failed=failed, settings=settings))
    return rows
