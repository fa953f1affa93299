"""The scorer: the one place where pieces become numbers.

:class:`Scorer` consumes the :class:`~benchmark.engine.sources.ItemStream` s of one source
(one codec, or one folder of decoded files), checks every channel of every piece
(:func:`benchmark.metrics.align.check_pair`), scores the item metrics in batches (a metric with
its own ``batch``, e.g. ViSQOL's process pool, gets groups of pairs from several items) and
feeds the set metrics as accumulators (:class:`EmbeddingAccumulator` for FAD-like metrics that
embed clip by clip, :class:`AudioAccumulator` for the others). An item's value per metric is the
mean over channels of each segment, then the length-weighted mean over segments
(:mod:`benchmark.engine.segments`). Any exception while an item streams (unreadable file, codec
crash, NaN, an estimate shorter than half the reference) makes the item an error row; its
partial values are discarded and it is left out of every set metric.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from benchmark.data.audio import resample
from benchmark.data.dataset import Item
from benchmark.engine.sources import CodingStats, ItemStream
from benchmark.metrics import ItemMetric, SetMetric, SetMetricResult
from benchmark.metrics.align import AlignFacts, check_pair


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for error rows."""
    return f"{type(exc).__name__}: {exc}"


@dataclass
class ItemResult:
    """Everything scored for one item by one source.

    values/status/messages: per item metric: the value (NaN if undefined), ``ok``/``nan``/
    ``error``, and why (warnings, NaN reason, error). ``error``: the item failed as a whole.
    """

    item: Item
    values: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    segments: int = 0
    seconds: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    facts: AlignFacts | None = None
    coding: CodingStats | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    segment_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Job:
    key: int
    segment: int
    channel: int
    reference: np.ndarray
    estimate: np.ndarray
    sample_rate: int
    label: str


#: Metric batches out at a time (:meth:`Scorer._flush`): the next batch is queued while the
#: pool scores one, and the audio held waiting for scores stays bounded.
IN_FLIGHT = 2


class EmbeddingAccumulator:
    """A set metric fed clip by clip (``embed_clip`` / ``from_embeddings`` / ``hash_update``):
    each segment's mono reference and estimate are embedded as they stream by (only the
    embeddings are kept); an item's segments are pooled into one clip of the set."""

    def __init__(self, metric: SetMetric) -> None:
        self.metric = metric
        self.items: dict[str, dict[str, Any]] = {}
        self._open: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}  # item -> why the set metric could not take it

    def update(self, item: str, reference: np.ndarray, estimate: np.ndarray, sample_rate: int, start: int,
               label: str) -> None:
        clip_seconds = getattr(self.metric, "clip_seconds", None)
        if clip_seconds is not None:  # clip_seconds crops the item, not each segment
            keep = int(round(clip_seconds * sample_rate)) - start
            if keep <= 0:
                return
            reference, estimate = reference[:keep], estimate[:keep]
        state = self._open.setdefault(item, {"ref": [], "est": [], "ref_s": 0.0, "est_s": 0.0,
                                             "hash": hashlib.sha256(), "segments": 0})
        state["ref"].append(self.metric.embed_clip(reference, sample_rate, f"{label} (reference)"))
        state["est"].append(self.metric.embed_clip(estimate, sample_rate, f"{label} (estimate)"))
        state["ref_s"] += reference.size / sample_rate
        state["est_s"] += estimate.size / sample_rate
        state["segments"] += 1
        self.metric.hash_update(state["hash"], reference, sample_rate)

    def commit(self, item: str) -> None:
        state = self._open.pop(item, None)
        if state is not None:
            state["hash"] = state["hash"].hexdigest()
            self.items[item] = state

    def discard(self, item: str) -> None:
        self._open.pop(item, None)

    def fail(self, item: str, message: str) -> None:
        """``item`` could not be taken (:func:`check_complete` then refuses sets holding it)."""
        self.discard(item)
        self.failed[item] = message

    def compute(self, items: list[str]) -> SetMetricResult:
        """The metric over ``items`` (those not accumulated are left out). The reference hash
        covers the reference content of exactly those items, whatever their ids and order."""
        check_complete(self, items)
        chosen = [i for i in items if i in self.items]
        if len(chosen) < 2:
            raise ValueError(f"{self.metric.card.name}: needs at least 2 scored items, got {len(chosen)}")
        states = [self.items[i] for i in chosen]
        hasher = hashlib.sha256()
        for digest in sorted(s["hash"] for s in states):
            hasher.update(digest.encode())
        pool = lambda parts: np.concatenate(parts) if len(parts) > 1 else parts[0]  # noqa: E731
        result = self.metric.from_embeddings([pool(s["ref"]) for s in states], [pool(s["est"]) for s in states],
                                             chosen, reference_seconds=[s["ref_s"] for s in states],
                                             estimate_seconds=[s["est_s"] for s in states],
                                             reference_hash=hasher.hexdigest()[:16])
        result.settings["n_segments"] = int(sum(s["segments"] for s in states))
        return result


class AudioAccumulator:
    """A set metric that needs the clips themselves: mono items kept (channel means)."""

    def __init__(self, metric: SetMetric) -> None:
        self.metric = metric
        self.items: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self._open: dict[str, list[tuple[np.ndarray, np.ndarray, int]]] = {}
        self.failed: dict[str, str] = {}  # item -> why the set metric could not take it

    def update(self, item: str, reference: np.ndarray, estimate: np.ndarray, sample_rate: int, start: int,
               label: str) -> None:
        self._open.setdefault(item, []).append((reference, estimate, sample_rate))

    def commit(self, item: str) -> None:
        parts = self._open.pop(item, None)
        if parts:
            self.items[item] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                parts[0][2])

    def discard(self, item: str) -> None:
        self._open.pop(item, None)

    def fail(self, item: str, message: str) -> None:
        """``item`` could not be taken (:func:`check_complete` then refuses sets holding it)."""
        self.discard(item)
        self.failed[item] = message

    def compute(self, items: list[str]) -> SetMetricResult:
        check_complete(self, items)
        chosen = [i for i in items if i in self.items]
        if len(chosen) < 2:
            raise ValueError(f"{self.metric.card.name}: needs at least 2 scored items, got {len(chosen)}")
        rate = max(self.items[i][2] for i in chosen)
        refs = [resample(self.items[i][0][None], self.items[i][2], rate)[0] for i in chosen]
        ests = [resample(self.items[i][1][None], self.items[i][2], rate)[0] for i in chosen]
        return self.metric.compute(refs, ests, rate, ids=chosen)


def check_complete(accumulator, items: list[str]) -> None:
    """Refuse a set some of whose items the set metric could not take: its value would be over
    another set than the other codecs' (FAD's reference set must be the same for all)."""
    failed = [i for i in items if i in accumulator.failed]
    if failed:
        raise ValueError(f"{accumulator.metric.card.name}: {len(failed)} of the {len(items)} items could not be "
                         f"taken, e.g. {accumulator.failed[failed[0]]}; the set would differ from the other codecs' "
                         "(the items' other metrics are kept)")


def accumulator_for(metric: SetMetric):
    streams = all(hasattr(metric, a) for a in ("embed_clip", "from_embeddings", "hash_update"))
    return EmbeddingAccumulator(metric) if streams else AudioAccumulator(metric)


class _Open:
    """An item whose values are still being computed."""

    def __init__(self, result: ItemResult, metrics: list[str]) -> None:
        self.result = result
        self.parts: dict[str, dict[tuple[int, int], float]] = {m: {} for m in metrics}
        self.lengths: dict[int, int] = {}
        self.warnings: dict[str, list[str]] = {m: [] for m in metrics}
        self.reasons: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.pending = 0
        self.streamed = False


class Scorer:
    """Scores the items of one source (module docstring).

    Parameters
    ----------
    metrics: item and set metric objects.
    log: one-line messages (item errors).
    """

    def __init__(self, metrics: list[ItemMetric | SetMetric], log: Callable[[str], None] | None = None) -> None:
        self.item_metrics = [m for m in metrics if isinstance(m, ItemMetric)]
        self.set_metrics = [m for m in metrics if isinstance(m, SetMetric)]
        self.accumulators = {m.card.name: accumulator_for(m) for m in self.set_metrics}
        self.log = log or (lambda message: None)
        self._open: dict[int, _Open] = {}
        self._done: list[ItemResult] = []
        self._queues: dict[str, list[_Job]] = {}
        self._in_flight: list[tuple[ItemMetric, list[_Job], Callable[[], list[float]]]] = []
        self._next = 0

    # -- items ------------------------------------------------------------------------------------
    def score(self, stream: ItemStream, cached: dict[str, dict[str, Any]] | None = None,
              set_metrics: bool = True) -> None:
        """Consume ``stream``; item metrics in ``cached`` (``{metric: {value, status, message}}``)
        are taken as they are. Results come from :meth:`finish`."""
        cached = cached or {}
        todo = [m for m in self.item_metrics if m.card.name not in cached]
        result = ItemResult(item=stream.item)
        for name, entry in cached.items():
            result.values[name] = float("nan") if entry.get("value") is None else float(entry["value"])
            result.status[name] = entry.get("status", "ok")
            result.messages[name] = entry.get("message", "")
        key, self._next = self._next, self._next + 1
        state = self._open[key] = _Open(result, [m.card.name for m in todo])
        accumulators = list(self.accumulators.values()) if set_metrics else []
        try:
            for piece in stream:
                segment = piece.segment
                label = segment.label(stream.item.id)
                result.segments += 1
                result.sample_rate = segment.sample_rate
                result.channels = segment.audio.shape[0]
                result.seconds += segment.samples / segment.sample_rate
                state.lengths[segment.index] = segment.samples
                refs, ests, silent = [], [], []
                for ch in range(segment.audio.shape[0]):
                    ref, est, info = check_pair(segment.audio[ch], piece.estimate[ch],
                                                f"{label} [channel {ch}]" if segment.audio.shape[0] > 1 else label)
                    refs.append(ref)
                    ests.append(est)
                    silent.append(info.silent)
                    for metric in todo:
                        name = metric.card.name
                        if info.warnings:
                            state.warnings[name].extend(info.warnings)
                        if info.silent:
                            state.parts[name][segment.index, ch] = float("nan")
                            state.reasons.setdefault(name, info.nan_reason or "undefined")
                        else:
                            state.pending += 1
                            self._queue(metric, _Job(key, segment.index, ch, ref, est, segment.sample_rate, label))
                if accumulators and not all(silent):
                    reference, estimate = np.mean(refs, axis=0), np.mean(ests, axis=0)
                    for acc in accumulators:
                        if stream.item.id in acc.failed:
                            continue
                        try:  # a clip the set metric cannot take fails that metric, not the item's others
                            acc.update(stream.item.id, reference, estimate, segment.sample_rate, segment.start,
                                       label)
                        except Exception as exc:
                            acc.fail(stream.item.id, f"{label}: {describe(exc)}")
                            self.log(f"[{stream.item.id}] {acc.metric.card.name}: {describe(exc)}")
            state.streamed = True
            result.facts, result.coding, result.notes = stream.facts, stream.coding, list(stream.notes)
        except Exception as exc:
            result.error = describe(exc)
            if stream.item.id not in result.error:
                result.error = f"{stream.item.id}: {result.error}"
            result.facts, result.coding, result.notes = stream.facts, stream.coding, list(stream.notes)
            self.log(f"[{stream.item.id}] {result.error}")
            for acc in self.accumulators.values():
                acc.discard(stream.item.id)
            state.streamed = True
            state.pending = 0  # queued jobs of a failed item are dropped when they come back
        else:
            for acc in accumulators:
                acc.commit(stream.item.id)
        self._maybe_close(key)

    def _queue(self, metric: ItemMetric, job: _Job) -> None:
        if type(metric).batch is ItemMetric.batch:  # no batching of its own: score now
            self._score_one(metric, job)
            return
        queue = self._queues.setdefault(metric.card.name, [])
        queue.append(job)
        if len(queue) >= 2 * max(1, int(getattr(metric, "workers", 1) or 1)):
            self._flush(metric)

    def _flush(self, metric: ItemMetric) -> None:
        """Hand the queued jobs of ``metric`` to it (:meth:`ItemMetric.submit`: a metric with a
        worker pool scores them there while this process goes on with the next items); collect
        the oldest batches once more than :data:`IN_FLIGHT` are out."""
        jobs = self._queues.pop(metric.card.name, [])
        by_rate: dict[int, list[_Job]] = {}
        for job in jobs:
            by_rate.setdefault(job.sample_rate, []).append(job)
        for rate, group in by_rate.items():
            try:
                collect = metric.submit([(j.reference, j.estimate) for j in group], rate)
            except Exception:  # find the culprit(s) one by one
                for job in group:
                    self._score_one(metric, job)
                continue
            self._in_flight.append((metric, group, collect))
        self._collect(keep=IN_FLIGHT)

    def _collect(self, keep: int = 0) -> None:
        """Wait for the oldest batches in flight until at most ``keep`` are left."""
        while len(self._in_flight) > keep:
            metric, group, collect = self._in_flight.pop(0)
            try:
                values = collect()
            except Exception:  # find the culprit(s) one by one
                for job in group:
                    self._score_one(metric, job)
                continue
            for job, value in zip(group, values):
                self._record(metric.card.name, job, float(value))

    def _score_one(self, metric: ItemMetric, job: _Job) -> None:
        try:
            value = float(metric(job.reference, job.estimate, job.sample_rate))
        except Exception as exc:
            self._record(metric.card.name, job, float("nan"), error=f"{job.label}: {describe(exc)}")
            return
        self._record(metric.card.name, job, value)

    def _record(self, metric: str, job: _Job, value: float, error: str | None = None) -> None:
        state = self._open.get(job.key)
        if state is None:
            return
        if error is not None:
            state.errors.setdefault(metric, error)
        state.parts[metric][job.segment, job.channel] = value
        state.pending -= 1
        self._maybe_close(job.key)

    def _maybe_close(self, key: int) -> None:
        state = self._open.get(key)
        if state is None or not state.streamed or state.pending > 0:
            return
        del self._open[key]
        result = state.result
        if result.error is None:
            for metric, parts in state.parts.items():
                self._finish_metric(state, metric, parts)
        self._done.append(result)

    def _finish_metric(self, state: _Open, metric: str, parts: dict[tuple[int, int], float]) -> None:
        result = state.result
        if metric in state.errors:
            result.values[metric], result.status[metric], result.messages[metric] = (
                float("nan"), "error", state.errors[metric])
            return
        per_segment: dict[int, list[float]] = {}
        for (segment, _), value in sorted(parts.items()):
            per_segment.setdefault(segment, []).append(value)
        weighted = []
        for segment, values in per_segment.items():
            finite = [v for v in values if math.isfinite(v)]
            seg_value = float(np.mean(finite)) if finite else float("nan")
            weighted.append((seg_value, state.lengths[segment]))
            if result.segments > 1:
                result.segment_rows.append({"segment": segment, "metric": metric, "value": seg_value,
                                            "samples": state.lengths[segment]})
        finite = [(v, w) for v, w in weighted if math.isfinite(v)]
        if not finite:
            value = float("nan")
        elif len(finite) == 1:
            value = finite[0][0]
        else:
            values, weights = np.array(finite, dtype=np.float64).T
            value = float(np.dot(values, weights) / weights.sum())
        notes = list(dict.fromkeys(state.warnings[metric]))
        result.values[metric] = value
        result.status[metric] = "ok" if math.isfinite(value) else "nan"
        result.messages[metric] = "; ".join(notes) if math.isfinite(value) else state.reasons.get(metric, "undefined")

    def finish(self) -> list[ItemResult]:
        """Flush pending batches; the results of every scored item, in the order scored."""
        for metric in self.item_metrics:
            if metric.card.name in self._queues:
                self._flush(metric)
        self._collect(keep=0)
        done, self._done = self._done, []
        return done
