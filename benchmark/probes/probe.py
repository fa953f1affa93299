"""Probe engine: from cached embeddings and labelled items to result rows with intervals.

:func:`run_probe` trains one head type on one task for several seeds and returns a
:class:`ProbeOutcome`:

- ``rows``: one row per metric - mean over seeds (``value``), standard deviation over seeds
  (``std``, ``ddof=1``; 0 for one seed), percentile bootstrap interval over test items of the
  seed-mean (``ci_low``, ``ci_high``), split sizes, head, pooling, seeds;
- ``per_seed``: one row per seed and metric, with the chosen epoch and validation score;
- ``test_item_scores``: the test predictions of every seed (:class:`ProbePredictions`), which
  :func:`paired_test` uses to compare two codecs on the same test items.

Every number is computed on the test split exactly once per seed, with the checkpoint chosen
on the validation split (see :mod:`benchmark.probes.train`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from benchmark.data.dataset import Item
from benchmark.errors import BenchmarkError
from benchmark.probes.heads import HEADS
from benchmark.probes.pooling import POOLINGS, PoolingError, pooled_matrix
from benchmark.probes.stats import bootstrap_weights, paired_bootstrap, paired_permutation, percentile_interval
from benchmark.probes.train import Standardizer, predict_scores, train_probe

PROBE_VERSION = "1"


class ProbeError(BenchmarkError, ValueError):
    """Inputs that cannot be probed (missing split, no labels...); the message says the fix."""


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Probe protocol settings. Part of the run's resolved config and of every result row.

    heads: head types the pipeline runs (each through :func:`run_probe`).
    seeds: one trained head per seed; results are mean (std) over seeds.
    pooling: time pooling of ``[dim, frames]`` embeddings (:data:`POOLINGS`).
    max_epochs, patience: early stopping on the validation primary metric.
    lr, weight_decay: Adam settings. batch_size: ``None`` = full batch, else shuffled
        mini-batches of this size.
    bootstrap: bootstrap replicates over test items for the intervals (0 disables).
    ci_level: interval coverage. bootstrap_seed: seed of the resampling (shared by every
        codec, so intervals and paired tests use the same replicates).
    hidden, dropout: MLP head size and dropout.
    device: torch device for training. num_threads: torch CPU threads while probing (the
        heads are tiny: one thread is fastest and avoids oversubscribing shared cores;
        ``None`` leaves torch's setting).
    """

    heads: tuple[str, ...] = ("linear", "mlp")
    seeds: tuple[int, ...] = (0, 1, 2)
    pooling: str = "mean_std"
    max_epochs: int = 300
    patience: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int | None = None
    bootstrap: int = 1000
    ci_level: float = 0.95
    bootstrap_seed: int = 0
    hidden: int = 512
    dropout: float = 0.5
    min_delta: float = 0.0
    device: str = "cpu"
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        unknown = [h for h in self.heads if h not in HEADS]
        if unknown:
            raise ProbeError(f"unknown probe head(s) {unknown}; known: {sorted(HEADS)}")
        if self.pooling not in POOLINGS:
            raise ProbeError(f"unknown pooling {self.pooling!r}; known: {sorted(POOLINGS)}")
        if not self.seeds:
            raise ProbeError("ProbeConfig.seeds is empty; give at least one seed")
        if self.max_epochs < 1 or self.patience < 1:
            raise ProbeError("max_epochs and patience must be >= 1")
        if not 0.0 < self.ci_level < 1.0:
            raise ProbeError(f"ci_level must be in (0, 1), got {self.ci_level}")
        if self.bootstrap < 0:
            raise ProbeError("bootstrap must be >= 0 (0 disables intervals)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ProbeError("batch_size must be >= 1 or None (full batch)")
        if not 0.0 <= self.dropout < 1.0:
            raise ProbeError(f"dropout must be in [0, 1), got {self.dropout}")

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["heads"], d["seeds"] = list(self.heads), list(self.seeds)
        return d


@dataclasses.dataclass
class ProbePredictions:
    """Test-split predictions of one probe, all seeds: what paired tests need.

    ids: test item ids ``[n]``; y_true: task targets of those items; scores: task scores
    ``[n_seeds, n, n_classes]``; classes: the output classes; seeds: the seeds, in order.
    """

    task: str
    ids: list[str]
    y_true: np.ndarray
    scores: np.ndarray
    classes: list
    seeds: tuple[int, ...]

    def metric_values(self, task, weights: np.ndarray | None = None) -> dict[str, Any]:
        """Seed-mean of every metric (floats, or ``[n_boot]`` arrays for stacked weights)."""
        per_seed = [task.metrics(self.y_true, s, self.classes, weights) for s in self.scores]
        return {name: np.mean([m[name] for m in per_seed], axis=0) for name in task.metric_names}

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` (ids, targets, scores; classes and seeds as JSON)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, ids=np.asarray(self.ids, dtype=str), y_true=self.y_true,
                            scores=self.scores, meta=np.asarray(json.dumps(
                                {"task": self.task, "classes": list(self.classes), "seeds": list(self.seeds)})))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "ProbePredictions":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(task=meta["task"], ids=[str(i) for i in z["ids"]], y_true=z["y_true"],
                       scores=z["scores"], classes=meta["classes"], seeds=tuple(meta["seeds"]))


@dataclasses.dataclass
class ProbeOutcome:
    """Everything one ``run_probe`` call produced (see module docstring)."""

    task: Any
    head: str
    pooling: str
    rows: list[dict[str, Any]]
    per_seed: list[dict[str, Any]]
    test_item_scores: ProbePredictions
    standardizer: Standardizer
    classes: list
    settings: dict[str, Any]

    def value(self, metric: str) -> float:
        for row in self.rows:
            if row["metric"] == metric:
                return row["value"]
        raise KeyError(f"no metric {metric!r}; have {[r['metric'] for r in self.rows]}")


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: Factory of the downstream-task registry, imported by path only when a task is named, so
#: that the probe engine imports no task module.
TASK_FACTORY = "tasks:create_task"


def create_task(name: str, **options: Any):
    """Task ``name`` (registry name or ``"module:Class"``) from the task registry
    (:data:`TASK_FACTORY`, resolved lazily)."""
    from benchmark.lazy import resolve
    return resolve({}, TASK_FACTORY, "task registry", ProbeError)(name, **options)


def _resolve_task(task):
    return create_task(task) if isinstance(task, str) else task


def _split(items: Sequence[Item], task_name: str) -> dict[str, list[Item]]:
    splits = {s: [it for it in items if it.split == s] for s in ("train", "valid", "test")}
    empty = [s for s, v in splits.items() if not v]
    if empty:
        raise ProbeError(
            f"{task_name}: no labelled items in split(s) {empty} (have "
            f"{ {s: len(v) for s, v in splits.items()} }); the probe needs train, valid and "
            "test items - use a dataset/loader option that provides all three splits")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise ProbeError(f"{task_name}: duplicate item ids; dataset ids must be unique")
    return splits


def run_probe(task, embeddings: Mapping[str, np.ndarray], items: Sequence[Item], head: str,
              config: ProbeConfig | None = None) -> ProbeOutcome:
    """Probe ``task`` with head ``head`` on frozen ``embeddings``.

    Parameters
    ----------
    task: a :class:`tasks.base.Task` or a registry name.
    embeddings: item id -> ``[dim, frames]`` (pooled here) or an already pooled ``[dim]``.
    items: dataset items; those carrying the task's label are used, by their ``split``.
    head: a :data:`benchmark.probes.heads.HEADS` name.
    config: protocol settings (defaults: :class:`ProbeConfig`).
    """
    config = config or ProbeConfig()
    task = _resolve_task(task)
    if head not in HEADS:
        raise ProbeError(f"unknown probe head {head!r}; known: {sorted(HEADS)}")
    labelled = task.select(items)
    splits = _split(labelled, task.name)
    missing = [it.id for it in labelled if it.id not in embeddings]
    if missing:
        raise PoolingError(f"{task.name}: {len(missing)} of {len(labelled)} labelled items have no embedding, "
                           f"e.g. {missing[:5]}; re-run the embedding stage for this dataset")
    classes = task.classes(labelled)
    y = {s: task.targets(v, classes) for s, v in splits.items()}
    x_raw, pooling = {}, config.pooling
    for s, v in splits.items():
        x_raw[s], pooling = pooled_matrix(embeddings, [it.id for it in v], config.pooling)
    standardizer = Standardizer.fit(x_raw["train"])
    x = {s: standardizer.transform(v) for s, v in x_raw.items()}

    per_seed, seed_metrics, seed_scores = [], [], []
    with _torch_threads(config.num_threads):
        for seed in config.seeds:
            trained = train_probe(
                task, head, x["train"], y["train"], x["valid"], y["valid"], classes, seed,
                lr=config.lr, weight_decay=config.weight_decay, max_epochs=config.max_epochs,
                patience=config.patience, batch_size=config.batch_size, hidden=config.hidden,
                dropout=config.dropout, min_delta=config.min_delta, device=config.device)
            scores = predict_scores(task, trained.model, x["test"], config.device)  # the one test pass
            metrics = task.metrics(y["test"], scores, classes)
            seed_scores.append(scores)
            seed_metrics.append(metrics)
            for name in task.metric_names:
                per_seed.append({"task": task.name, "metric": name, "value": float(metrics[name]),
                                 "seed": seed, "head": head, "pooling": pooling,
                                 "best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run,
                                 "selection": trained.selection, "valid_criterion": trained.best_valid,
                                 "train_time_s": round(trained.train_time_s, 3)})

    predictions = ProbePredictions(task=task.name, ids=[it.id for it in splits["test"]], y_true=y["test"],
                                  scores=np.stack(seed_scores), classes=list(classes), seeds=config.seeds)
    boot = {}
    if config.bootstrap > 0:
        w = bootstrap_weights(len(splits["test"]), config.bootstrap, config.bootstrap_seed)
        boot = predictions.metric_values(task, w)

    bookkeeping = {k: v for k, v in seed_metrics[0].items() if k not in task.metric_names}
    base = {"task": task.name, "head": head, "pooling": pooling, "seeds": list(config.seeds),
            "n_train": len(splits["train"]), "n_valid": len(splits["valid"]), "n_test": len(splits["test"]),
            "n_classes": len(classes), "feature_dim": int(x["train"].shape[1]),
            "ci_level": config.ci_level, "n_boot": config.bootstrap, "probe_version": PROBE_VERSION,
            **{k: v for k, v in task.card().items() if k in ("convention", "task_version", "implementation")},
            **bookkeeping}
    rows = []
    for name in task.metric_names:
        values = np.array([m[name] for m in seed_metrics], dtype=np.float64)
        lo, hi = percentile_interval(boot[name], config.ci_level) if boot else (math.nan, math.nan)
        rows.append({**base, "metric": name, "value": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                     "ci_low": lo, "ci_high": hi, "primary": name == task.primary_metric,
                     "higher_is_better": True})
    settings = {"config": config.as_dict(), "task_card": task.card(), "pooling_applied": pooling,
                "ci_method": "percentile bootstrap over test items of the seed-mean"}
    return ProbeOutcome(task=task, head=head, pooling=pooling, rows=rows, per_seed=per_seed,
                        test_item_scores=predictions, standardizer=standardizer, classes=list(classes),
                        settings=settings)


def run_probes(task, embeddings: Mapping[str, np.ndarray], items: Sequence[Item],
               config: ProbeConfig | None = None) -> list[ProbeOutcome]:
    """:func:`run_probe` for every head in ``config.heads``."""
    config = config or ProbeConfig()
    task = _resolve_task(task)
    return [run_probe(task, embeddings, items, head, config) for head in config.heads]


def _predictions(obj) -> tuple[ProbePredictions, Any]:
    if isinstance(obj, ProbeOutcome):
        return obj.test_item_scores, obj.task
    if isinstance(obj, ProbePredictions):
        return obj, None
    raise TypeError(f"paired_test takes ProbeOutcome or ProbePredictions, got {type(obj).__name__}")


def paired_test(outcome_a, outcome_b, metric: str, *, method: str = "bootstrap", n_boot: int = 1000,
                level: float = 0.95, seed: int = 0, task=None) -> dict[str, Any]:
    """Paired test of ``metric(a) - metric(b)`` on the same test items (two codecs, one task).

    ``outcome_a``/``outcome_b``: :class:`ProbeOutcome` or :class:`ProbePredictions` (e.g.
    loaded from the results store). Values are seed-means, as in the result rows.

    method: ``"bootstrap"`` (paired bootstrap: interval + centred-null p-value, vectorised)
        or ``"permutation"`` (per-item swap of the two systems' outputs; p-value only, the
        interval still comes from the paired bootstrap).

    Returns ``{"delta", "p_value", "ci_low", "ci_high", "value_a", "value_b", "n_items",
    "metric", "method", ...}``.
    """
    pa, task_a = _predictions(outcome_a)
    pb, task_b = _predictions(outcome_b)
    task = _resolve_task(task or task_a or task_b or pa.task)
    if pa.task != pb.task or pa.task != task.name:
        raise ProbeError(f"paired_test: outcomes are for tasks {pa.task!r} and {pb.task!r}")
    if metric not in task.metric_names:
        raise ProbeError(f"paired_test: {task.name} has no metric {metric!r}; have {task.metric_names}")
    if list(pa.classes) != list(pb.classes):
        raise ProbeError("paired_test: the two probes have different class lists; probe both on the same items")
    if sorted(pa.ids) != sorted(pb.ids):
        common = len(set(pa.ids) & set(pb.ids))
        raise ProbeError(f"paired_test: test items differ ({len(pa.ids)} vs {len(pb.ids)}, {common} in "
                         "common); a paired test needs both codecs probed on the same test items")
    order = {i: k for k, i in enumerate(pb.ids)}
    perm = np.array([order[i] for i in pa.ids])
    if not np.array_equal(np.asarray(pb.y_true)[perm], np.asarray(pa.y_true)):
        raise ProbeError("paired_test: the same item ids carry different targets in the two outcomes")
    scores_b = pb.scores[:, perm]

    def m_a(w):
        return pa.metric_values(task, w)[metric]

    def m_b(w):
        per_seed = [task.metrics(pa.y_true, s, pa.classes, w)[metric] for s in scores_b]
        return np.mean(per_seed, axis=0)

    n = len(pa.ids)
    result = paired_bootstrap(m_a, m_b, n, n_boot=n_boot, level=level, seed=seed)
    if method == "permutation":
        def seed_mean(scores):
            return float(np.mean([task.metrics(pa.y_true, s, pa.classes)[metric] for s in scores]))
        perm_result = paired_permutation(pa.scores, scores_b, seed_mean, n_perm=n_boot, seed=seed)
        result.update(p_value=perm_result["p_value"], method="paired permutation (p), paired bootstrap (CI)")
    elif method != "bootstrap":
        raise ProbeError(f"paired_test: unknown method {method!r}; use 'bootstrap' or 'permutation'")
    result.update(metric=metric, task=task.name, value_a=float(m_a(None)), value_b=float(m_b(None)),
                  ci_level=level)
    return result
