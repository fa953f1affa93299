"""Orchestration for ``run`` (and the reconstruction stage ``eval`` shares with it).

``run``: data -> (train) -> encode (latents for the probes) -> reconstruction (the engine:
sources -> scorer -> summaries) -> cost rows -> probes -> steps study -> report. Every artefact
is cached under a content key, so a re-run recomputes nothing that is unchanged and a killed
run resumes item by item; one failing item becomes an error row naming it, the run goes on.

:func:`score_sources` is the reconstruction stage itself: it reconstructs every source over
the same items, computes set metrics on the items all of them scored, and stores item rows,
error rows and summaries. ``run`` and ``eval`` both call it, so the same item gives the same
number whichever asked.

Sample-rate policy: each item is read at its native rate and resampled (soxr VHQ) to the
codec's rate; decoded audio is resampled back to the native rate and compared there with the
untouched original. Parameter-free codecs whose constructor takes ``sample_rate`` run at the
dataset's native rate. Channels are coded as a batch and scored separately.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.cache import ArtifactCache, cache_key
from benchmark.codecs.precision import inference_precision
from benchmark.codecs.protocol import Codec, check_latents
from benchmark.codecs.registry import create_codec, resolve_factory
from benchmark.config import CodecSpec, RunConfig, save_config
from benchmark.data.audio import AudioError, read_audio
from benchmark.data.dataset import Dataset, Item
from benchmark.data.registry import load_dataset
from benchmark.engine.compare import compare_to_reference, comparison_settings, resolve_reference
from benchmark.engine.distributed import Ranks, rank_stages
from benchmark.engine.prefetch import prefetched
from benchmark.engine.reconstruct import ContentHashes, Outcome, reconstruct, set_metrics
from benchmark.engine.score import describe
from benchmark.engine.sources import CodecSource, Source
from benchmark.engine.summarise import common_items, group_rows, item_rows, metric_values, summary_rows
from benchmark.lazy import resolve
from benchmark.metrics import METRICS, ItemMetric, MetricError, SetMetric
from benchmark.metrics.base import format_warning
from benchmark.provenance import atomic_write
from benchmark.results import ResultsStore

ENCODE_VERSION = "2"
SEED_STAGES = {"reconstruction": "reconstruction_seed", "probe": "probe_seed"}


@dataclasses.dataclass
class Grouping:
    """Which sources are the training-seed replicates of one codec.

    members: group label -> its replicates' labels (a codec run once: ``[its label]``).
    seeds: replicate label -> its training seed. columns: group label -> the columns of its rows.
    """

    members: dict[str, list[str]]
    seeds: dict[str, Any] = dataclasses.field(default_factory=dict)
    columns: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def singletons(cls, labels: list[str]) -> "Grouping":
        return cls({label: [label] for label in labels})

    def replicated(self, group: str) -> bool:
        return self.members[group] != [group]


@dataclasses.dataclass
class CodecRun:
    """A built codec and its bookkeeping within one run.

    group: the codec's label when this is one of its training-seed replicates (``seed``, the
    ``replicate_index``-th of its ``train.seeds``), else None.
    """

    spec: CodecSpec
    codec: Codec
    train_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    group: str | None = None
    seed: int | None = None
    replicate_index: int = 0

    @property
    def label(self) -> str:
        return self.spec.display


class StageTimer:
    """Per-stage records (seconds, items, failures), taken as the work happens."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def stage(self, name: str, items: int = 0) -> Iterator[dict[str, float]]:
        record = self.stages.setdefault(name, {"seconds": 0.0, "items": 0, "failures": 0})
        record["items"] += items
        t0 = time.perf_counter()
        try:
            yield record
        finally:
            record["seconds"] += time.perf_counter() - t0

    def table(self) -> str:
        total = sum(r["seconds"] for r in self.stages.values()) or 1.0
        width = max([5] + [len(name) for name in self.stages])
        lines = [f"{'stage':{width}s} {'seconds':>9s} {'share':>6s} {'items':>6s} {'failed':>6s}"]
        for name, r in self.stages.items():
            lines.append(f"{name:{width}s} {r['seconds']:9.1f} {r['seconds'] / total:6.1%} {int(r['items']):6d} "
                         f"{int(r['failures']):6d}")
        return "\n".join(lines)


def build_metrics(names: list[str], options: dict[str, dict], *, cache_dir: Path | None, reference_name: str,
                  workers: int) -> list[ItemMetric | SetMetric]:
    """Build metrics by registry name; set metrics get the embedding cache (none if ``cache_dir``
    is None) and reference name."""
    out = []
    for name in names:
        opts = dict(options.get(name, {}))
        factory = resolve(METRICS, name, "metric", MetricError)
        if _accepts(factory, "cache"):  # eval --no-cache: no cache at all, not the metric's default folder
            opts.setdefault("cache", str(cache_dir / "embeddings") if cache_dir is not None else False)
        if _accepts(factory, "reference_name"):
            opts.setdefault("reference_name", reference_name)
        if _accepts(factory, "workers"):
            opts.setdefault("workers", workers)
        try:
            out.append(factory(**opts))
        except MetricError:
            raise
        except Exception as exc:
            raise MetricError(f"metric {name!r} could not be built with {opts}: {exc}") from exc
    return out


def score_sources(sources: list[tuple[Source, dict[str, Any]]], items: list[Item], metrics: list, store: ResultsStore,
                  *, segment_seconds: float | None, max_seconds: float | None = None,
                  cache: ArtifactCache | None = None, metric_options: dict | None = None,
                  failure_policy: str = "common", seed: int = 0, progress: bool = False,
                  log: Callable[[str], None] = print, hashes: ContentHashes | None = None,
                  timer: StageTimer | None = None, after_each: Callable[[], None] | None = None,
                  reference_codec: str = "music2latent", alpha: float = 0.05,
                  grouping: Grouping | None = None) -> list[Outcome]:
    """The reconstruction stage (module docstring). ``sources`` pairs each source with the
    columns of its rows (``codec``, ``codec_label``, ``codec_id``, ``weights_id``, ``dataset``,
    ``dataset_id``, ``split``). With several sources, each is compared with ``reference_codec``
    (:func:`store_comparisons`). ``grouping``: sources that are training-seed replicates of one
    codec are summarised and compared as that codec (``reconstruction`` rows), each replicate
    keeping its own rows (``reconstruction_seed``, with its ``seed``)."""
    timer = timer or StageTimer()
    grouping = grouping or Grouping.singletons([source.label for source, _ in sources])
    hashes = hashes or ContentHashes()
    outcomes = []
    for source, columns in sources:
        with timer.stage(f"reconstruct {source.label}", len(items)) as record:
            outcome = reconstruct(source, items, metrics, segment_seconds=segment_seconds, max_seconds=max_seconds,
                                  cache=cache, metric_options=metric_options, hashes=hashes, progress=progress,
                                  log=lambda m, label=source.label: log(f"[{label}] {m}"))
            record["failures"] += sum(1 for r in outcome.results if not r.ok)
        outcomes.append(outcome)
        base = {k: columns.get(k) for k in ("codec_label", "codec_id", "dataset_id")}
        rows, segments, errors = item_rows(outcome, base)
        for row in rows:
            store.add_item(**row)
        for row in segments:
            store.add_segment(**row)
        for row in errors:
            store.add_error(**row)
        if after_each is not None:
            after_each()  # nothing computed is lost if a later codec dies
    family = []
    for kind, ids in item_kinds(items):
        subset = {"subset": kind} if kind else {}
        for outcome in outcomes:
            outcome.set_results, outcome.set_errors = {}, {}
        common = common_items(outcomes, ids)
        if any(o.scorer.set_metrics for o in outcomes):
            with timer.stage("set metrics", len(common)):
                set_metrics(outcomes, common, log=log)
        summaries = summary_rows(outcomes, metrics, ids, policy=failure_policy, seed=seed,
                                 segment_seconds=segment_seconds)
        for (_, columns), outcome in zip(sources, outcomes):
            group = next(g for g, members in grouping.members.items() if outcome.label in members)
            replicate = grouping.replicated(group)
            extra = dict(subset, **({"seed": grouping.seeds.get(outcome.label)} if replicate else {}))
            for row in summaries[outcome.label]:
                store.add(**columns, stage="reconstruction_seed" if replicate else "reconstruction", **extra, **row)
                for warning in row["settings"].get("warnings", []) if isinstance(row["settings"], dict) else []:
                    log(format_warning(row["metric"], f"{outcome.label}{f' ({kind}s)' if kind else ''}: {warning}"))
            for name, message in outcome.set_errors.items():
                store.add_error(outcome.label, f"metric:{name}", "*", "", message)
            for name, result in outcome.set_results.items():
                for item_id, value in result.per_item.items():
                    store.add_item(codec_label=columns.get("codec_label"), codec_id=columns.get("codec_id"),
                                   dataset_id=columns.get("dataset_id"), split=columns.get("split"), item=item_id,
                                   metric=f"{name}_contribution", value=value, status="ok")
            if replicate and outcome.label == grouping.members[group][-1]:  # the codec's row after its runs'
                members = grouping.members[group]
                for row in group_rows(outcomes, metrics, ids, members, summaries, policy=failure_policy, seed=seed,
                                      seeds=[grouping.seeds.get(m) for m in members]):
                    store.add(**grouping.columns[group], stage="reconstruction", **subset, **row)
        family.append((kind, ids))
    if len(grouping.members) > 1:
        store_comparisons(sources, outcomes, metrics, family, store, reference_codec=reference_codec, alpha=alpha,
                          policy=failure_policy, seed=seed, log=log, grouping=grouping)
    return outcomes


def item_kinds(items: list[Item]) -> list[tuple[str, list[str]]]:
    """``(kind, item ids)`` per item kind, in order of first appearance (:attr:`Item.kind`): notes
    and clips are summarised, and FAD-like sets formed, separately, never averaged together."""
    kinds: dict[str, list[str]] = {}
    for item in items:
        kinds.setdefault(item.kind, []).append(item.id)
    return list(kinds.items())


def cap_per_kind(items: list[Item], cap: int | None) -> list[Item]:
    """The first ``cap`` items of each :attr:`Item.kind`, in their order (all when ``cap`` is None)."""
    if cap is None:
        return list(items)
    seen: dict[str, int] = {}
    out = []
    for item in items:
        seen[item.kind] = seen.get(item.kind, 0) + 1
        if seen[item.kind] <= cap:
            out.append(item)
    return out


def store_comparisons(sources: list[tuple[Source, dict[str, Any]]], outcomes: list[Outcome], metrics: list,
                      subsets: list[tuple[str, list[str]]], store: ResultsStore, *, reference_codec: str, alpha: float,
                      policy: str, seed: int, log: Callable[[str], None] = print,
                      grouping: Grouping | None = None) -> None:
    """``reconstruction_paired`` rows: every codec vs the reference codec on every item metric and
    item kind (``subsets``: ``(kind, ids)``), on the items the summaries use, Holm-corrected over
    that whole family (:func:`benchmark.engine.compare.compare_to_reference`; a codec with
    training-seed replicates enters as its seed x item table). ``value`` is ``mean(codec -
    reference)`` in the metric's unit (metric ``<name>_minus_<reference>``, the metric's own name in
    ``settings["metric"]``); the test statistics are in ``settings``."""
    item_metrics = [m for m in metrics if isinstance(m, ItemMetric)]
    if not item_metrics:
        return
    grouping = grouping or Grouping.singletons([o.label for o in outcomes])
    reference, note = resolve_reference(reference_codec, list(grouping.members))
    if note:
        log(f"[compare] {note}")
    values, cards, higher = {}, {}, {}
    for kind, ids in subsets:
        for metric in item_metrics:
            _, by_label = metric_values(outcomes, metric, ids, policy)
            key = (metric.card.name, kind)
            values[key] = {group: (np.stack([by_label[m] for m in members]) if grouping.replicated(group)
                                   else by_label[members[0]])
                           for group, members in grouping.members.items()}
            cards[key], higher[key] = metric.card, metric.card.higher_is_better
    rows = compare_to_reference(values, reference, higher_is_better=higher, alpha=alpha, seed=seed)
    columns = {outcome.label: cols for (_, cols), outcome in zip(sources, outcomes)}
    columns.update(grouping.columns)
    for row in rows:
        name, kind = row["metric"]
        card = cards[row["metric"]]
        store.add(**columns[row["codec"]], **({"subset": kind} if kind else {}), stage="reconstruction_paired",
                  metric=f"{name}_minus_{reference}", value=row["delta"], ci_low=row["ci_low"],
                  ci_high=row["ci_high"], n=row["n"], unit=card.unit, higher_is_better=card.higher_is_better,
                  convention=f"codec minus {reference}; {card.convention}", implementation=card.implementation,
                  metric_version=card.version,
                  settings=comparison_settings(row, metric=name, reference=reference, requested=reference_codec,
                                               note=note, failure_policy=policy))


def cost_facts(codec: Codec, outcome: Outcome | None, encode: dict[str, float] | None = None) -> dict[str, tuple]:
    """Cost rows of a codec: ``metric -> (value, unit, higher_is_better)``.

    Size columns are rate-independent: latent numbers per second of the scored audio and the
    compression ratio relative to that audio (its native rate and channels), not the codec's
    own rate."""
    info = codec.info
    facts: dict[str, tuple] = {
        "parameters": (float(info.parameters), "count", None),
        "latent_rate_hz": (info.latent_rate_hz, "Hz", None),
        "latent_dim": (float(info.latent_dim), "channels", None),
        "decode_steps": (float(info.decode_steps) if info.decode_steps else float("nan"), "steps", None),
        "joint_channels": (float(info.channels), "channels", None),
    }
    if info.bitrate_kbps:  # codecs with a bitstream: the nominal bitrate (the obtained one is "kbps")
        facts["kbps_nominal"] = (float(info.bitrate_kbps), "kbps", None)
    scored = [r for r in outcome.results if r.ok and r.sample_rate] if outcome is not None else []
    if scored:
        floats = [info.latent_floats_per_second(r.channels) for r in scored]
        ratios = [info.compression_ratio_for(r.sample_rate, r.channels) for r in scored]
        facts["latent_floats_per_second"] = (float(np.mean(floats)), "floats/s", None)
        facts["compression_ratio"] = (float(np.mean(ratios)), "x", None)
        coding = outcome.coding()
        facts["decode_speed"] = (coding.codec_seconds / coding.decode_seconds if coding.decode_seconds > 0
                                 else float("nan"), "x realtime", True)
        if coding.kbps is not None:  # codecs with a real bitstream: the bitrate obtained, files' bytes
            facts["kbps"] = (coding.kbps, "kbps", None)
        for name, value in outcome.alignment().items():
            facts[name] = (value, "s", False)
    else:
        facts["latent_floats_per_second"] = (info.latent_floats_per_second(1), "floats/s", None)
        facts["compression_ratio"] = (info.compression_ratio, "x (codec rate)", None)
    if encode and encode.get("seconds", 0) > 0:
        facts["encode_speed"] = (encode["audio_seconds"] / encode["seconds"], "x realtime", True)
    return facts


class Pipeline:
    """Runs one :class:`RunConfig` end to end (module docstring).

    Parameters
    ----------
    config: the resolved run configuration.
    results_root: folder receiving ``<run_name>/`` (tables, figures, config, logs).
    cache_dir: artefact and dataset cache (``$BENCHMARK_CACHE`` by default).
    progress: show progress bars.
    log: function receiving one-line status messages.
    ranks: this process's place in a ``torchrun`` launch (:mod:`benchmark.engine.distributed`):
        every rank computes its share into the cache, then rank 0 runs the one-process pipeline.
    """

    def __init__(self, config: RunConfig, results_root: Path, cache_dir: Path, progress: bool = True,
                 log: Callable[[str], None] = print, ranks: Ranks | None = None) -> None:
        self.config = config
        self.ranks = ranks or Ranks()
        self.run_dir = Path(results_root) / config.run_name
        self.cache_dir = Path(cache_dir)
        self.cache = ArtifactCache(self.cache_dir)
        self.progress = progress
        self.log = log
        self.store = ResultsStore(self.run_dir, config.run_name, config.hash())
        self.timer = StageTimer()
        self.hashes = ContentHashes()
        self._dataset: Dataset | None = None
        self._runs: list[CodecRun] = []

    # -- dataset ------------------------------------------------------------------------------------
    def _dataset_args(self) -> tuple[str, Path | None, dict[str, Any]]:
        spec = self.config.dataset
        root = spec.root if spec.root is not None else (self.cache_dir if spec.name == "builtin" else None)
        options = dict(spec.options)
        if spec.name == "builtin":
            options.setdefault("workers", self.config.workers)
            options.setdefault("progress", self.progress)
        return spec.name, (Path(root) if root is not None else None), options

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            name, root, options = self._dataset_args()
            with self.timer.stage("dataset"):
                self._dataset = load_dataset(name, root, **options)
        return self._dataset

    def items(self, split: str | None = None) -> list[Item]:
        """Items of ``split`` (all splits if None), capped at ``max_items`` per split."""
        splits = [split] if split else sorted({it.split for it in self.dataset.items})
        out: list[Item] = []
        for name in splits:
            chosen = [it for it in self.dataset.items if it.split == name]
            if self.config.max_items is not None:
                chosen = chosen[: self.config.max_items]
            out.extend(chosen)
        return out

    def reconstruction_items(self) -> list[Item]:
        """The items scored for reconstruction (:func:`cap_per_kind` of the reconstruction split)."""
        return cap_per_kind(self.items(self.config.reconstruction_split), self.config.reconstruction_per_kind)

    # -- codecs -------------------------------------------------------------------------------------
    def build_codec(self, spec: CodecSpec, checkpoint: Path | None = None) -> CodecRun:
        """Train (if the spec asks for it, cached; ``checkpoint``: already trained) and construct a codec."""
        options = dict(spec.options)
        train_info: dict[str, Any] = {}
        if spec.train is not None:
            if checkpoint is None:
                from benchmark.training import train  # lazy: torch training stack only when needed

                self.log(f"[{spec.display}] training ({dict(spec.train)}) - cached checkpoints are reused")
                with self.timer.stage(f"train {spec.display}"):
                    checkpoint = train(codec=spec.name, dataset=self.dataset, out_dir=self.cache_dir / "checkpoints",
                                       device=self.config.device, progress=self.progress, **dict(spec.train))
            options.setdefault("checkpoint", str(checkpoint))
            train_info = _read_train_info(Path(checkpoint))
        factory = resolve_factory(spec.name)
        if "sample_rate" not in options and self.dataset.sample_rate and _accepts(factory, "sample_rate"):
            if _parameter_free(factory):
                options["sample_rate"] = self.dataset.sample_rate
        if "device" not in options and _accepts(factory, "device"):
            options["device"] = self.config.device
        codec = create_codec(spec.name, **options)
        return CodecRun(spec=spec, codec=codec, train_info=train_info, options=options)

    def columns(self, run: CodecRun, split: str | None = None) -> dict[str, Any]:
        return dict(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                    weights_id=run.codec.info.weights_id, dataset=self.dataset.name,
                    dataset_id=self.dataset.identity, split=split or self.config.reconstruction_split)

    def group_columns(self, label: str, split: str | None = None) -> dict[str, Any]:
        """Row columns of a codec by its label: a multi-seed codec's ids hash its replicates' ids."""
        members = [r for r in self._runs if (r.group or r.label) == label]
        if len(members) == 1 and members[0].group is None:
            return self.columns(members[0], split)
        first = members[0]
        return dict(self.columns(first, split), codec_label=label,
                    codec_id=cache_key("replicates", [r.codec.identity for r in members])[:16],
                    weights_id=cache_key("replicates", [r.codec.info.weights_id for r in members])[:16])

    def grouping(self, runs: list[CodecRun], split: str | None = None) -> Grouping:
        """Training-seed replicates of ``runs`` by codec (:class:`Grouping`)."""
        members: dict[str, list[str]] = {}
        for r in runs:
            members.setdefault(r.group or r.label, []).append(r.label)
        return Grouping(members, seeds={r.label: r.seed for r in runs if r.group is not None},
                        columns={g: self.group_columns(g, split) for g, m in members.items() if m != [g]})

    def source(self, run: CodecRun) -> CodecSource:
        return self.source_for(run.codec, run.label)

    def source_for(self, codec: Codec, label: str) -> CodecSource:
        return CodecSource(codec, label, chunk_seconds=self.config.chunk_seconds,
                           overlap_seconds=self.config.overlap_seconds, device=self.config.device, cache=self.cache,
                           batch_items=self.config.batch_items, precision=self.config.precision)

    def build_codecs(self, trained_only: bool = False) -> list[CodecRun]:
        """Every codec of the config, one :class:`CodecRun` per training run (``train.seeds``); a
        codec that cannot be built is an error row, the others go on. ``trained_only``: train
        nothing, a model without a finished checkpoint is skipped (the ranks of a launch)."""
        runs: list[CodecRun] = []
        trained = self.train_all(trained_only=trained_only)
        for spec in self.config.codecs:
            for index, (replicate, seed) in enumerate(spec.replicates()):
                outcome = trained.get(replicate.display)
                if isinstance(outcome, BaseException):
                    self.store.add_error(replicate.display, "train", "*", "", describe(outcome))
                    self.log(f"[{replicate.display}] training failed, skipped: {describe(outcome)}")
                    continue
                try:
                    run = self.build_codec(replicate, checkpoint=outcome)
                except Exception as exc:
                    self.store.add_error(replicate.display, "build", "*", "", describe(exc))
                    self.log(f"[{replicate.display}] cannot be built, skipped: {describe(exc)}")
                    continue
                if seed is not None:
                    run.group, run.seed, run.replicate_index = spec.display, seed, index
                runs.append(run)
        return runs

    def train_all(self, shard: bool = False, trained_only: bool = False) -> dict[str, Path | BaseException]:
        """Train every model the config asks for (cached runs cost nothing): on a CPU, ``workers``
        runs at a time in processes of ``cores // workers`` threads each (1.3x the models per hour
        of one process on 2 cores; :mod:`benchmark.training.parallel`), the same weights as training
        them one by one with that many threads. Label -> ``best.pt`` or the exception.

        ``shard``: only this rank's jobs (job ``j`` of rank ``j % world``). ``trained_only``: train
        nothing; a job without a finished checkpoint gets an exception saying so."""
        specs = [replicate for spec in self.config.codecs for replicate, _ in spec.replicates()
                 if replicate.train is not None]
        if shard:
            specs = specs[self.ranks.rank::self.ranks.world_size]
        if not specs:
            return {}
        from benchmark.training.parallel import threads_per_job, train_many

        workers = self.config.workers if self.config.device == "cpu" else 1
        jobs = [dict(codec=s.name, dataset=self.dataset, out_dir=self.cache_dir / "checkpoints",
                     device=self.config.device, **dict(s.train)) for s in specs]
        if trained_only:
            return {s.display: _finished_checkpoint(job) for s, job in zip(specs, jobs)}
        self.log(f"training {len(jobs)} model(s), {max(1, workers)} at a time - cached checkpoints are reused")
        with self.timer.stage("train", len(jobs)) as record:
            if shard and workers > 1:  # the ranks of a node train as one process's workers would: same bits
                outcomes = train_many(jobs, workers=self.ranks.workers(workers),
                                      threads_per_worker=threads_per_job(workers), progress=self.progress, log=self.log)
            else:
                outcomes = train_many(jobs, workers=workers, progress=self.progress, log=self.log)
            record["failures"] += sum(isinstance(o, BaseException) for o in outcomes)
        return {s.display: o for s, o in zip(specs, outcomes)}

    # -- encode (latents and features for the probes) ----------------------------------------------
    def _encode_key(self, run: CodecRun, item: Item) -> str:
        precision = [] if self.config.precision == "fp32" else [self.config.precision]
        return cache_key("encode", ENCODE_VERSION, run.codec.identity, self.hashes(item), *precision)

    def _cached(self, run: CodecRun, item: Item) -> bool:
        try:
            return self.cache.has_arrays("encode", self._encode_key(run, item))
        except AudioError:
            return False

    def encode_items(self, run: CodecRun, items: list[Item]) -> dict[str, float]:
        """Encode every item not yet cached (latents, and features if the codec has them);
        returns the encode time and audio seconds over ``items`` (as measured when computed)."""
        todo = [it for it in items if not self._cached(run, it)]
        sr = run.codec.info.sample_rate
        bar = tqdm(total=len(todo), desc=f"encode {run.label}", disable=not self.progress or not todo, unit="item")
        for group in self._loaded_groups(run, todo, sr):
            if not self._encode_group(run, group, report=len(group) == 1):  # retry one by one: name the culprit
                for single in group:
                    self._encode_group(run, [single], report=True)
            bar.update(len(group))
        bar.close()
        seconds = audio = 0.0
        for item in items:
            if self._cached(run, item):
                arrays = self.cache.load_arrays("encode", self._encode_key(run, item))
                if arrays is not None:
                    seconds += float(arrays["seconds"])
                    audio += float(arrays["audio_seconds"])
        return {"seconds": seconds, "audio_seconds": audio}

    def _encode_group(self, run: CodecRun, group: list[tuple[Item, np.ndarray]], report: bool) -> bool:
        try:
            with torch.inference_mode(), inference_precision(self.config.precision, self.config.device):
                t0 = time.perf_counter()
                x = torch.from_numpy(np.concatenate([a for _, a in group]))  # [sum of channels, samples]
                latents, features = run.codec.encode_with_features(x)  # one encoder pass where it can
                elapsed = time.perf_counter() - t0
            check_latents(latents, run.label)
        except Exception as exc:
            if report:
                self._item_error(run, "encode", group[0][0], exc)
            return False
        total = sum(a.shape[0] * a.shape[1] for _, a in group)
        sr, start = run.codec.info.sample_rate, 0
        for item, audio in group:
            n = audio.shape[0]
            arrays = {"latents": latents[start:start + n].float().cpu().numpy(),
                      "seconds": np.float64(elapsed * audio.shape[0] * audio.shape[1] / total),
                      "audio_seconds": np.float64(audio.shape[1] / sr)}
            if features is not None:
                arrays["features"] = features[start:start + n].float().cpu().numpy()
            self.cache.save_arrays("encode", self._encode_key(run, item), **arrays)
            start += n
        return True

    def _loaded_groups(self, run: CodecRun, items: list[Item], sr: int) -> Iterator[list[tuple[Item, np.ndarray]]]:
        """Read items at ``sr`` and yield groups of equal length (at most ``batch_items``); the
        next batch is read and resampled in a background thread while this one is encoded."""
        # codecs that code channels jointly take one item per call (rows = its channels)
        size = max(1, self.config.batch_items) if run.codec.info.channels == 1 else 1

        def read(item: Item) -> tuple[Item, np.ndarray | None, AudioError | None]:
            try:
                return item, read_audio(item.path, sample_rate=sr)[0], None
            except AudioError as exc:
                return item, None, exc

        reads = prefetched((read(item) for item in items), depth=size)
        for start in range(0, len(items), size):
            by_length: dict[int, list[tuple[Item, np.ndarray]]] = {}
            for item, audio, exc in itertools.islice(reads, min(size, len(items) - start)):
                if audio is None:
                    self._item_error(run, "encode", item, exc)
                    continue
                by_length.setdefault(audio.shape[1], []).append((item, audio))
            yield from by_length.values()

    def embeddings(self, run: CodecRun, items: list[Item], representation: str) -> dict[str, np.ndarray]:
        """item id -> ``[dim, frames]`` (channels averaged) for ``latents`` or ``features``."""
        out = {}
        for item in items:
            if not self._cached(run, item):
                continue
            arrays = self.cache.load_arrays("encode", self._encode_key(run, item))
            if arrays is None or representation not in arrays:
                continue
            emb = arrays[representation].astype(np.float32).mean(axis=0)
            if not np.isfinite(emb).all():
                self._item_error(run, "probe", item, ValueError("non-finite embedding"))
                continue
            out[item.id] = emb
        return out

    def _item_error(self, run: CodecRun, stage: str, item: Item, exc: BaseException) -> None:
        message = describe(exc)
        self.store.add_error(run.label, stage, item.id, str(item.path), message)
        self.log(f"[{run.label}] {stage} failed for item {item.id} ({item.path}): {message}")

    # -- stages ---------------------------------------------------------------------------------------
    def metrics(self) -> list[ItemMetric | SetMetric]:
        cfg = self.config
        return build_metrics(cfg.metrics, cfg.metric_options, cache_dir=self.cache_dir,
                             reference_name=f"{self.dataset.name}:{self.dataset.identity}:{cfg.reconstruction_split}",
                             workers=cfg.workers)

    def reconstruction(self, runs: list[CodecRun], items: list[Item]) -> dict[str, Outcome]:
        decoding = [r for r in runs if r.codec.info.can_decode]
        if not decoding or not self.config.metrics:
            return {}
        cfg = self.config
        outcomes = score_sources([(self.source(r), self.columns(r)) for r in decoding], items, self.metrics(),
                                 self.store, segment_seconds=cfg.segment_seconds, cache=self.cache,
                                 metric_options=cfg.metric_options, failure_policy=cfg.failure_policy, seed=cfg.seed,
                                 progress=self.progress, log=self.log, hashes=self.hashes, timer=self.timer,
                                 after_each=self.store.write, reference_codec=cfg.reference_codec, alpha=cfg.alpha,
                                 grouping=self.grouping(decoding))
        return {r.label: o for r, o in zip(decoding, outcomes)}

    def cost_rows(self, runs: list[CodecRun], outcomes: dict[str, Outcome],
                  encoded: dict[str, dict[str, float]]) -> None:
        """``cost`` rows per codec; a multi-seed codec's are the mean over its training runs (the
        architecture facts are the same for all of them)."""
        by_group: dict[str, list[CodecRun]] = {}
        for run in runs:
            by_group.setdefault(run.group or run.label, []).append(run)
        for label, members in by_group.items():
            info = members[0].codec.info
            per_run = [cost_facts(r.codec, outcomes.get(r.label), encoded.get(r.label)) for r in members]
            for r, facts in zip(members, per_run):
                for key in ("train_seconds", "train_steps"):
                    if key in r.train_info:
                        facts[key] = (float(r.train_info[key]), "s" if key == "train_seconds" else "steps", None)
            for metric, (_, unit, hib) in per_run[0].items():
                values = [f[metric][0] for f in per_run if metric in f]
                settings = {"license": f"code {info.code_license}; weights {info.weights_license}",
                            "stochastic": info.stochastic, "hardware_note": "measured when computed"}
                if len(members) > 1:
                    settings.update(seed_values=values, seeds=[r.seed for r in members])
                self.store.add(**self.group_columns(label), stage="cost", metric=metric,
                               value=float(np.mean(values)), unit=unit, higher_is_better=hib, settings=settings)

    def probe(self, runs: list[CodecRun]) -> None:
        from benchmark.engine.probing import probe_all

        probe_all(self, runs)

    def run_steps_study(self, runs: list[CodecRun], items: list[Item]) -> None:
        """Quality vs decoding steps and seed-to-seed variance of the stochastic decoders."""
        from benchmark.engine.steps import steps_study, summarize_steps_study

        study = dict(self.config.steps_study)
        # one training run per codec: the study is about decoding, not about training seeds
        stochastic = [r for r in runs if r.codec.info.stochastic and r.codec.info.can_decode and r.replicate_index == 0]
        if not stochastic:
            return
        chosen = items[: study.get("max_items", 16)]
        specs = [{"name": r.spec.name, "options": r.options, "label": r.label} for r in stochastic]
        precision = [] if self.config.precision == "fp32" else [self.config.precision]
        key = cache_key("steps_study", "2", study, [r.codec.identity for r in stochastic],
                        [self.hashes(it) for it in chosen], self.config.segment_seconds, *precision)
        summary = self.cache.load_value("steps_study", key)
        if summary is None:
            try:
                rows = steps_study(specs, chosen, steps=study.get("steps", (1, 2, 4, 8)),
                                   seeds=study.get("seeds", (0, 1, 2)),
                                   metrics=study.get("metrics", ("si_sdr", "mel_distance")),
                                   device=self.config.device, progress=self.progress,
                                   segment_seconds=self.config.segment_seconds,
                                   chunk_seconds=self.config.chunk_seconds, overlap_seconds=self.config.overlap_seconds,
                                   precision=self.config.precision)
                summary = summarize_steps_study(rows)
            except Exception as exc:
                self.store.add_error("*", "steps_study", "*", "", describe(exc))
                return
            self.cache.save_value("steps_study", key, summary)
        labels = {r.label: r for r in stochastic}
        for row in summary:
            run = labels.get(row["codec"])
            if run is None:
                continue
            self.store.add(**dict(self.group_columns(run.group or run.label), codec_label=run.label),
                           stage="steps_study", metric=row["metric"], value=row["mean"],
                           std=row.get("seed_std"), n=row.get("n_items"), unit=row.get("unit"),
                           higher_is_better=row.get("higher_is_better"),
                           settings={"steps": row["steps"], "nfe": row.get("nfe"),
                                     "item_seed_std": row.get("item_seed_std"), "seeds": study.get("seeds", (0, 1, 2))})

    # -- plan / run ---------------------------------------------------------------------------------
    def plan(self) -> list[str]:
        """What would run and what is cached (``--dry-run``): computes, renders and writes nothing."""
        from benchmark.engine.plan import describe_plan

        return describe_plan(self)

    def run(self) -> Path:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        if self.ranks.main:
            save_config(cfg, self.run_dir / "config.yaml")
            self._status("running")
        if self.ranks.distributed:
            self.run_shard()
            if not self.ranks.main:
                return self.run_dir
        items = self.items()
        recon_items = self.reconstruction_items()
        self.log(f"dataset {self.dataset.name} [{self.dataset.identity}]: {len(items)} items, "
                 f"{len(recon_items)} for reconstruction")
        runs = self._runs = self.build_codecs()
        encoded: dict[str, dict[str, float]] = {}
        if cfg.tasks:
            for run in runs:
                with self.timer.stage(f"encode {run.label}", len(items)):
                    encoded[run.label] = self.encode_items(run, items)
        outcomes = self.reconstruction(runs, recon_items)
        self.cost_rows(runs, outcomes, encoded)
        self.store.write()
        if cfg.tasks and runs:
            with self.timer.stage("probes"):
                self.probe(runs)
        if cfg.steps_study and runs:
            with self.timer.stage("steps study"):
                self.run_steps_study(runs, recon_items)
        self.store.write()
        if outcomes:  # audio to listen to in the report (benchmark.html.examples); never stops the run
            from benchmark.html.examples import write_examples

            with self.timer.stage("examples"):
                write_examples(self, runs)
        with self.timer.stage("report"):
            self._write_report()
        self._status("complete", seconds=time.perf_counter() - t_start)
        return self.run_dir

    def _write_report(self) -> None:
        """Build the report unless the same numbers already have one (cached re-runs)."""
        examples = self.run_dir / "report" / "examples" / "examples.json"  # the page shows them too
        content = cache_key([{k: v for k, v in r.items() if k != "timestamp"} for r in self.store.rows],
                            self.store.items, self.store.errors, examples.read_text() if examples.exists() else "")
        marker = self.run_dir / "report" / ".results-hash"
        if marker.exists() and marker.read_text() == content:
            return
        from benchmark.report import build_report

        try:
            build_report([self.run_dir], self.run_dir / "report")
            marker.write_text(content)
        except Exception as exc:  # the numbers are safe on disk; say what failed
            self.log(f"report failed ({describe(exc)}); results are in {self.run_dir}/results.csv")
            traceback.print_exc()

    def run_shard(self) -> None:
        """This rank's share of a launch of several ranks (:mod:`benchmark.engine.distributed`):
        dataset (rank 0 first), its training jobs, then its blocks of items encoded and scored into
        the cache. Errors of the shard go to ``ranks/rank-<k>/errors.csv`` (rank 0's pass retries
        the items and reports them in the results). Ends at a barrier."""
        from benchmark.engine.distributed import RankRecord, barrier, claim_device, reconstruct_shard

        ranks, cfg = self.ranks, self.config
        cfg.device = ranks.device(cfg.device)  # device and workers are not in the run hash
        record = RankRecord(self.run_dir, ranks, cfg.device)
        main_store = self.store
        self.store = ResultsStore(self.run_dir / "ranks" / f"rank-{ranks.rank}", cfg.run_name, cfg.hash())
        runs: list[CodecRun] = []
        launch_workers = cfg.workers
        claim_device(cfg.device)
        (self.run_dir / "ranks" / f"rank-{ranks.rank}" / "errors.csv").unlink(missing_ok=True)  # an earlier launch's
        try:
            with record.tracking(self.timer):
                if ranks.main:
                    self.items()  # the built-in dataset is generated once, by rank 0 with every worker
                barrier(ranks)
                items, recon_items = self.items(), self.reconstruction_items()
                self.train_all(shard=True)
                barrier(ranks)
                cfg.workers = ranks.workers(launch_workers)  # the node's cores are shared by its ranks
                runs = self.build_codecs(trained_only=True)
                block = max(1, cfg.batch_items)  # one codec batch of a one-process run
                if cfg.tasks:
                    mine = ranks.blocks(items, block)
                    for run in runs:
                        with self.timer.stage(f"shard encode {run.label}", len(mine)):
                            self.encode_items(run, mine)
                decoding = [r for r in runs if r.codec.info.can_decode]
                if decoding and cfg.metrics:
                    reconstruct_shard([self.source(r) for r in decoding], recon_items, self.metrics(), ranks,
                                      block=block, segment_seconds=cfg.segment_seconds, max_seconds=None,
                                      cache=self.cache, metric_options=cfg.metric_options, hashes=self.hashes,
                                      progress=self.progress, log=self.log, timer=self.timer, record=record)
                if self.store.errors:
                    self.store.write()
                record.update(errors=len(self.store.errors))
        finally:
            self.store, cfg.workers = main_store, launch_workers  # rank 0's pass has the node to itself
            runs.clear()  # rank 0 builds its codecs again; free these first (GPU memory)
            if cfg.device.startswith("cuda"):
                torch.cuda.empty_cache()
        barrier(ranks)

    def _status(self, state: str, **extra: Any) -> None:
        ranks = {"world_size": self.ranks.world_size, "ranks": rank_stages(self.run_dir)} if self.ranks.distributed \
            else {}
        atomic_write(self.run_dir / "status.json", json.dumps(
            {"state": state, "run": self.config.run_name, "cache_hits": self.cache.hits,
             "cache_misses": self.cache.misses, "errors": len(self.store.errors), "stages": self.timer.stages,
             **ranks, **extra}, indent=1))


# ------------------------------------------------------------------------------------------------
def _accepts(factory: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _parameter_free(factory: Callable) -> bool:
    """Codecs without weights (no checkpoint/weights/preset arguments) adopt the dataset rate."""
    return not any(_accepts(factory, n) for n in ("checkpoint", "weights", "preset"))


def _read_train_info(checkpoint: Path) -> dict[str, Any]:
    info_path = checkpoint.with_suffix(".json")
    if info_path.exists():
        try:
            return json.loads(info_path.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def _finished_checkpoint(job: dict[str, Any]) -> Path | BaseException:
    """``best.pt`` of a finished training job, else the exception saying it is not trained."""
    from benchmark.training.command import prepare_run

    try:
        prepared = prepare_run(**{k: v for k, v in job.items() if k not in ("device", "resume", "progress")})
    except Exception as exc:
        return exc
    if prepared.finished():
        return prepared.run_dir / "best.pt"
    return RuntimeError(f"{prepared.run_dir}: not trained (its training failed on another rank); rank 0 "
                        "trains it again and reports the error")


def find_resumable_run(results_root: Path) -> Path | None:
    """Most recent run directory whose status is not ``complete``."""
    candidates = []
    for status in Path(results_root).glob("*/status.json"):
        try:
            state = json.loads(status.read_text()).get("state")
        except (json.JSONDecodeError, OSError):
            state = None
        if state != "complete":
            candidates.append((status.stat().st_mtime, status.parent))
    return max(candidates)[1] if candidates else None
