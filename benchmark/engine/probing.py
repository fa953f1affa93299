"""Probing stage of ``run``: probes read the latents/features cached by the encode stage.

Embedding (the codec's job, expensive) is cached once per item; prediction (the probes' job,
cheap, deterministic) is cached per task x representation x head x codec under a key that
holds the probe settings, the codec identity, and every labelled item's id, content hash,
split **and labels** (a corrected label re-trains the probe).

Each codec is then compared with the run's reference codec (``RunConfig.reference_codec``, not
the test-set winner) on every task's primary metric, on the same test items, for every
representation and head: a paired bootstrap over test items gives the difference, its interval
and its standard error (:func:`probe_difference`), and Holm's correction runs over the whole
family of codec x task x representation x head comparisons
(:func:`benchmark.engine.compare.correct_family`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from benchmark.cache import cache_key
from benchmark.engine.compare import (PairedDifference, comparison_settings, correct_family, replicate_difference,
                                      resolve_reference)
from benchmark.engine.score import describe

if TYPE_CHECKING:
    from benchmark.engine.run import CodecRun, Pipeline

PROBE_CACHE_VERSION = "2"
PAIRED_CACHE_VERSION = "1"


def probe_all(pipe: "Pipeline", runs: list["CodecRun"]) -> None:
    """Probe every task x codec x representation x head from cached embeddings."""
    from benchmark.probes import ProbeConfig, ProbePredictions
    from benchmark.probes.probe import create_task  # the task registry, resolved by path

    config = pipe.config
    probe_config = ProbeConfig(**config.probe)
    # device/threads change speed, not results: keep them out of the cache key
    key_config = {k: v for k, v in probe_config.as_dict().items() if k not in ("device", "num_threads")}
    items = pipe.items()
    # (task, representation, head) -> [(run, probe cache key, predictions)]: one family for all
    predictions: dict[tuple[str, str, str], list] = {}
    tasks = {}
    for task_name in config.tasks:
        task = create_task(task_name)
        labelled = [it for it in items if task.label_field in it.labels]
        if not labelled:
            pipe.log(f"[probe] dataset {pipe.dataset.name!r} has no {task.label_field!r} labels: "
                     f"task {task_name!r} skipped")
            continue
        label_key = sorted((it.id, pipe.hashes(it), it.split, json.dumps(dict(it.labels), sort_keys=True, default=str))
                           for it in labelled)
        tasks[task.name] = task
        slots, jobs = [], []  # in order: (run, representation, head, key, cached or job index)
        for run in runs:
            for representation in config.representations:
                if representation == "features" and not run.codec.info.has_features:
                    continue
                embeddings = None
                for head in probe_config.heads:
                    key = cache_key("probe", PROBE_CACHE_VERSION, task_name, getattr(task, "version", "1"),
                                    representation, head, key_config, run.codec.identity, label_key)
                    cached = pipe.cache.load_value("probes", key)
                    if cached is None or not _predictions_path(pipe, key).exists():
                        if embeddings is None:
                            embeddings = pipe.embeddings(run, labelled, representation)
                        jobs.append((task, embeddings, [it for it in labelled if it.id in embeddings], head,
                                     probe_config))
                        cached = len(jobs) - 1
                    slots.append((run, representation, head, key, cached))
        workers = config.workers if str(probe_config.device) == "cpu" else 1  # one GPU: one process
        outcomes = run_probe_jobs(jobs, workers, progress=pipe.progress, desc=f"probe {task_name}")
        for run, representation, head, key, cached in slots:
            if isinstance(cached, int):
                outcome, error = outcomes[cached]
                if error is not None:
                    pipe.store.add_error(run.label, f"probe:{task_name}:{head}:{representation}", "*", "", error)
                    continue
                outcome.test_item_scores.save(_predictions_path(pipe, key))
                cached = {"rows": outcome.rows, "per_seed": outcome.per_seed}
                pipe.cache.save_value("probes", key, cached)
            _add_probe_rows(pipe, run, task, representation, cached)
            if any(r.get("metric") == task.primary_metric for r in cached["rows"]):
                predictions.setdefault((task.name, representation, head), []).append(
                    (run, key, ProbePredictions.load(_predictions_path(pipe, key))))
    _paired_tests(pipe, runs, tasks, predictions, probe_config)


def _predictions_path(pipe: "Pipeline", key: str):
    return pipe.cache.root / "artifacts" / "probes" / key[:2] / f"{key}.predictions.npz"


def _probe_job(job: tuple) -> tuple[Any, str | None]:
    """One probe (task, embeddings, items, head, config) -> (outcome, None) or (None, error)."""
    from benchmark.probes import run_probe

    try:
        return run_probe(*job), None
    except Exception as exc:
        return None, describe(exc)


def run_probe_jobs(jobs: list[tuple], workers: int, progress: bool = False, desc: str = "probe") -> list[tuple]:
    """Run probes, in ``workers`` processes when there are several (results in job order).

    Each probe is seeded and trains on one torch thread (``ProbeConfig.num_threads``), so its
    result does not depend on the process it runs in: parallel and serial runs give the same
    numbers (tested); ``workers`` processes use the cores one probe alone leaves idle.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [_probe_job(job) for job in tqdm(jobs, desc=desc, disable=not progress or not jobs, unit="probe")]
    import concurrent.futures as cf
    import multiprocessing as mp

    # spawn: workers never inherit torch/OpenMP thread state from the parent
    with cf.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        return list(tqdm(pool.map(_probe_job, jobs), total=len(jobs), desc=desc, disable=not progress, unit="probe"))


def _add_probe_rows(pipe: "Pipeline", run: "CodecRun", task, representation: str, cached: dict) -> None:
    base = dict(pipe.columns(run, "test"), stage="probe", task=task.name, representation=representation)
    for row in cached["rows"]:  # summary: mean over seeds, CI over test items
        pipe.store.add(**base, metric=row["metric"], head=row["head"], pooling=row.get("pooling"),
                       value=row["value"], std=row.get("std"), ci_low=row.get("ci_low"),
                       ci_high=row.get("ci_high"), n=row.get("n_test"), higher_is_better=True,
                       convention=row.get("convention"), metric_version=row.get("task_version"),
                       settings={k: row[k] for k in ("n_train", "n_valid", "seeds", "primary") if k in row})
    for row in cached["per_seed"]:
        pipe.store.add(**base, metric=row["metric"], head=row["head"], pooling=row.get("pooling"),
                       seed=row["seed"], value=row["value"], n=row.get("n_test"), higher_is_better=True,
                       settings={k: row[k] for k in ("best_epoch", "epochs_run") if k in row})


def probe_difference(pred, reference, task, metric: str, *, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> PairedDifference:
    """``metric(pred) - metric(reference)`` on the same test items (two :class:`ProbePredictions`
    of one task): :func:`benchmark.probes.paired_test` checks the pairing (same items, classes
    and targets) and gives the difference; the replicates of the same paired bootstrap (the
    same weights, ``seed``) give the interval, the standard error and the p-value
    (:func:`benchmark.engine.compare.replicate_difference`)."""
    from benchmark.probes import paired_test
    from benchmark.probes.stats import bootstrap_weights

    test = paired_test(pred, reference, metric, n_boot=n_boot, level=level, seed=seed, task=task)
    order = {item: k for k, item in enumerate(reference.ids)}
    aligned = dataclasses.replace(reference, ids=list(pred.ids), y_true=pred.y_true,
                                  scores=reference.scores[:, [order[i] for i in pred.ids]])
    weights = bootstrap_weights(len(pred.ids), n_boot, seed)
    replicates = (np.asarray(pred.metric_values(task, weights)[metric], dtype=np.float64)
                  - np.asarray(aligned.metric_values(task, weights)[metric], dtype=np.float64))
    return replicate_difference(test["delta"], replicates, len(pred.ids), higher_is_better=True, level=level)


def _paired_tests(pipe: "Pipeline", runs: list["CodecRun"], tasks: dict[str, Any], predictions: dict,
                  probe_config) -> None:
    """Each codec vs the reference codec on every task's primary metric, Holm over the family."""
    if probe_config.bootstrap < 2:
        pipe.log("[probe] probe.bootstrap < 2: codecs are not compared (the comparisons need its replicates)")
        return
    probed = {run.label for entries in predictions.values() for run, _, _ in entries}
    labels = [r.label for r in runs if r.label in probed and r.codec.info.can_decode]
    labels += [r.label for r in runs if r.label in probed and r.label not in labels]
    if len(labels) < 2:
        return
    reference, note = resolve_reference(pipe.config.reference_codec, labels)
    if note:
        pipe.log(f"[probe] {note}")
    n_boot, seed = probe_config.bootstrap, probe_config.bootstrap_seed
    tests: list[tuple[Any, str, str, str, PairedDifference]] = []
    for (task_name, representation, head), entries in predictions.items():
        ref = next(((key, pred) for run, key, pred in entries if run.label == reference), None)
        if ref is None:
            if len(entries) > 1:
                pipe.log(f"[probe] {task_name} {representation} {head}: the reference codec {reference!r} has no "
                         "probe here; its codecs are not compared")
            continue
        task = tasks[task_name]
        for run, key, pred in entries:
            if run.label == reference:
                continue
            paired_key = cache_key("probe_paired", PAIRED_CACHE_VERSION, key, ref[0], task.primary_metric, n_boot, seed)
            cached = pipe.cache.load_value("probe_paired", paired_key)
            if cached is None:
                try:
                    cached = probe_difference(pred, ref[1], task, task.primary_metric, n_boot=n_boot,
                                              seed=seed).as_dict()
                except Exception as exc:
                    pipe.store.add_error(run.label, f"paired:{task_name}", "*", "", describe(exc))
                    continue
                pipe.cache.save_value("probe_paired", paired_key, cached)
            tests.append((run, task_name, representation, head, PairedDifference(**cached)))
    rows = correct_family([t[-1] for t in tests], pipe.config.alpha)
    for (run, task_name, representation, head, _), row in zip(tests, rows):
        metric = tasks[task_name].primary_metric
        pipe.store.add(**pipe.columns(run, "test"), stage="probe_paired", task=task_name,
                       representation=representation, head=head, metric=f"{metric}_minus_{reference}",
                       value=row["delta"], ci_low=row["ci_low"], ci_high=row["ci_high"], n=row["n"],
                       higher_is_better=True, convention=f"codec minus {reference}",
                       settings=comparison_settings(row, metric=metric, reference=reference,
                                                    requested=pipe.config.reference_codec, note=note, n_boot=n_boot))
