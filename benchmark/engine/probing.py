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

A codec trained with several seeds (``train.seeds``) is probed once per training run, replicate
``k`` with probe seed ``probe.seeds[k]`` (one probe initialisation per training run, so the
spread over replicates holds the training and the probe seed together, at the cost of one
probe per run). Its ``probe`` row is the mean over replicates with a crossed bootstrap interval
(training run x test item, :func:`group_probe_rows`); each replicate keeps a ``probe_seed`` row;
its comparisons use :func:`benchmark.engine.compare.seeded_difference`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from benchmark.cache import cache_key
from benchmark.engine.compare import (PairedDifference, comparison_settings, correct_family, replicate_difference,
                                      resolve_reference, seeded_difference)
from benchmark.engine.score import describe
from benchmark.engine.summarise import ci_covers, seed_effects

if TYPE_CHECKING:
    from benchmark.engine.run import CodecRun, Pipeline

PROBE_CACHE_VERSION = "2"
PAIRED_CACHE_VERSION = "2"


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
            run_config = _replicate_config(probe_config, run)
            run_key_config = dict(key_config, seeds=list(run_config.seeds))
            for representation in config.representations:
                if representation == "features" and not run.codec.info.has_features:
                    continue
                embeddings = None
                for head in probe_config.heads:
                    key = cache_key("probe", PROBE_CACHE_VERSION, task_name, getattr(task, "version", "1"),
                                    representation, head, run_key_config, run.codec.identity, label_key)
                    cached = pipe.cache.load_value("probes", key)
                    if cached is None or not _predictions_path(pipe, key).exists():
                        if embeddings is None:
                            embeddings = pipe.embeddings(run, labelled, representation)
                        jobs.append((task, embeddings, [it for it in labelled if it.id in embeddings], head,
                                     run_config))
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
    groups = _group_predictions(pipe, runs, tasks, predictions, probe_config)
    _paired_tests(pipe, runs, tasks, groups, probe_config)


def _replicate_config(probe_config, run: "CodecRun"):
    """The probe settings of one run: replicate ``k`` of a multi-seed codec uses probe seed
    ``probe.seeds[k]`` alone (module docstring); other codecs use every probe seed."""
    if run.group is None:
        return probe_config
    seeds = list(probe_config.seeds)
    return dataclasses.replace(probe_config, seeds=(seeds[run.replicate_index % len(seeds)],))


def merge_predictions(preds: list) -> Any:
    """One :class:`ProbePredictions` holding every replicate's probe runs along the seed axis (same
    test items, classes and targets required), so its metric values are the mean over them."""
    first = preds[0]
    order_ok = all(p.ids == first.ids and list(p.classes) == list(first.classes) for p in preds)
    if not order_ok:
        raise ValueError("replicates were probed on different test items or classes; they cannot be pooled")
    return dataclasses.replace(first, scores=np.concatenate([p.scores for p in preds]),
                               seeds=tuple(s for p in preds for s in p.seeds))


def group_probe_rows(task, preds: list, n_boot: int, boot_seed: int, level: float = 0.95) -> list[dict[str, Any]]:
    """Rows of a multi-seed codec on one probe: per metric the mean over replicates (each
    replicate's value being its seed-mean), ``std`` = SD over replicates, and the crossed bootstrap
    interval: item resamples (the same weights for every replicate) plus resampled replicate
    effects (:func:`benchmark.engine.summarise.seed_effects`), clipped to [0, 1] (every probe metric is
    a fraction or an area under a curve, and additive seed effects can step past the bounds)."""
    from benchmark.probes.stats import bootstrap_weights, percentile_interval

    merged = merge_predictions(preds)
    per_replicate = [p.metric_values(task) for p in preds]
    weights = bootstrap_weights(len(merged.ids), n_boot, boot_seed)
    item_part = merged.metric_values(task, weights)
    rng = np.random.default_rng([boot_seed, 2])
    picks = rng.integers(0, len(preds), size=(n_boot, len(preds)))
    rows = []
    for name in task.metric_names:
        values = np.array([float(v[name]) for v in per_replicate])
        reps = np.asarray(item_part[name], dtype=np.float64) + seed_effects(values)[picks].mean(axis=1)
        lo, hi = np.clip(percentile_interval(reps, level), 0.0, 1.0)  # probe metrics are fractions
        rows.append({"metric": name, "value": float(values.mean()), "std": float(values.std(ddof=1)),
                     "ci_low": float(lo), "ci_high": float(hi), "n_test": len(merged.ids),
                     "seed_values": values.tolist(), "primary": name == task.primary_metric})
    return rows


def _group_predictions(pipe: "Pipeline", runs: list["CodecRun"], tasks: dict[str, Any], predictions: dict,
                       probe_config) -> dict[tuple[str, str, str], list[tuple[str, list, Any]]]:
    """Per (task, representation, head): ``(codec label, replicate predictions, cache keys)`` per
    codec, multi-seed codecs pooled (their ``probe`` rows stored here)."""
    out: dict[tuple[str, str, str], list] = {}
    for (task_name, representation, head), entries in predictions.items():
        by_group: dict[str, list] = {}
        for run, key, pred in entries:
            by_group.setdefault(run.group or run.label, []).append((run, key, pred))
        rows = out.setdefault((task_name, representation, head), [])
        for group, members in by_group.items():
            first = members[0][0]
            if first.group is None:
                rows.append((group, [members[0][2]], [members[0][1]]))
                continue
            expected = sum(1 for r in runs if r.group == group)
            if len(members) < expected:
                pipe.store.add_error(group, f"probe:{task_name}:{head}:{representation}", "*", "",
                                     f"only {len(members)} of {expected} training runs were probed; the codec's "
                                     "probe row is not pooled (see the probe_seed rows)")
                continue
            task = tasks[task_name]
            try:
                stats_rows = group_probe_rows(task, [m[2] for m in members], probe_config.bootstrap,
                                              probe_config.bootstrap_seed, probe_config.ci_level)
            except Exception as exc:
                pipe.store.add_error(group, f"probe:{task_name}:{head}:{representation}", "*", "", describe(exc))
                continue
            columns = pipe.group_columns(group, "test")
            for row in stats_rows:
                pipe.store.add(**columns, stage="probe", task=task.name, representation=representation,
                               metric=row["metric"], head=head, value=row["value"], std=row["std"],
                               ci_low=row["ci_low"], ci_high=row["ci_high"], n=row["n_test"], higher_is_better=True,
                               convention=task.card().get("convention"),
                               metric_version=task.card().get("task_version"),
                               settings={"seeds": [m[0].seed for m in members], "probe_seeds":
                                         [list(m[2].seeds) for m in members], "seed_values": row["seed_values"],
                                         "primary": row["primary"], "ci_covers": ci_covers(len(members))})
            rows.append((group, [m[2] for m in members], [m[1] for m in members]))
    return out


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
    replicate = run.group is not None
    base = dict(pipe.columns(run, "test"), stage="probe_seed" if replicate else "probe", task=task.name,
                representation=representation)
    for row in cached["rows"]:  # summary: mean over seeds, CI over test items
        pipe.store.add(**base, metric=row["metric"], head=row["head"], pooling=row.get("pooling"),
                       value=row["value"], std=row.get("std"), ci_low=row.get("ci_low"),
                       ci_high=row.get("ci_high"), n=row.get("n_test"), higher_is_better=True,
                       convention=row.get("convention"), metric_version=row.get("task_version"),
                       **({"seed": run.seed} if replicate else {}),
                       settings=dict({k: row[k] for k in ("n_train", "n_valid", "seeds", "primary") if k in row},
                                     ci_covers=ci_covers(1)))
    if replicate:
        return  # one probe seed: its row is the summary
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


def group_difference(preds_a: list, preds_b: list, task, metric: str, *, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> PairedDifference:
    """``metric`` of codec ``a`` minus codec ``b`` when either has several training runs (lists of
    replicate predictions on the same test items): the mean over replicates, the item part of the
    standard error from the paired bootstrap of the replicate-averaged metric (same weights for
    both), the seed parts from the spread of each codec's per-replicate values
    (:func:`benchmark.engine.compare.seeded_difference`)."""
    from benchmark.probes.stats import bootstrap_weights

    a, b = merge_predictions(preds_a), merge_predictions(preds_b)
    order = {item: k for k, item in enumerate(b.ids)}
    b = dataclasses.replace(b, ids=list(a.ids), y_true=a.y_true, scores=b.scores[:, [order[i] for i in a.ids]])
    seeds_a = np.array([float(p.metric_values(task)[metric]) for p in preds_a])
    seeds_b = np.array([float(p.metric_values(task)[metric]) for p in preds_b])
    weights = bootstrap_weights(len(a.ids), n_boot, seed)
    reps = (np.asarray(a.metric_values(task, weights)[metric], dtype=np.float64)
            - np.asarray(b.metric_values(task, weights)[metric], dtype=np.float64))
    n = len(a.ids)
    item_se = float(reps[np.isfinite(reps)].std(ddof=1)) * math.sqrt(n / (n - 1)) if n > 1 else float("nan")
    delta = float(seeds_a.mean() - seeds_b.mean())
    effect, effect_ci = float("nan"), (float("nan"), float("nan"))
    if n > 1 and item_se > 0:  # as replicate_difference: delta / (SE_item sqrt(n)), = d_z for a mean metric
        from benchmark.probes.stats import percentile_interval

        scale = item_se * math.sqrt(n)
        lo, hi = percentile_interval(reps, level)
        effect, effect_ci = delta / scale, (lo / scale, hi / scale)
    return seeded_difference(delta, seeds_a, seeds_b, item_se, n, higher_is_better=True, level=level,
                             effect_size=effect, effect_ci=effect_ci)


def _paired_tests(pipe: "Pipeline", runs: list["CodecRun"], tasks: dict[str, Any], groups: dict,
                  probe_config) -> None:
    """Each codec vs the reference codec on every task's primary metric, Holm over the family."""
    if probe_config.bootstrap < 2:
        pipe.log("[probe] probe.bootstrap < 2: codecs are not compared (the comparisons need its replicates)")
        return
    probed = {label for entries in groups.values() for label, _, _ in entries}
    order = []
    for r in runs:
        label = r.group or r.label
        if label in probed and label not in order and r.codec.info.can_decode:
            order.append(label)
    order += [label for r in runs for label in [r.group or r.label] if label in probed and label not in order]
    if len(order) < 2:
        return
    reference, note = resolve_reference(pipe.config.reference_codec, order)
    if note:
        pipe.log(f"[probe] {note}")
    n_boot, seed = probe_config.bootstrap, probe_config.bootstrap_seed
    tests: list[tuple[str, str, str, str, PairedDifference]] = []
    for (task_name, representation, head), entries in groups.items():
        ref = next(((keys, preds) for label, preds, keys in entries if label == reference), None)
        if ref is None:
            if len(entries) > 1:
                pipe.log(f"[probe] {task_name} {representation} {head}: the reference codec {reference!r} has no "
                         "probe here; its codecs are not compared")
            continue
        task = tasks[task_name]
        for label, preds, keys in entries:
            if label == reference:
                continue
            paired_key = cache_key("probe_paired", PAIRED_CACHE_VERSION, keys, ref[0], task.primary_metric, n_boot,
                                   seed)
            cached = pipe.cache.load_value("probe_paired", paired_key)
            if cached is None:
                try:
                    if len(preds) == 1 and len(ref[1]) == 1:
                        result = probe_difference(preds[0], ref[1][0], task, task.primary_metric, n_boot=n_boot,
                                                  seed=seed)
                    else:
                        result = group_difference(preds, ref[1], task, task.primary_metric, n_boot=n_boot, seed=seed)
                    cached = result.as_dict()
                except Exception as exc:
                    pipe.store.add_error(label, f"paired:{task_name}", "*", "", describe(exc))
                    continue
                pipe.cache.save_value("probe_paired", paired_key, cached)
            tests.append((label, task_name, representation, head, PairedDifference(**cached)))
    rows = correct_family([t[-1] for t in tests], pipe.config.alpha)
    for (label, task_name, representation, head, _), row in zip(tests, rows):
        metric = tasks[task_name].primary_metric
        pipe.store.add(**pipe.group_columns(label, "test"), stage="probe_paired", task=task_name,
                       representation=representation, head=head, metric=f"{metric}_minus_{reference}",
                       value=row["delta"], ci_low=row["ci_low"], ci_high=row["ci_high"], n=row["n"],
                       higher_is_better=True, convention=f"codec minus {reference}",
                       settings=comparison_settings(row, metric=metric, reference=reference,
                                                    requested=pipe.config.reference_codec, note=note, n_boot=n_boot))
