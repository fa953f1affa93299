"""Music auto-tagging (multi-label): macro ROC-AUC and macro PR-AUC.

Label field: ``tags`` (tuple of tag strings). Classes: the sorted union of tags over all items,
or the ``top_k`` most frequent tags in the train split.

Metrics (both macro averages over tags, higher is better)
-------------------------------------------------------
- ``roc_auc_macro``: area under the ROC curve per tag (Mann-Whitney statistic; tied scores
  count one half), averaged over tags.
- ``pr_auc_macro``: average precision per tag, ``AP = sum_k (R_k - R_{k-1}) P_k`` over
  descending score thresholds, tied scores forming one threshold, no interpolation (the
  definition of ``sklearn.metrics.average_precision_score``), averaged over tags.

A tag without a positive (or without a negative) item in the evaluated set has no defined
ROC-AUC/AP: it is skipped, and ``n_classes_scored`` / ``n_classes_skipped`` say how many
tags entered the average. Under bootstrap weights a tag whose positives were all drawn zero
times is skipped in that replicate only.

Both functions take item weights (see :mod:`tasks.base`), which makes bootstrap replicates
exact and vectorised: the scores are sorted once per tag, then every replicate is a
weighted cumulative sum over the same order.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from benchmark.data.dataset import Item
from tasks.base import MultilabelTask, TaskError, weight_matrix


def _grouped(y_true_c: np.ndarray, score_c: np.ndarray, w: np.ndarray, descending: bool):
    """Per distinct score (sorted), weighted positive and negative mass ``[n_boot, n_groups]``."""
    order = np.argsort(-score_c if descending else score_c, kind="mergesort")
    s = score_c[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(s) != 0) + 1))
    pos = y_true_c[order] > 0.5
    wo = w[:, order]
    p = np.add.reduceat(wo * pos, starts, axis=1)
    q = np.add.reduceat(wo * ~pos, starts, axis=1)
    return p, q


def roc_auc_per_class(y_true: np.ndarray, y_score: np.ndarray,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """ROC-AUC per class, ``[n_classes]`` (or ``[n_boot, n_classes]`` for stacked weights).

    NaN where a class has no positive or no negative (weighted) item.
    """
    y_true, y_score = np.asarray(y_true, dtype=np.float64), np.asarray(y_score, dtype=np.float64)
    w, single = weight_matrix(weights, y_true.shape[0])
    out = np.full((w.shape[0], y_true.shape[1]), np.nan)
    for c in range(y_true.shape[1]):
        p, q = _grouped(y_true[:, c], y_score[:, c], w, descending=False)
        neg_below = np.cumsum(q, axis=1) - q
        num = (p * (neg_below + 0.5 * q)).sum(axis=1)
        den = p.sum(axis=1) * q.sum(axis=1)
        np.divide(num, den, out=out[:, c], where=den > 0)
    return out[0] if single else out


def average_precision_per_class(y_true: np.ndarray, y_score: np.ndarray,
                                weights: np.ndarray | None = None) -> np.ndarray:
    """Average precision per class, ``[n_classes]`` (or ``[n_boot, n_classes]``).

    NaN where a class has no positive (weighted) item; a class without negatives scores 1.
    """
    y_true, y_score = np.asarray(y_true, dtype=np.float64), np.asarray(y_score, dtype=np.float64)
    w, single = weight_matrix(weights, y_true.shape[0])
    out = np.full((w.shape[0], y_true.shape[1]), np.nan)
    for c in range(y_true.shape[1]):
        p, q = _grouped(y_true[:, c], y_score[:, c], w, descending=True)
        tp, fp = np.cumsum(p, axis=1), np.cumsum(q, axis=1)
        precision = np.zeros_like(tp)
        np.divide(tp, tp + fp, out=precision, where=(tp + fp) > 0)
        total = p.sum(axis=1)
        np.divide((precision * p).sum(axis=1), total, out=out[:, c], where=total > 0)
    return out[0] if single else out


def scored_classes(y_true: np.ndarray) -> np.ndarray:
    """Boolean ``[n_classes]``: classes with at least one positive and one negative item."""
    y_true = np.asarray(y_true) > 0.5
    return y_true.any(axis=0) & (~y_true).any(axis=0)


def _macro(per_class: np.ndarray, keep: np.ndarray) -> float | np.ndarray:
    """Mean over the kept classes, ignoring NaN (classes undefined in a bootstrap replicate)."""
    values = per_class[..., keep]
    if values.shape[-1] == 0:
        return np.nan if values.ndim == 1 else np.full(values.shape[0], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate -> NaN, no warning
        m = np.nanmean(values, axis=-1)
    return float(m) if np.ndim(m) == 0 else m


class TaggingTask(MultilabelTask):
    """Multi-label auto-tagging on the ``tags`` label.

    Parameters
    ----------
    top_k: keep only the ``top_k`` most frequent tags of the train split (ties broken by
        name); ``None`` keeps every tag seen in any split.
    """

    name = "tagging"
    label_field = "tags"
    metric_names = ("roc_auc_macro", "pr_auc_macro")
    primary_metric = "roc_auc_macro"
    convention = ("macro over tags with >=1 positive and >=1 negative test item; "
                  "ROC-AUC ties count 1/2; AP = sum (R_k - R_k-1) P_k, no interpolation")

    def __init__(self, top_k: int | None = None):
        if top_k is not None and top_k < 1:
            raise TaskError(f"tagging: top_k must be >= 1 or None, got {top_k}")
        self.top_k = top_k

    def classes(self, items: Sequence[Item]) -> list:
        if self.top_k is None:
            return super().classes(items)
        counts: dict[str, int] = {}
        for it in items:
            if it.split == "train" and self.label_field in it.labels:
                for t in self.labels_of(it):
                    counts[t] = counts.get(t, 0) + 1
        if not counts:
            raise TaskError("tagging: no train item carries tags; top_k needs a train split")
        ranked = sorted(counts, key=lambda t: (-counts[t], t))[: self.top_k]
        return sorted(ranked)

    def metrics(self, y_true: np.ndarray, y_score: np.ndarray, classes: Sequence,
                weights: np.ndarray | None = None) -> dict[str, Any]:
        y_true, y_score = self._check_scores(y_true, y_score, classes)
        if y_true.shape != y_score.shape:
            raise TaskError(f"tagging: y_true {y_true.shape} and y_score {y_score.shape} differ")
        keep = scored_classes(y_true)
        return {
            "roc_auc_macro": _macro(roc_auc_per_class(y_true, y_score, weights), keep),
            "pr_auc_macro": _macro(average_precision_per_class(y_true, y_score, weights), keep),
            "n_classes_scored": int(keep.sum()),
            "n_classes_skipped": int((~keep).sum()),
        }

    def card(self) -> dict[str, Any]:
        return {**super().card(), "top_k": self.top_k}
