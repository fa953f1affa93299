"""Reconstruction: items -> source -> scorer -> item results, with cached scores.

:func:`reconstruct` is the only loop that turns a source's items into scores; ``run`` calls it
once per codec, ``eval`` once for its codec or folder, the steps study once per (steps, seed),
scripts as they need. Item-metric values are cached per item under everything they depend on:
the source's identity for the item (codec identity + chunk policy, or the decoded file's hash),
the reference's content hash, the segment policy, the alignment policy version, the metric's
name, options, implementation and version, and the versions of the numerical packages. A
cached item is not streamed again unless a set metric needs its audio.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm.auto import tqdm

from benchmark.cache import ArtifactCache, cache_key
from benchmark.data.audio import AudioError, file_hash, missing_file_error
from benchmark.data.dataset import Item
from benchmark.engine.score import ItemResult, Scorer, describe
from benchmark.engine.sources import CodingStats, Source
from benchmark.metrics import ItemMetric, SetMetric, SetMetricResult
from benchmark.metrics.align import POLICY_VERSION, AlignFacts

_PACKAGES = ("numpy", "scipy", "soxr", "soundfile")
#: Items a codec source prepares (codes in batches) ahead of scoring them: bounds the decoded
#: audio held in memory (short items only: at most this many one-chunk items).
PREPARE_WINDOW = 64


def package_versions(names: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the numerical packages every score depends on (plus ``names``)."""
    out = {}
    for name in _PACKAGES + tuple(names):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def metric_identity(metric: ItemMetric | SetMetric, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a cached value of ``metric`` depends on besides its inputs."""
    card = metric.card
    return {"name": card.name, "version": card.version, "implementation": card.implementation,
            "convention": card.convention, "options": options or {},
            "packages": package_versions(tuple(getattr(metric, "packages", ())))}


class ContentHashes:
    """Content hash per item (the item's own, or the file's SHA-256, computed once)."""

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def __call__(self, item: Item) -> str:
        if item.content_hash:
            return item.content_hash
        key = str(item.path)
        if key not in self._memo:
            if not item.path.exists():
                raise missing_file_error(item.path)
            try:
                self._memo[key] = file_hash(item.path)
            except OSError as exc:
                raise AudioError(f"{item.path}: cannot read file ({exc}); check that it exists and is "
                                 "readable") from exc
        return self._memo[key]


@dataclass
class Outcome:
    """What one source produced: item results (in item order) and set-metric accumulators."""

    label: str
    source: Source
    results: list[ItemResult]
    scorer: Scorer
    set_results: dict[str, SetMetricResult] = field(default_factory=dict)
    set_errors: dict[str, str] = field(default_factory=dict)

    def scored(self) -> set[str]:
        return {r.item.id for r in self.results if r.ok}

    def coding(self) -> CodingStats:
        total = CodingStats()
        for r in self.results:
            if r.coding is not None:
                for name in ("encode_seconds", "decode_seconds", "codec_seconds", "chunks", "cached_chunks", "bits"):
                    setattr(total, name, getattr(total, name) + getattr(r.coding, name))
        return total

    def alignment(self) -> dict[str, float]:
        """Seconds padded (missing audio scored as silence) and cut, summed over scored items."""
        padded = cut = 0.0
        for r in self.results:
            if r.facts is not None and r.sample_rate:
                padded += r.facts.padded / r.sample_rate
                cut += r.facts.cut / r.sample_rate
        return {"padded_seconds": padded, "cut_seconds": cut}


def score_key(source: Source, item: Item, content_hash: str, segment_seconds: float | None,
              max_seconds: float | None) -> tuple:
    """What every cached score of ``item`` through ``source`` depends on (the metric is added)."""
    return ("item-score", POLICY_VERSION, source.item_identity(item), content_hash, segment_seconds, max_seconds)


def is_scored(cache: ArtifactCache, source: Source, item: Item, content_hash: str, segment_seconds: float | None,
              max_seconds: float | None = None) -> bool:
    """Whether ``item`` has a cached score record for ``source`` (used by dry runs)."""
    return cache.has_value("scores", cache_key(*score_key(source, item, content_hash, segment_seconds, max_seconds),
                                               "record"))


def reconstruct(source: Source, items: list[Item], metrics: list[ItemMetric | SetMetric], *,
                segment_seconds: float | None, max_seconds: float | None = None,
                cache: ArtifactCache | None = None, metric_options: dict[str, dict] | None = None,
                hashes: ContentHashes | None = None, progress: bool = False,
                log: Callable[[str], None] | None = None) -> Outcome:
    """Score every item of ``items`` through ``source`` (module docstring)."""
    metric_options = metric_options or {}
    hashes = hashes or ContentHashes()
    scorer = Scorer(metrics, log=log)
    item_metrics = scorer.item_metrics
    identities = {m.card.name: metric_identity(m, metric_options.get(m.card.name)) for m in item_metrics}
    pending_keys: dict[str, tuple[str | None, dict[str, str]]] = {}
    direct: list[ItemResult] = []
    to_stream: list[tuple[Item, dict]] = []
    for item in items:
        try:
            base = score_key(source, item, hashes(item), segment_seconds, max_seconds)
        except Exception as exc:  # unreadable file: an error row, never a silent skip
            direct.append(ItemResult(item=item, error=f"{item.id}: {describe(exc)}"))
            continue
        record_key = cache_key(*base, "record")
        metric_keys = {name: cache_key(*base, ident) for name, ident in identities.items()}
        cached = {}
        if cache is not None:
            for name, key in metric_keys.items():
                value = cache.load_value("scores", key)
                if value is not None:
                    cached[name] = value
        record = cache.load_value("scores", record_key) if cache is not None else None
        if record is not None and len(cached) == len(item_metrics) and not scorer.set_metrics:
            direct.append(_from_cache(item, cached, record))
            continue
        # what is cached stays as it is: only the missing record and values are written
        pending_keys[item.id] = (None if record is not None else record_key,
                                 {n: k for n, k in metric_keys.items() if n not in cached})
        to_stream.append((item, cached))
    prepare = getattr(source, "prepare", None)  # codec sources code short items in batches
    bar = tqdm(total=len(items), initial=len(direct), desc=f"score {source.label}", disable=not progress, unit="item")
    for start in range(0, len(to_stream), PREPARE_WINDOW):
        window = to_stream[start:start + PREPARE_WINDOW]
        if prepare is not None:
            prepare([item for item, _ in window], segment_seconds, max_seconds)
        for item, cached in window:
            scorer.score(source.stream(item, segment_seconds, max_seconds), cached=cached)
            bar.update(1)
    bar.close()
    results = {r.item.id: r for r in scorer.finish()}
    results.update({r.item.id: r for r in direct})
    if cache is not None:
        for item_id, (record_key, keys) in pending_keys.items():
            result = results[item_id]
            if not result.ok:
                continue
            if record_key is not None:
                cache.save_value("scores", record_key, _record(result))
            for name, key in keys.items():
                if result.status.get(name) != "error":
                    cache.save_value("scores", key, {"value": None if math.isnan(result.values[name])
                                                     else result.values[name],
                                                     "status": result.status[name],
                                                     "message": result.messages.get(name, "")})
    ordered = [results[item.id] for item in items if item.id in results]
    return Outcome(label=source.label, source=source, results=ordered, scorer=scorer)


def _record(result: ItemResult) -> dict[str, Any]:
    coding = result.coding or CodingStats()
    return {"segments": result.segments, "seconds": result.seconds, "sample_rate": result.sample_rate,
            "channels": result.channels, "facts": result.facts.as_dict() if result.facts else None,
            "coding": vars(coding), "notes": result.notes, "segment_rows": result.segment_rows}


def _from_cache(item: Item, cached: dict[str, dict], record: dict[str, Any]) -> ItemResult:
    result = ItemResult(item=item, segments=record["segments"], seconds=record["seconds"],
                        sample_rate=record["sample_rate"], channels=record["channels"],
                        facts=AlignFacts(**record["facts"]) if record.get("facts") else None,
                        coding=CodingStats(**record["coding"]), notes=list(record.get("notes", [])),
                        segment_rows=list(record.get("segment_rows", [])))
    for name, entry in cached.items():
        result.values[name] = float("nan") if entry.get("value") is None else float(entry["value"])
        result.status[name] = entry.get("status", "ok")
        result.messages[name] = entry.get("message", "")
    return result


def set_metrics(outcomes: list[Outcome], common: list[str], log: Callable[[str], None] | None = None) -> None:
    """Compute every set metric of every outcome over the same ``common`` items."""
    for outcome in outcomes:
        for name, accumulator in outcome.scorer.accumulators.items():
            try:
                outcome.set_results[name] = accumulator.compute(common)
            except Exception as exc:
                outcome.set_errors[name] = describe(exc)
                if log is not None:
                    log(f"[{outcome.label}] {name} not computed: {describe(exc)}")
