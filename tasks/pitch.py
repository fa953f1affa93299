"""Pitch estimation of single notes, as classification over MIDI note numbers.

Label field: ``pitch`` (int MIDI note number, 60 = C4). Classes: the sorted set of pitches over
all items (NSynth's standard probe keeps 21..108, the piano range; the loader applies it).

Metrics
-------
- ``accuracy``: exact MIDI note.
- ``balanced_accuracy``: mean recall over the pitches present in the evaluated set.
- ``pitch_class_accuracy``: right pitch class, octave ignored (like mir_eval's raw chroma
  accuracy); the gap to ``accuracy`` measures octave errors.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from benchmark.data.dataset import Item
from tasks.base import MulticlassTask, TaskError, accuracy, balanced_accuracy


class PitchTask(MulticlassTask):
    name = "pitch"
    label_field = "pitch"
    metric_names = ("accuracy", "balanced_accuracy", "pitch_class_accuracy")
    primary_metric = "accuracy"
    convention = "classes = MIDI notes seen in any split; pitch-class accuracy ignores the octave"

    def label_of(self, item: Item) -> int:
        value = item.labels[self.label_field]
        if isinstance(value, bool) or not float(value).is_integer():
            raise TaskError(f"pitch: item {item.id!r} has pitch {value!r}; expected an int MIDI note")
        return int(value)

    def metrics(self, y_true: np.ndarray, y_score: np.ndarray, classes: Sequence,
                weights: np.ndarray | None = None) -> dict[str, Any]:
        y_true, y_score = self._check_scores(y_true, y_score, classes)
        y_pred = y_score.argmax(axis=1)
        midi = np.asarray(classes, dtype=np.int64)
        return {"accuracy": accuracy(y_true, y_pred, weights),
                "balanced_accuracy": balanced_accuracy(y_true, y_pred, weights),
                "pitch_class_accuracy": accuracy(midi[y_true] % 12, midi[y_pred] % 12, weights),
                "n_classes_test": int(len(np.unique(y_true)))}
