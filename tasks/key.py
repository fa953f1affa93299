"""Global key estimation (24 classes: 12 tonics x major/minor).

Label field: ``key``, any spelling :func:`benchmark.data.canonical.canonical_key` reads
(``"F# minor"``, ``"Gb minor"``, ``"f# min"``); enharmonic spellings are one class. The class
list is fixed (:data:`benchmark.data.canonical.KEY_LABELS`), whatever keys the items carry.

Metrics
-------
- ``accuracy``: exact key and mode.
- ``weighted_score``: the MIREX weighted score with the rule used by MIREX since 2017
  (convention 2 of the house style): 1 for the same key, 0.5 for the same mode a perfect
  fifth *above or below* the reference, 0.3 relative major/minor, 0.2 parallel major/minor,
  0 otherwise.

The per-pair scores come from ``mir_eval.key.weighted_score(ref, est,
allow_descending_fifths=True)``. mir_eval releases up to 0.8.2 lack that argument and score
only the ascending fifth (the pre-2017 rule); with those versions the descending fifth
(``est - ref = 5`` semitones, same mode) is set to 0.5 and every other pair is mir_eval's own
value. :data:`WEIGHTED_SCORE_IMPLEMENTATION` records which path was taken.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import numpy as np

from benchmark.data.canonical import KEY_LABELS, canonical_key, tonic_semitone
from benchmark.data.dataset import Item
from tasks.base import MulticlassTask, TaskError, accuracy, weighted_mean


def _mir_eval_has_descending_fifths() -> bool:
    import mir_eval.key
    return "allow_descending_fifths" in inspect.signature(mir_eval.key.weighted_score).parameters


@functools.lru_cache(maxsize=1)
def weighted_score_matrix() -> np.ndarray:
    """``[24, 24]`` MIREX (2017+) weighted score, ``[reference, estimate]`` in :data:`KEY_LABELS` order."""
    import mir_eval.key

    native = _mir_eval_has_descending_fifths()
    m = np.zeros((len(KEY_LABELS), len(KEY_LABELS)))
    for i, ref in enumerate(KEY_LABELS):
        for j, est in enumerate(KEY_LABELS):
            if native:
                m[i, j] = mir_eval.key.weighted_score(ref, est, allow_descending_fifths=True)
                continue
            m[i, j] = mir_eval.key.weighted_score(ref, est)
            (rt, rm), (et, em) = ref.split(), est.split()
            if rm == em and (tonic_semitone(et) - tonic_semitone(rt)) % 12 == 5:
                m[i, j] = 0.5  # descending fifth: MIREX rule since 2017
    m.setflags(write=False)
    return m


def _implementation() -> str:
    try:
        import mir_eval
        version = mir_eval.__version__
        if _mir_eval_has_descending_fifths():
            return f"mir_eval {version} weighted_score(allow_descending_fifths=True)"
        return f"mir_eval {version} weighted_score + descending fifth = 0.5 (MIREX 2017 rule)"
    except ImportError:  # pragma: no cover - mir_eval is a hard dependency
        return "unavailable"


WEIGHTED_SCORE_IMPLEMENTATION = _implementation()


def key_weighted_scores(ref: Sequence[str], est: Sequence[str]) -> np.ndarray:
    """Per-item MIREX weighted score ``[n]`` for key strings in any spelling."""
    index = {k: i for i, k in enumerate(KEY_LABELS)}
    m = weighted_score_matrix()
    out = np.empty(len(ref))
    for n, (r, e) in enumerate(zip(ref, est, strict=True)):
        rc, ec = canonical_key(r), canonical_key(e)
        if rc is None or ec is None:
            raise TaskError(f"key: cannot read key {r if rc is None else e!r}; expected e.g. 'F# minor'")
        out[n] = m[index[rc], index[ec]]
    return out


class KeyTask(MulticlassTask):
    """24-way key classification with accuracy and the MIREX weighted score."""

    name = "key"
    label_field = "key"
    metric_names = ("weighted_score", "accuracy")
    primary_metric = "weighted_score"
    convention = "24 keys, enharmonics merged; MIREX weighted score with descending fifths = 0.5 (2017+ rule)"

    def label_of(self, item: Item) -> str:
        key = canonical_key(str(item.labels[self.label_field]))
        if key is None:
            raise TaskError(f"key: item {item.id!r} has key {item.labels[self.label_field]!r}, which "
                            "is not one major/minor key; drop it in the dataset loader")
        return key

    def classes(self, items: Sequence[Item]) -> list:
        for it in items:  # validate every label early, with the item's name
            if self.label_field in it.labels:
                self.label_of(it)
        return list(KEY_LABELS)

    def metrics(self, y_true: np.ndarray, y_score: np.ndarray, classes: Sequence,
                weights: np.ndarray | None = None) -> dict[str, Any]:
        y_true, y_score = self._check_scores(y_true, y_score, classes)
        if list(classes) != list(KEY_LABELS):
            raise TaskError("key: classes must be KEY_LABELS (use KeyTask.classes)")
        y_pred = y_score.argmax(axis=1)
        per_item = weighted_score_matrix()[y_true, y_pred]
        return {"weighted_score": weighted_mean(per_item, weights),
                "accuracy": accuracy(y_true, y_pred, weights)}

    def card(self) -> dict[str, Any]:
        return {**super().card(), "implementation": WEIGHTED_SCORE_IMPLEMENTATION}
