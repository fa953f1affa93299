"""Quality versus decoding steps, and seed-to-seed variance, of stochastic decoders.

A stochastic decoder (Music2Latent's consistency sampler, the diffusion-decoder baseline)
turns the same latents into different audio for different noise seeds, and trades quality for
network evaluations. :func:`steps_study` measures both on dataset items: every codec spec is
decoded at every number of ``steps`` with every ``seed`` (latents are computed once per set
of weights), and every item metric is scored through the engine, exactly as ``run`` and ``eval``
score (:func:`benchmark.engine.reconstruct.reconstruct`: the same source, alignment policy,
segments and scorer; this module only builds the grid and summarises it).
Deterministic codecs in the list are decoded once and reported with ``steps = None`` as flat
references. Single-pass stochastic decoders (no ``steps`` option, e.g. SNAC, whose decoder
injects seeded noise) are decoded once per seed, with ``steps = None``: they contribute a
flat reference line and their seed-to-seed variance.

Result rows (one per codec x steps x seed x item x metric)::

    {"codec": label, "codec_name", "codec_id", "weights_id", "stochastic", "steps", "nfe",
     "seed", "item", "split", "metric", "unit", "higher_is_better", "value"}

``nfe`` is ``info.decode_steps``: network evaluations per decode (Heun: ``2 steps - 1``).
:func:`summarize_steps_study` aggregates them per (codec, steps, metric): the mean over items
and seeds, ``seed_std`` (standard deviation across seeds of the per-seed item mean: how much a
reported number moves with the decoding seed) and ``item_seed_std`` (per-item standard
deviation across seeds, averaged over items: how different two decodings of one item score).
The report draws the summary from the stored rows (:func:`benchmark.report.steps_figure`).
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from benchmark.codecs.registry import create_codec, resolve_factory
from benchmark.data.dataset import Item
from benchmark.engine.reconstruct import reconstruct
from benchmark.engine.segments import DEFAULT_SEGMENT_SECONDS
from benchmark.engine.sources import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, CodecSource
from benchmark.metrics import ItemMetric, create_metric

__all__ = ["steps_study", "summarize_steps_study", "StudySpec"]

DEFAULT_STEPS = (1, 2, 4, 8)
DEFAULT_SEEDS = (0, 1, 2)


class StudySpec:
    """A codec to study: registry name or import path, constructor options, display label.

    Built from a :class:`benchmark.config.CodecSpec`, a mapping with ``name`` (and optional
    ``options``/``label``) or a plain name. ``steps`` and ``seed`` in ``options`` are replaced
    by the study's values.
    """

    def __init__(self, name: str, options: Mapping[str, Any] | None = None,
                 label: str | None = None) -> None:
        self.name = name
        self.options = {k: v for k, v in dict(options or {}).items() if k not in ("steps", "seed")}
        self.label = label or name

    @classmethod
    def of(cls, spec: Any) -> "StudySpec":
        if isinstance(spec, StudySpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"name", "options", "label", "train"}
            if "name" not in spec or unknown:
                raise ValueError(f"steps_study: a codec spec needs 'name' (and optionally "
                                 f"'options', 'label'), got {dict(spec)}")
            return cls(spec["name"], spec.get("options"), spec.get("label"))
        if hasattr(spec, "name") and hasattr(spec, "options"):  # benchmark.config.CodecSpec
            return cls(spec.name, spec.options, getattr(spec, "label", None))
        raise TypeError(f"steps_study: cannot read a codec spec from {spec!r}")


def _metric_objects(metrics: Iterable[str | ItemMetric]) -> list[ItemMetric]:
    out = []
    for m in metrics:
        metric = create_metric(m) if isinstance(m, str) else m
        if not isinstance(metric, ItemMetric):
            raise ValueError(f"steps_study: {getattr(metric, 'card', metric)!r} is a set metric; "
                             "only item metrics (si_sdr, visqol, mel_distance...) are supported")
        out.append(metric)
    if not out:
        raise ValueError("steps_study: give at least one metric")
    return out


def steps_study(codec_specs: Sequence[Any], items: Sequence[Item],
                steps: Sequence[int] = DEFAULT_STEPS, seeds: Sequence[int] = DEFAULT_SEEDS,
                metrics: Iterable[str | ItemMetric] = ("si_sdr",), device: str | None = None,
                progress: bool = False, log: Callable[[str], None] | None = None,
                segment_seconds: float | None = DEFAULT_SEGMENT_SECONDS,
                chunk_seconds: float = DEFAULT_CHUNK_SECONDS, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
                precision: str = "fp32") -> list[dict[str, Any]]:
    """Score every (codec, steps, seed) decoding of ``items``.

    Parameters
    ----------
    codec_specs: codecs (see :class:`StudySpec`); stochastic ones must accept a ``seed``
        option and, if iterative, a ``steps`` option (``music2latent``, ``diffusion_ae``);
        stochastic ones without ``steps`` are decoded once per seed (``steps = None``);
        deterministic ones are decoded once, with ``steps = seed = None`` in their rows.
    items: dataset items (any rate, any channel count).
    steps, seeds: decoding steps and noise seeds to try.
    metrics: item-metric names (``si_sdr``, ``mel_distance``, ``visqol``...) or objects.
    device: passed to codecs that accept it (None: their default).
    segment_seconds, chunk_seconds, overlap_seconds: the engine's segment and chunk policy
        (the same defaults as ``run`` and ``eval``).

    Returns
    -------
    A list of row dicts (module docstring).
    """
    steps = tuple(int(s) for s in steps)
    seeds = tuple(int(s) for s in seeds)
    if not steps or min(steps) < 1 or not seeds:
        raise ValueError(f"steps_study: need steps >= 1 and at least one seed, got {steps}, {seeds}")
    metric_objs = _metric_objects(metrics)
    specs = [StudySpec.of(s) for s in codec_specs]
    if len({s.label for s in specs}) != len(specs):
        raise ValueError(f"steps_study: codec labels must be unique, got {[s.label for s in specs]}")
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc="steps study", unit="decode")
    for spec in specs:
        options = dict(spec.options)
        if device is not None:
            options.setdefault("device", device)
        first = create_codec(spec.name, **options)
        if not first.info.stochastic:
            grid: list[tuple[int | None, int | None]] = [(None, None)]
        elif _accepts_steps(spec.name):
            grid = [(s, seed) for s in steps for seed in seeds]
        else:  # a single-pass stochastic decoder: only the noise seed varies
            grid = [(None, seed) for seed in seeds]
        latents: dict = {}  # encoding does not depend on the decoding steps or seed
        for n_steps, seed in grid:
            extra = {} if n_steps is None else {"steps": n_steps}
            codec = first if seed is None else create_codec(spec.name, **options, **extra, seed=seed)
            if log is not None:
                log(f"[steps study] {spec.label}: steps={n_steps} seed={seed} (nfe={codec.info.decode_steps})")
            source = CodecSource(codec, spec.label, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds,
                                 device=options.get("device", "cpu"), latent_memo=latents, precision=precision)
            outcome = reconstruct(source, list(items), metric_objs, segment_seconds=segment_seconds)
            for result in outcome.results:
                if not result.ok:
                    raise RuntimeError(f"steps study: {spec.label} (steps={n_steps}, seed={seed}) failed on "
                                       f"{result.error}")
                for m in metric_objs:
                    rows.append({
                        "codec": spec.label, "codec_name": spec.name, "codec_id": codec.identity,
                        "weights_id": codec.info.weights_id, "stochastic": codec.info.stochastic,
                        "steps": n_steps, "nfe": codec.info.decode_steps, "seed": seed,
                        "item": result.item.id, "split": result.item.split, "metric": m.card.name,
                        "unit": m.card.unit, "higher_is_better": m.card.higher_is_better,
                        "value": result.values[m.card.name]})
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def _accepts_steps(name: str) -> bool:
    """Whether the codec ``name`` takes a ``steps`` option (an iterative decoder)."""
    try:
        params = inspect.signature(resolve_factory(name)).parameters
    except (TypeError, ValueError):
        return True  # cannot tell: keep the iterative protocol
    return "steps" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def summarize_steps_study(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate :func:`steps_study` rows per (codec, steps, metric).

    Returns rows ``{"codec", "steps", "nfe", "metric", "unit", "higher_is_better", "n_items",
    "n_seeds", "mean", "seed_std", "item_seed_std"}``; NaN values (undefined metrics) are
    left out, the standard deviations use ``ddof = 1`` (NaN with one seed).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    order: list[tuple] = []
    for row in rows:
        key = (row["codec"], row["steps"], row["metric"])
        if key not in groups:
            order.append(key)
        groups[key].append(row)
    out = []
    for key in order:
        group = [r for r in groups[key] if not math.isnan(r["value"])]
        if not group:
            continue
        by_seed: dict[Any, list[float]] = defaultdict(list)
        by_item: dict[Any, list[float]] = defaultdict(list)
        for r in group:
            by_seed[r["seed"]].append(r["value"])
            by_item[r["item"]].append(r["value"])
        seed_means = [float(np.mean(v)) for v in by_seed.values()]
        item_stds = [float(np.std(v, ddof=1)) for v in by_item.values() if len(v) > 1]
        first = group[0]
        out.append({
            "codec": key[0], "steps": key[1], "nfe": first["nfe"], "metric": key[2],
            "unit": first["unit"], "higher_is_better": first["higher_is_better"],
            "n_items": len(by_item), "n_seeds": len(by_seed),
            "mean": float(np.mean([r["value"] for r in group])),
            "seed_std": float(np.std(seed_means, ddof=1)) if len(seed_means) > 1 else math.nan,
            "item_seed_std": float(np.mean(item_stds)) if item_stds else math.nan,
        })
    return out
