"""The benchmark pipeline: data -> (train) -> encode -> decode -> metrics -> probes -> report.

Every per-item artefact is cached in :class:`benchmark.cache.ArtifactCache` under a key that
hashes the codec identity (name + config + weights), the stage settings and the audio content
hash, so

- a re-run recomputes nothing that is unchanged,
- a killed run resumes from the last finished item (``run --resume``),
- one failing item (corrupt file, NaN latents, a codec raising) becomes an error row naming
  the item and the fix, and the run goes on.

Sample-rate policy: each item is read at its native rate and resampled (soxr VHQ) to the
codec's rate; decoded audio is resampled back to the native rate, where the reconstruction
metrics compare it with the untouched original. Parameter-free codecs whose constructor takes
``sample_rate`` and whose spec does not set it run at the dataset's native rate. Multi-channel
audio is folded into the batch axis (each channel coded independently); metrics are computed
per channel and averaged.

Length policy: decoders may return a different length (e.g. Music2Latent crops to
``4096 k + 1536`` samples); reference and estimate are both trimmed to the shorter length from
sample 0 (see ``benchmark.metrics.align``).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.cache import ArtifactCache, cache_key
from benchmark.codecs.protocol import Codec, CodecError, check_latents
from benchmark.codecs.registry import create_codec, resolve_factory
from benchmark.config import CodecSpec, RunConfig, save_config
from benchmark.data.audio import AudioError, file_hash, read_audio, resample
from benchmark.data.dataset import Dataset, Item
from benchmark.data.registry import load_dataset
from benchmark.lazy import resolve
from benchmark.metrics import METRICS, ItemMetric, MetricError, SetMetric
from benchmark.metrics.align import align_pair, fit_to_reference
from benchmark.results import ResultsStore

PIPELINE_VERSION = "1"


@dataclasses.dataclass
class CodecRun:
    """A built codec and its bookkeeping within one run."""

    spec: CodecSpec
    codec: Codec
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    audio_seconds_encoded: float = 0.0
    audio_seconds_decoded: float = 0.0
    train_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.spec.display


class Pipeline:
    """Runs one :class:`RunConfig` end to end.

    Parameters
    ----------
    config: the resolved run configuration.
    results_root: folder receiving ``<run_name>/`` (tables, figures, config, logs).
    cache_dir: artefact and dataset cache (``$BENCHMARK_CACHE`` by default).
    progress: show tqdm progress bars.
    log: function receiving one-line status messages.
    """

    def __init__(self, config: RunConfig, results_root: Path, cache_dir: Path, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.run_dir = Path(results_root) / config.run_name
        self.cache_dir = Path(cache_dir)
        self.cache = ArtifactCache(self.cache_dir)
        self.progress = progress
        self.log = log
        self.store = ResultsStore(self.run_dir, config.run_name, config.hash())
        self._dataset: Dataset | None = None
        self._hashes: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------
    # dataset
    # ------------------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            spec = self.config.dataset
            root = spec.root if spec.root is not None else (self.cache_dir if spec.name == "builtin" else None)
            options = dict(spec.options)
            if spec.name == "builtin":
                options.setdefault("workers", self.config.workers)
                options.setdefault("progress", self.progress)
            self._dataset = load_dataset(spec.name, root, **options)
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

    def content_hash(self, item: Item) -> str:
        if item.content_hash:
            return item.content_hash
        if item.id not in self._hashes:
            try:
                self._hashes[item.id] = file_hash(item.path)
            except OSError as exc:
                raise AudioError(f"{item.path}: cannot read file ({exc})") from exc
        return self._hashes[item.id]

    # ------------------------------------------------------------------------------------------
    # codecs
    # ------------------------------------------------------------------------------------------
    def build_codec(self, spec: CodecSpec) -> CodecRun:
        """Train (if the spec asks for it, cached) and construct a codec."""
        options = dict(spec.options)
        train_info: dict[str, Any] = {}
        if spec.train is not None:
            from benchmark.training import train  # lazy: torch training stack only when needed

            train_options = dict(spec.train)
            self.log(f"[{spec.display}] training ({train_options}) - cached checkpoints are reused")
            checkpoint = train(codec=spec.name, dataset=self.dataset,
                               out_dir=self.cache_dir / "checkpoints", device=self.config.device,
                               progress=self.progress, **train_options)
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

    # ------------------------------------------------------------------------------------------
    # encode / decode
    # ------------------------------------------------------------------------------------------
    def _encode_key(self, run: CodecRun, item: Item) -> str:
        return cache_key("encode", PIPELINE_VERSION, run.codec.identity, self.content_hash(item))

    def _decode_key(self, run: CodecRun, item: Item) -> str:
        return cache_key("decode", PIPELINE_VERSION, run.codec.identity, self.content_hash(item))

    def encode_items(self, run: CodecRun, items: list[Item]) -> None:
        """Encode every item not yet cached (latents, and features if the codec has them)."""
        todo = [it for it in items if not self._safe_cached(run, it, "encode")]
        if not todo:
            return
        sr = run.codec.info.sample_rate
        bar = tqdm(total=len(todo), desc=f"encode {run.label}", disable=not self.progress, unit="item")
        for group in self._loaded_groups(run, todo, sr, "encode"):
            # a failing batch is retried item by item so that only the culprit is reported
            if not self._encode_group(run, group, sr, report=len(group) == 1):
                for single in group:
                    self._encode_group(run, [single], sr, report=True)
            bar.update(len(group))
        bar.close()

    def _encode_group(self, run: CodecRun, group: list[tuple[Item, np.ndarray]], sr: int, report: bool) -> bool:
        """Encode equal-length items as one batch and cache them; False on failure."""
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                x = torch.from_numpy(np.concatenate([a for _, a in group]))  # [sum channels, samples]
                latents = run.codec.encode(x)
                features = run.codec.features(x) if run.codec.info.has_features else None
                elapsed = time.perf_counter() - t0
            check_latents(latents, run.label)
        except Exception as exc:
            if report:
                self._item_error(run, "encode", group[0][0], exc)
            return False
        self._store_encoded(run, group, latents, features, elapsed, sr)
        return True

    def _store_encoded(self, run: CodecRun, group, latents, features, elapsed: float, sr: int) -> None:
        total = sum(a.shape[1] * a.shape[0] for _, a in group)
        start = 0
        for item, audio in group:
            n = audio.shape[0]
            share = elapsed * audio.shape[1] * n / total
            arrays = {"latents": latents[start:start + n].float().cpu().numpy(),
                      "seconds": np.float64(share), "audio_seconds": np.float64(audio.shape[1] / sr)}
            if features is not None:
                arrays["features"] = features[start:start + n].float().cpu().numpy()
            self.cache.save_arrays("encode", self._encode_key(run, item), **arrays)
            run.encode_seconds += share
            run.audio_seconds_encoded += audio.shape[1] / sr
            start += n

    def decode_items(self, run: CodecRun, items: list[Item]) -> None:
        """Decode the cached latents of ``items`` (skips items whose encoding failed)."""
        if not run.codec.info.can_decode:
            return
        todo = [it for it in items if self._safe_cached(run, it, "encode") and not self._safe_cached(run, it, "decode")]
        bar = tqdm(total=len(todo), desc=f"decode {run.label}", disable=not self.progress or not todo, unit="item")
        for item in todo:
            encoded = self.cache.load_arrays("encode", self._encode_key(run, item))
            if encoded is None:
                bar.update(1)
                continue
            try:
                latents = torch.from_numpy(encoded["latents"])
                check_latents(latents, f"{run.label} ({item.id})")
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    audio = run.codec.decode(latents).float().cpu().numpy()
                    elapsed = time.perf_counter() - t0
                if audio.ndim != 2 or not np.isfinite(audio).all():
                    raise CodecError(f"decoder returned {'non-finite' if audio.ndim == 2 else audio.shape} audio")
            except Exception as exc:
                self._item_error(run, "decode", item, exc)
                bar.update(1)
                continue
            sr = run.codec.info.sample_rate
            self.cache.save_arrays("decode", self._decode_key(run, item), audio=audio.astype(np.float32),
                                   seconds=np.float64(elapsed), audio_seconds=np.float64(audio.shape[1] / sr))
            run.decode_seconds += elapsed
            run.audio_seconds_decoded += audio.shape[1] / sr
            bar.update(1)
        bar.close()

    def _loaded_groups(self, run: CodecRun, items: list[Item], sr: int, stage: str
                       ) -> Iterator[list[tuple[Item, np.ndarray]]]:
        """Read items at ``sr`` and yield groups of equal length (at most ``batch_items``)."""
        size = max(1, self.config.batch_items)
        for start in range(0, len(items), size):
            by_length: dict[int, list[tuple[Item, np.ndarray]]] = {}
            for item in items[start:start + size]:
                try:
                    audio, _ = read_audio(item.path, sample_rate=sr)
                except AudioError as exc:
                    self._item_error(run, stage, item, exc)
                    continue
                by_length.setdefault(audio.shape[1], []).append((item, audio))
            yield from by_length.values()

    def _safe_cached(self, run: CodecRun, item: Item, stage: str) -> bool:
        try:
            key = self._encode_key(run, item) if stage == "encode" else self._decode_key(run, item)
        except AudioError:
            return False
        return self.cache.has_arrays(stage, key)

    # ------------------------------------------------------------------------------------------
    # metrics
    # ------------------------------------------------------------------------------------------
    def _metrics(self) -> list[ItemMetric | SetMetric]:
        """Build the configured metrics; set metrics get the run's cache and reference name."""
        out = []
        for name in self.config.metrics:
            options = dict(self.config.metric_options.get(name, {}))
            factory = resolve(METRICS, name, "metric", MetricError)
            if _accepts(factory, "cache"):
                options.setdefault("cache", str(self.cache_dir / "embeddings"))
            if _accepts(factory, "reference_name"):
                options.setdefault("reference_name",
                                   f"{self.dataset.name}:{self.dataset.identity}:{self.config.reconstruction_split}")
            if _accepts(factory, "workers"):
                options.setdefault("workers", self.config.workers)
            out.append(factory(**options))
        return out

    def reconstruction_metrics(self, run: CodecRun, items: list[Item], metrics) -> None:
        """Score decoded items against the originals at their native rate (see module doc)."""
        if not run.codec.info.can_decode:
            return
        pairs: list[tuple[Item, np.ndarray, np.ndarray, int, str]] = []
        set_pairs: list[tuple[Item, np.ndarray, np.ndarray, int]] = []  # whole references
        need_set_pairs = any(not isinstance(m, ItemMetric) for m in metrics)
        for item in tqdm(items, desc=f"align {run.label}", disable=not self.progress, unit="item"):
            decoded = self.cache.load_arrays("decode", self._decode_key(run, item)) if self._safe_cached(run, item, "decode") else None
            if decoded is None:
                continue  # encode/decode failure already recorded
            try:
                reference, native = read_audio(item.path)
                estimate = resample(decoded["audio"], run.codec.info.sample_rate, native)
                if estimate.shape[0] != reference.shape[0]:
                    raise CodecError(f"decoded {estimate.shape[0]} channels for {reference.shape[0]} input channels")
                aligned = [align_pair(r, e, item=item.id) for r, e in zip(reference, estimate)]
            except Exception as exc:
                self._item_error(run, "metrics", item, exc)
                continue
            note = "; ".join(dict.fromkeys(a[2].nan_reason for a in aligned if a[2].nan_reason))
            pairs.append((item, np.stack([a[0] for a in aligned]), np.stack([a[1] for a in aligned]), native, note))
            if need_set_pairs:
                set_pairs.append((item, reference, fit_to_reference(estimate, reference.shape[-1]), native))
        for metric in metrics:
            if isinstance(metric, ItemMetric):
                self._item_metric(run, metric, pairs)
            else:
                self._set_metric(run, metric, set_pairs)

    def _item_metric(self, run: CodecRun, metric: ItemMetric, pairs) -> None:
        """Per-item values (mean over channels), cached; uncached ones scored in one batch."""
        card = metric.card
        options = self.config.metric_options.get(card.name, {})
        keys = [cache_key("metric", card.name, card.version, options, run.codec.identity, self.content_hash(p[0]))
                for p in pairs]
        values: dict[str, float | None] = {}
        todo = []
        for pair, key in zip(pairs, keys):
            cached = self.cache.load_value("metrics", key)
            if cached is None:
                todo.append((pair, key))
            else:
                values[pair[0].id] = cached["value"]
        for rate in sorted({pair[3] for pair, _ in todo}):
            group = [(pair, key) for pair, key in todo if pair[3] == rate]
            flat = [(r, e) for pair, _ in group for r, e in zip(pair[1], pair[2])]
            try:
                scores = metric.batch(flat, rate)
            except Exception:  # isolate the failing item(s); the others still get scored
                scores = None
            start = 0
            for pair, key in tqdm(group, desc=f"{card.name} {run.label}", disable=not self.progress or scores is not None,
                                  unit="item"):
                n = pair[1].shape[0]
                try:
                    item_scores = scores[start:start + n] if scores is not None else \
                        [float(metric(r, e, rate)) for r, e in zip(pair[1], pair[2])]
                except Exception as exc:
                    self._item_error(run, f"metric:{card.name}", pair[0], exc)
                    start += n
                    continue
                start += n
                value = float(np.mean(item_scores))
                value = None if math.isnan(value) else value
                self.cache.save_value("metrics", key, {"value": value})
                values[pair[0].id] = value
        for pair in pairs:
            if pair[0].id not in values:
                continue
            value = values[pair[0].id]
            self.store.add_item(codec_label=run.label, codec_id=run.codec.identity, dataset_id=self.dataset.identity,
                                split=pair[0].split, item=pair[0].id, metric=card.name,
                                value=float("nan") if value is None else value,
                                note="" if value is not None else (pair[4] or "undefined for this item"))

    def _set_metric(self, run, metric: SetMetric, pairs) -> None:
        card = metric.card
        if len(pairs) < 2:
            self.store.add_error(run.label, f"metric:{card.name}", "*", "", "fewer than 2 decoded items; set metric skipped")
            return
        key = cache_key("setmetric", card.name, card.version, "whole-reference",
                        self.config.metric_options.get(card.name, {}),
                        run.codec.identity, sorted(self.content_hash(p[0]) for p in pairs))
        cached = self.cache.load_value("metrics", key)
        if cached is None:
            try:
                result = metric.compute([p[1].mean(axis=0) for p in pairs], [p[2].mean(axis=0) for p in pairs],
                                        pairs[0][3] if len({p[3] for p in pairs}) == 1 else _common_rate(pairs),
                                        ids=[p[0].id for p in pairs])
            except Exception as exc:
                self.store.add_error(run.label, f"metric:{card.name}", "*", "", _describe(exc))
                return
            cached = {"value": result.value, "per_item": result.per_item, "settings": result.settings}
            self.cache.save_value("metrics", key, cached)
        self.store.add(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                       weights_id=run.codec.info.weights_id, dataset=self.dataset.name,
                       dataset_id=self.dataset.identity, split=self.config.reconstruction_split,
                       stage="reconstruction", metric=card.name, value=cached["value"], n=len(pairs),
                       unit=card.unit, higher_is_better=card.higher_is_better, convention=card.convention,
                       implementation=card.implementation, metric_version=card.version,
                       settings=cached["settings"])
        for item_id, value in cached["per_item"].items():
            self.store.add_item(codec_label=run.label, codec_id=run.codec.identity, dataset_id=self.dataset.identity,
                                split=self.config.reconstruction_split, item=item_id,
                                metric=f"{card.name}_contribution", value=value)

    def summarise_item_metrics(self, run: CodecRun, metrics, n_items: int) -> None:
        """Aggregate per-item values into one row per metric (mean, std, bootstrap CI)."""
        for metric in metrics:
            if not isinstance(metric, ItemMetric):
                continue
            card = metric.card
            values = np.array([r["value"] for r in self.store.items
                               if r["codec_id"] == run.codec.identity and r["metric"] == card.name], dtype=float)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else float("nan")
            low, high = _bootstrap_ci(finite, seed=self.config.seed)
            self.store.add(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                           weights_id=run.codec.info.weights_id, dataset=self.dataset.name,
                           dataset_id=self.dataset.identity, split=self.config.reconstruction_split,
                           stage="reconstruction", metric=card.name, value=mean,
                           std=float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                           ci_low=low, ci_high=high, n=int(finite.size), n_failed=n_items - int(finite.size),
                           unit=card.unit, higher_is_better=card.higher_is_better, convention=card.convention,
                           implementation=card.implementation, metric_version=card.version)

    # ------------------------------------------------------------------------------------------
    # probes
    # ------------------------------------------------------------------------------------------
    def embeddings(self, run: CodecRun, items: list[Item], representation: str) -> dict[str, np.ndarray]:
        """item id -> ``[dim, frames]`` (channels averaged) for ``latents`` or ``features``."""
        out = {}
        for item in items:
            if not self._safe_cached(run, item, "encode"):
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

    def probe(self, runs: list[CodecRun]) -> None:
        """Probe every task x codec x representation x head from cached embeddings.

        Results (summary rows, per-seed rows, test predictions) are cached per probe; then each
        codec is compared with the best codec of its task/head/representation by a paired
        bootstrap test on the same test items (rows of stage ``probe_paired``).
        """
        from benchmark.probes import ProbeConfig, ProbePredictions, paired_test, run_probe
        from tasks import create_task

        probe_config = ProbeConfig(**self.config.probe)
        # device/threads change speed, not results: keep them out of the cache key
        key_config = {k: v for k, v in probe_config.as_dict().items() if k not in ("device", "num_threads")}
        items = self.items()
        for task_name in self.config.tasks:
            task = create_task(task_name)
            labelled = [it for it in items if task.label_field in it.labels]
            if not labelled:
                self.log(f"[probe] dataset {self.dataset.name!r} has no {task.label_field!r} labels: "
                         f"task {task_name!r} skipped")
                continue
            label_key = sorted((it.id, self.content_hash(it), it.split) for it in labelled)
            predictions: dict[tuple[str, str], list[tuple[CodecRun, ProbePredictions, float]]] = {}
            for run in tqdm(runs, desc=f"probe {task_name}", disable=not self.progress, unit="codec"):
                for representation in self.config.representations:
                    if representation == "features" and not run.codec.info.has_features:
                        continue
                    embeddings = None
                    for head in probe_config.heads:
                        key = cache_key("probe", task_name, getattr(task, "version", "1"), representation, head,
                                        key_config, run.codec.identity, label_key)
                        cached = self.cache.load_value("probes", key)
                        pred_path = self.cache.root / "artifacts" / "probes" / key[:2] / f"{key}.predictions.npz"
                        if cached is None or not pred_path.exists():
                            if embeddings is None:
                                embeddings = self.embeddings(run, labelled, representation)
                            try:
                                outcome = run_probe(task, embeddings, [it for it in labelled if it.id in embeddings],
                                                    head, probe_config)
                            except Exception as exc:
                                self.store.add_error(run.label, f"probe:{task_name}:{head}:{representation}", "*", "",
                                                     _describe(exc))
                                continue
                            outcome.test_item_scores.save(pred_path)
                            cached = {"rows": outcome.rows, "per_seed": outcome.per_seed}
                            self.cache.save_value("probes", key, cached)
                        self._add_probe_rows(run, task, representation, cached)
                        primary = next((r for r in cached["rows"] if r.get("metric") == task.primary_metric), None)
                        if primary is not None:
                            predictions.setdefault((representation, head), []).append(
                                (run, ProbePredictions.load(pred_path), float(primary["value"])))
            self._paired_tests(task, predictions, paired_test)

    def _add_probe_rows(self, run: CodecRun, task, representation: str, cached: dict) -> None:
        base = dict(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                    weights_id=run.codec.info.weights_id, dataset=self.dataset.name,
                    dataset_id=self.dataset.identity, split="test", stage="probe", task=task.name,
                    representation=representation)
        for row in cached["rows"]:  # summary: mean over seeds, CI over test items
            self.store.add(**base, metric=row["metric"], head=row["head"], pooling=row.get("pooling"),
                           value=row["value"], std=row.get("std"), ci_low=row.get("ci_low"),
                           ci_high=row.get("ci_high"), n=row.get("n_test"), higher_is_better=True,
                           convention=row.get("convention"), metric_version=row.get("task_version"),
                           settings={k: row[k] for k in ("n_train", "n_valid", "seeds", "primary") if k in row})
        for row in cached["per_seed"]:
            self.store.add(**base, metric=row["metric"], head=row["head"], pooling=row.get("pooling"),
                           seed=row["seed"], value=row["value"], n=row.get("n_test"), higher_is_better=True,
                           settings={k: row[k] for k in ("best_epoch", "epochs_run") if k in row})

    def _paired_tests(self, task, predictions, paired_test) -> None:
        """Each codec vs the best one (same task/representation/head) on the primary metric."""
        for (representation, head), entries in predictions.items():
            if len(entries) < 2:
                continue
            best_run, best_pred, _ = max(entries, key=lambda e: e[2])
            for run, pred, _ in entries:
                if run is best_run:
                    continue
                try:
                    test = paired_test(pred, best_pred, task.primary_metric, seed=self.config.seed, task=task)
                except Exception as exc:
                    self.store.add_error(run.label, f"paired:{task.name}", "*", "", _describe(exc))
                    continue
                self.store.add(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                               dataset=self.dataset.name, dataset_id=self.dataset.identity, split="test",
                               stage="probe_paired", task=task.name, representation=representation, head=head,
                               metric=f"{task.primary_metric}_minus_best", value=test["delta"],
                               ci_low=test["ci_low"], ci_high=test["ci_high"], n=test["n_items"],
                               settings={"best": best_run.label, "p_value": test["p_value"],
                                         "method": test.get("method")})

    def run_steps_study(self, runs: list[CodecRun], items: list[Item]) -> None:
        """Quality vs decoding steps and seed-to-seed variance of the stochastic decoders."""
        from benchmark.steps_study import steps_study, summarize_steps_study

        study = dict(self.config.steps_study)
        stochastic = [r for r in runs if r.codec.info.stochastic and r.codec.info.can_decode]
        if not stochastic:
            return
        chosen = items[: study.get("max_items", 16)]
        specs = [{"name": r.spec.name, "options": r.options, "label": r.label} for r in stochastic]
        key = cache_key("steps_study", study, [r.codec.identity for r in stochastic],
                        [self.content_hash(it) for it in chosen])
        summary = self.cache.load_value("steps_study", key)
        if summary is None:
            try:
                rows = steps_study(specs, chosen, steps=study.get("steps", (1, 2, 4, 8)),
                                   seeds=study.get("seeds", (0, 1, 2)),
                                   metrics=study.get("metrics", ("si_sdr", "mel_distance")),
                                   device=self.config.device, progress=self.progress)
                summary = summarize_steps_study(rows)
            except Exception as exc:
                self.store.add_error("*", "steps_study", "*", "", _describe(exc))
                return
            self.cache.save_value("steps_study", key, summary)
        labels = {r.label: r for r in stochastic}
        for row in summary:
            run = labels.get(row["codec"])
            if run is None:
                continue
            self.store.add(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                           weights_id=run.codec.info.weights_id, dataset=self.dataset.name,
                           dataset_id=self.dataset.identity, split=self.config.reconstruction_split,
                           stage="steps_study", metric=row["metric"], value=row["mean"], std=row.get("seed_std"),
                           n=row.get("n_items"), unit=row.get("unit"), higher_is_better=row.get("higher_is_better"),
                           settings={"steps": row["steps"], "nfe": row.get("nfe"),
                                     "item_seed_std": row.get("item_seed_std"), "seeds": study.get("seeds", (0, 1, 2))})

    # ------------------------------------------------------------------------------------------
    # cost rows
    # ------------------------------------------------------------------------------------------
    def cost_rows(self, run: CodecRun, items: list[Item], recon_items: list[Item]) -> None:
        enc_s = enc_a = dec_s = dec_a = 0.0
        for item in items:
            if self._safe_cached(run, item, "encode"):
                a = self.cache.load_arrays("encode", self._encode_key(run, item))
                if a is not None:
                    enc_s += float(a["seconds"]); enc_a += float(a["audio_seconds"])
        for item in recon_items:
            if self._safe_cached(run, item, "decode"):
                a = self.cache.load_arrays("decode", self._decode_key(run, item))
                if a is not None:
                    dec_s += float(a["seconds"]); dec_a += float(a["audio_seconds"])
        info = run.codec.info
        base = dict(codec=run.spec.name, codec_label=run.label, codec_id=run.codec.identity,
                    weights_id=info.weights_id, dataset=self.dataset.name, dataset_id=self.dataset.identity,
                    stage="cost")
        facts = {
            "parameters": (float(info.parameters), "count", None),
            "compression_ratio": (info.compression_ratio, "x", None),
            "latent_rate_hz": (info.latent_rate_hz, "Hz", None),
            "latent_dim": (float(info.latent_dim), "channels", None),
            "decode_steps": (float(info.decode_steps) if info.decode_steps else float("nan"), "steps", None),
            "encode_speed": (enc_a / enc_s if enc_s > 0 else float("nan"), "x realtime", True),
            "decode_speed": (dec_a / dec_s if dec_s > 0 and info.can_decode else float("nan"), "x realtime", True),
        }
        for key in ("train_seconds", "train_steps"):
            if key in run.train_info:
                facts[key] = (float(run.train_info[key]), "s" if key == "train_seconds" else "steps", None)
        for metric, (value, unit, hib) in facts.items():
            self.store.add(**base, metric=metric, value=value, unit=unit, higher_is_better=hib,
                           settings={"license": f"code {info.code_license}; weights {info.weights_license}",
                                     "stochastic": info.stochastic, "hardware_note": "measured when computed"})

    # ------------------------------------------------------------------------------------------
    # errors
    # ------------------------------------------------------------------------------------------
    def _item_error(self, run: CodecRun, stage: str, item: Item, exc: BaseException) -> None:
        message = _describe(exc)
        self.store.add_error(run.label, stage, item.id, str(item.path), message)
        self.log(f"[{run.label}] {stage} failed for item {item.id} ({item.path}): {message}")

    # ------------------------------------------------------------------------------------------
    # plan / run
    # ------------------------------------------------------------------------------------------
    def plan(self) -> list[str]:
        """Human-readable plan: what would run and what is cached (for ``--dry-run``)."""
        cfg = self.config
        lines = [f"run {cfg.run_name} -> {self.run_dir}", f"cache {self.cache_dir}",
                 f"dataset {cfg.dataset.name} {cfg.dataset.options}"]
        try:
            items = self.items()
            recon = self.items(cfg.reconstruction_split)
            lines.append(f"  {len(items)} items ({len(recon)} in split {cfg.reconstruction_split!r}); "
                         f"identity {self.dataset.identity}")
        except Exception as exc:
            lines.append(f"  dataset not available yet: {_describe(exc)}")
            return lines
        for spec in cfg.codecs:
            if spec.train is not None:
                lines.append(f"codec {spec.display}: trains first ({spec.train}); cache status known after training")
                continue
            try:
                run = self.build_codec(spec)
            except Exception as exc:
                lines.append(f"codec {spec.display}: cannot be built: {_describe(exc)}")
                continue
            enc = sum(self._safe_cached(run, it, "encode") for it in items)
            dec = sum(self._safe_cached(run, it, "decode") for it in recon) if run.codec.info.can_decode else 0
            lines.append(f"codec {spec.display} [{run.codec.identity}]: encode {enc}/{len(items)} cached"
                         + (f", decode {dec}/{len(recon)} cached" if run.codec.info.can_decode else ", feature-only"))
        lines.append(f"metrics: {', '.join(cfg.metrics)}")
        lines.append(f"probes: tasks {', '.join(cfg.tasks)}; {cfg.probe or 'default probe settings'}")
        return lines

    def run(self) -> Path:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.run_dir / "config.yaml")
        self._status("running")
        t_start = time.perf_counter()
        items = self.items()
        recon_items = self.items(cfg.reconstruction_split)
        self.log(f"dataset {self.dataset.name} [{self.dataset.identity}]: {len(items)} items, "
                 f"{len(recon_items)} for reconstruction")
        metrics = self._metrics()
        runs: list[CodecRun] = []
        for spec in cfg.codecs:
            try:
                run = self.build_codec(spec)
            except Exception as exc:
                self.store.add_error(spec.display, "build", "*", "", _describe(exc))
                self.log(f"[{spec.display}] cannot be built, skipped: {_describe(exc)}")
                continue
            needs_all = bool(cfg.tasks)
            self.encode_items(run, items if needs_all else recon_items)
            self.decode_items(run, recon_items)
            n_before = len(self.store.items)
            self.reconstruction_metrics(run, recon_items, metrics)
            if run.codec.info.can_decode:
                self.summarise_item_metrics(run, metrics, len(recon_items))
            self.cost_rows(run, items if needs_all else recon_items, recon_items)
            runs.append(run)
            self.store.write()  # nothing computed is lost if a later codec dies
            self.log(f"[{run.label}] done ({len(self.store.items) - n_before} item values)")
        if cfg.tasks and runs:
            self.probe(runs)
        if cfg.steps_study and runs:
            self.run_steps_study(runs, recon_items)
        self.store.write()
        self._write_report()
        self._status("complete", seconds=time.perf_counter() - t_start)
        return self.run_dir

    def _write_report(self) -> None:
        """Build the report unless the same numbers already have one (cached re-runs)."""
        content = cache_key([{k: v for k, v in r.items() if k != "timestamp"} for r in self.store.rows],
                            self.store.items, self.store.errors)
        marker = self.run_dir / "report" / ".results-hash"
        if marker.exists() and marker.read_text() == content:
            return
        from benchmark.report import build_report

        try:
            build_report([self.run_dir], self.run_dir / "report")
            marker.write_text(content)
        except Exception as exc:  # the numbers are safe on disk; say what failed
            self.log(f"report failed ({_describe(exc)}); results are in {self.run_dir}/results.csv")
            traceback.print_exc()

    def _status(self, state: str, **extra: Any) -> None:
        path = self.run_dir / "status.json"
        tmp = path.with_name(".status.json.tmp")
        tmp.write_text(json.dumps({"state": state, "run": self.config.run_name,
                                   "cache_hits": self.cache.hits, "cache_misses": self.cache.misses,
                                   "errors": len(self.store.errors), **extra}, indent=1))
        tmp.replace(path)


# ----------------------------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _accepts(factory: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _parameter_free(factory: Callable) -> bool:
    """Codecs without weights (no checkpoint/weights/preset arguments) adopt the dataset rate."""
    return not any(_accepts(factory, n) for n in ("checkpoint", "weights", "preset"))


def _common_rate(pairs) -> int:
    raise CodecError("set metrics need all items at one sample rate; resample the dataset first")


def _bootstrap_ci(values: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95) -> tuple[float, float]:
    if values.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _read_train_info(checkpoint: Path) -> dict[str, Any]:
    info_path = checkpoint.with_suffix(".json")
    if info_path.exists():
        try:
            return json.loads(info_path.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


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
