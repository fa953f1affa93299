"""Downstream task protocol and the classification metrics shared by several tasks.

A :class:`Task` turns dataset items into training targets and scores predictions. It knows
nothing about embeddings or probes: the probe engine (:mod:`benchmark.probes`) asks the task
for its classes, targets, loss and metrics, so that a new task is a new module plus one line
in :data:`tasks.TASKS`.

Conventions
-----------
- ``y_true``: multiclass ``[n]`` int class indices; multilabel ``[n, n_classes]`` {0, 1}.
- ``y_score``: ``[n, n_classes]`` float scores (probabilities from the probe; any monotone
  score works for the rank metrics). Multiclass predictions are ``argmax`` over classes.
- ``weights``: optional per-item weights, ``[n]`` or a stack ``[n_boot, n]`` (bootstrap counts
  from :func:`benchmark.probes.stats.bootstrap_weights`). A weight of k counts the item k
  times, so integer weights reproduce a resampled test set exactly. With a stack, every
  metric returns ``[n_boot]`` values instead of a float.
- Every metric is in [0, 1], higher is better, never negated.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import torch

from benchmark.data.dataset import Item
from benchmark.errors import BenchmarkError

MULTICLASS = "multiclass"
MULTILABEL = "multilabel"


class TaskError(BenchmarkError, ValueError):
    """Items or predictions that a task cannot use; the message names the item and the fix."""


# -- weights -------------------------------------------------------------------------------
def weight_matrix(weights: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    """Return weights as ``[n_boot, n]`` float64 and whether the input was a single vector."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=np.float64)
    single = w.ndim == 1
    w = np.atleast_2d(w)
    if w.ndim != 2 or w.shape[1] != n:
        raise TaskError(f"weights of shape {np.shape(weights)} do not match {n} items; "
                        "pass [n] or [n_boot, n]")
    if (w < 0).any():
        raise TaskError("weights must be non-negative")
    return w, single


def _finish(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# -- multiclass metrics --------------------------------------------------------------------
def accuracy(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Fraction of items whose predicted class index equals the true one (weighted)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    w, single = weight_matrix(weights, len(y_true))
    correct = (y_true == y_pred).astype(np.float64)
    return _finish(_safe_ratio(w @ correct, w.sum(axis=1)), single)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray,
                      weights: np.ndarray | None = None) -> float | np.ndarray:
    """Mean per-class recall over the classes present in ``y_true``.

    Same definition as ``sklearn.metrics.balanced_accuracy_score`` (no chance adjustment).
    Under bootstrap weights, a class drawn zero times is left out of that replicate's mean.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    w, single = weight_matrix(weights, len(y_true))
    correct = (y_true == y_pred).astype(np.float64)
    present = np.unique(y_true)
    recalls = np.empty((w.shape[0], len(present)))
    for j, k in enumerate(present):
        mask = y_true == k
        recalls[:, j] = _safe_ratio(w[:, mask] @ correct[mask], w[:, mask].sum(axis=1))
    with np.errstate(all="ignore"):
        values = np.nanmean(recalls, axis=1) if len(present) else np.full(w.shape[0], np.nan)
    return _finish(values, single)


def weighted_mean(per_item: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Weighted mean of a per-item score vector ``[n]``."""
    per_item = np.asarray(per_item, dtype=np.float64)
    w, single = weight_matrix(weights, len(per_item))
    return _finish(_safe_ratio(w @ per_item, w.sum(axis=1)), single)


# -- the protocol ----------------------------------------------------------------------------
class Task(abc.ABC):
    """A downstream task probed on frozen embeddings.

    Class attributes
    ----------------
    name: registry name (``tagging``, ``key``...).
    label_field: the :class:`Item` label it reads (see :mod:`benchmark.data.dataset`).
    kind: ``"multiclass"`` or ``"multilabel"``.
    metric_names: metrics reported with confidence intervals, in report order.
    primary_metric: the metric used to choose the probe checkpoint on the validation split.
    convention: one line stating conventions that change numbers (goes into result rows).
    version: bump when a metric's definition changes.
    """

    name: ClassVar[str]
    label_field: ClassVar[str]
    kind: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    convention: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    # items and targets
    def select(self, items: Iterable[Item]) -> list[Item]:
        """Items that carry this task's label."""
        return [it for it in items if self.label_field in it.labels]

    @abc.abstractmethod
    def classes(self, items: Sequence[Item]) -> list:
        """Class vocabulary (sorted, stable) for ``items``; index i is output unit i."""

    @abc.abstractmethod
    def targets(self, items: Sequence[Item], classes: Sequence) -> np.ndarray:
        """Targets for ``items``: ``[n]`` int64 (multiclass) or ``[n, n_classes]`` float32 (multilabel)."""

    @abc.abstractmethod
    def metrics(self, y_true: np.ndarray, y_score: np.ndarray, classes: Sequence,
                weights: np.ndarray | None = None) -> dict[str, Any]:
        """Every metric in :attr:`metric_names` (floats, or ``[n_boot]`` arrays for stacked
        weights), plus integer bookkeeping entries (e.g. how many classes were scored)."""

    # training
    @abc.abstractmethod
    def loss(self) -> torch.nn.Module:
        """Training loss on logits ``[batch, n_classes]`` and targets from :meth:`targets`."""

    @abc.abstractmethod
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Map logits ``[n, n_classes]`` to the scores the metrics expect (probabilities)."""

    def card(self) -> dict[str, Any]:
        """Provenance of the task's numbers: stored with every result row."""
        return {"task": self.name, "label_field": self.label_field, "kind": self.kind,
                "metrics": list(self.metric_names), "primary_metric": self.primary_metric,
                "convention": self.convention, "task_version": self.version}

    def _check_scores(self, y_true: np.ndarray, y_score: np.ndarray,
                      classes: Sequence) -> tuple[np.ndarray, np.ndarray]:
        y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
        if y_score.ndim != 2 or y_score.shape != (len(y_true), len(classes)):
            raise TaskError(f"{self.name}: y_score has shape {y_score.shape}, expected "
                            f"[{len(y_true)} items, {len(classes)} classes]")
        if not np.isfinite(y_score).all():
            raise TaskError(f"{self.name}: y_score contains NaN or inf; the probe diverged "
                            "(lower the learning rate)")
        return y_true, y_score


class MulticlassTask(Task):
    """Single-label classification: cross-entropy on logits, argmax prediction."""

    kind = MULTICLASS

    def label_of(self, item: Item) -> Any:
        """The item's class label (override to normalise spellings)."""
        return item.labels[self.label_field]

    def classes(self, items: Sequence[Item]) -> list:
        labels = {self.label_of(it) for it in items if self.label_field in it.labels}
        if not labels:
            raise TaskError(f"{self.name}: no item carries a {self.label_field!r} label; "
                            "use a dataset that provides it")
        return sorted(labels)

    def targets(self, items: Sequence[Item], classes: Sequence) -> np.ndarray:
        index = {c: i for i, c in enumerate(classes)}
        out = np.empty(len(items), dtype=np.int64)
        for n, it in enumerate(items):
            if self.label_field not in it.labels:
                raise TaskError(f"{self.name}: item {it.id!r} has no {self.label_field!r} label")
            label = self.label_of(it)
            if label not in index:
                raise TaskError(f"{self.name}: item {it.id!r} has label {label!r}, which is not "
                                f"among the {len(classes)} classes; build classes from all items")
            out[n] = index[label]
        return out

    def loss(self) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss()

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)


class MultilabelTask(Task):
    """Multi-label classification: one sigmoid per class, binary cross-entropy."""

    kind = MULTILABEL

    def labels_of(self, item: Item) -> tuple:
        return tuple(item.labels[self.label_field])

    def classes(self, items: Sequence[Item]) -> list:
        labels = {t for it in items if self.label_field in it.labels for t in self.labels_of(it)}
        if not labels:
            raise TaskError(f"{self.name}: no item carries a non-empty {self.label_field!r} label")
        return sorted(labels)

    def targets(self, items: Sequence[Item], classes: Sequence) -> np.ndarray:
        index = {c: i for i, c in enumerate(classes)}
        out = np.zeros((len(items), len(classes)), dtype=np.float32)
        for n, it in enumerate(items):
            if self.label_field not in it.labels:
                raise TaskError(f"{self.name}: item {it.id!r} has no {self.label_field!r} label")
            for t in self.labels_of(it):
                if t in index:  # tags outside the vocabulary (e.g. below top-k) are dropped
                    out[n, index[t]] = 1.0
        return out

    def loss(self) -> torch.nn.Module:
        return torch.nn.BCEWithLogitsLoss()

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)
