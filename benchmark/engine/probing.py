"""Probing stage of ``run``: probes read the latents/features cached by the encode stage.

Embedding (the codec's job, expensive) is cached once per item; prediction (the probes' job,
cheap, deterministic) is cached per task x representation x head x codec under a key that
holds the probe settings, the codec identity, and every labelled item's id, content hash,
split **and labels** (a corrected label re-trains the probe). Each codec is then compared with
the best codec of its task/head/representation by a paired bootstrap on the same test items.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from benchmark.cache import cache_key
from benchmark.engine.score import describe

if TYPE_CHECKING:
    from benchmark.engine.run import CodecRun, Pipeline

PROBE_CACHE_VERSION = "2"


def probe_all(pipe: "Pipeline", runs: list["CodecRun"]) -> None:
    """Probe every task x codec x representation x head from cached embeddings."""
    from benchmark.probes import ProbeConfig, ProbePredictions, paired_test, run_probe
    from benchmark.probes.probe import create_task  # the task registry, resolved by path

    config = pipe.config
    probe_config = ProbeConfig(**config.probe)
    # device/threads change speed, not results: keep them out of the cache key
    key_config = {k: v for k, v in probe_config.as_dict().items() if k not in ("device", "num_threads")}
    items = pipe.items()
    for task_name in config.tasks:
        task = create_task(task_name)
        labelled = [it for it in items if task.label_field in it.labels]
        if not labelled:
            pipe.log(f"[probe] dataset {pipe.dataset.name!r} has no {task.label_field!r} labels: "
                     f"task {task_name!r} skipped")
            continue
        label_key = sorted((it.id, pipe.hashes(it), it.split, json.dumps(dict(it.labels), sort_keys=True, default=str))
                           for it in labelled)
        predictions: dict[tuple[str, str], list] = {}
        for run in tqdm(runs, desc=f"probe {task_name}", disable=not pipe.progress, unit="codec"):
            for representation in config.representations:
                if representation == "features" and not run.codec.info.has_features:
                    continue
                embeddings = None
                for head in probe_config.heads:
                    key = cache_key("probe", PROBE_CACHE_VERSION, task_name, getattr(task, "version", "1"),
                                    representation, head, key_config, run.codec.identity, label_key)
                    cached = pipe.cache.load_value("probes", key)
                    pred_path = pipe.cache.root / "artifacts" / "probes" / key[:2] / f"{key}.predictions.npz"
                    if cached is None or not pred_path.exists():
                        if embeddings is None:
                            embeddings = pipe.embeddings(run, labelled, representation)
                        try:
                            outcome = run_probe(task, embeddings, [it for it in labelled if it.id in embeddings],
                                                head, probe_config)
                        except Exception as exc:
                            pipe.store.add_error(run.label, f"probe:{task_name}:{head}:{representation}", "*", "",
                                                 describe(exc))
                            continue
                        outcome.test_item_scores.save(pred_path)
                        cached = {"rows": outcome.rows, "per_seed": outcome.per_seed}
                        pipe.cache.save_value("probes", key, cached)
                    _add_probe_rows(pipe, run, task, representation, cached)
                    primary = next((r for r in cached["rows"] if r.get("metric") == task.primary_metric), None)
                    if primary is not None:
                        predictions.setdefault((representation, head), []).append(
                            (run, ProbePredictions.load(pred_path), float(primary["value"])))
        _paired_tests(pipe, task, predictions, paired_test)


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


def _paired_tests(pipe: "Pipeline", task, predictions, paired_test) -> None:
    """Each codec vs the best one (same task/representation/head) on the primary metric."""
    for (representation, head), entries in predictions.items():
        if len(entries) < 2:
            continue
        best_run, best_pred, _ = max(entries, key=lambda e: e[2])
        for run, pred, _ in entries:
            if run is best_run:
                continue
            try:
                test = paired_test(pred, best_pred, task.primary_metric, seed=pipe.config.seed, task=task)
            except Exception as exc:
                pipe.store.add_error(run.label, f"paired:{task.name}", "*", "", describe(exc))
                continue
            pipe.store.add(**pipe.columns(run, "test"), stage="probe_paired", task=task.name,
                           representation=representation, head=head,
                           metric=f"{task.primary_metric}_minus_best", value=test["delta"],
                           ci_low=test["ci_low"], ci_high=test["ci_high"], n=test["n_items"],
                           settings={"best": best_run.label, "p_value": test["p_value"], "method": test.get("method")})
