"""Instrument (family) recognition from single notes or excerpts (multiclass).

Label field: ``instrument`` (a string: an NSynth family such as ``"brass"``, a TinySOL
instrument such as ``"Violin"``). Classes: the sorted set of labels over all items, so that
train, valid and test share one output layer.

Metrics
-------
- ``accuracy``: fraction of items whose argmax class is right.
- ``balanced_accuracy``: mean recall over the classes present in the evaluated set (no chance
  adjustment; ``sklearn.metrics.balanced_accuracy_score``). Chance level is ``1 / n_classes``
  for both when predictions ignore the input.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tasks.base import MulticlassTask, accuracy, balanced_accuracy


class InstrumentTask(MulticlassTask):
    name = "instrument"
    label_field = "instrument"
    metric_names = ("accuracy", "balanced_accuracy")
    primary_metric = "accuracy"
    convention = "argmax over classes seen in any split; balanced accuracy = mean recall over test classes"

    def metrics(self, y_true: np.ndarray, y_score: np.ndarray, classes: Sequence,
                weights: np.ndarray | None = None) -> dict[str, Any]:
        y_true, y_score = self._check_scores(y_true, y_score, classes)
        y_pred = y_score.argmax(axis=1)
        return {"accuracy": accuracy(y_true, y_pred, weights),
                "balanced_accuracy": balanced_accuracy(y_true, y_pred, weights),
                "n_classes_test": int(len(np.unique(y_true)))}
