"""Task classes: registry, classes/targets, metric dictionaries, key scoring convention."""

from pathlib import Path

import mir_eval
import numpy as np
import pytest

from benchmark.data.canonical import KEY_LABELS, canonical_key
from benchmark.data.dataset import Item
from tasks import TASKS, available_tasks, create_task
from tasks.base import MULTICLASS, MULTILABEL, Task, TaskError
from tasks.key import KeyTask, key_weighted_scores, weighted_score_matrix


def item(i, split="train", **labels):
    return Item(id=f"it{i}", path=Path(f"/x/{i}.wav"), split=split, labels=labels)


def test_registry_creates_every_task_and_reports_its_card():
    assert available_tasks() == sorted(["tagging", "key", "instrument", "pitch"])
    for name in TASKS:
        task = create_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task.kind in (MULTICLASS, MULTILABEL)
        assert task.primary_metric in task.metric_names
        assert task.card()["task"] == name
    assert create_task("tasks.pitch:PitchTask").name == "pitch"
    assert create_task("tagging", top_k=3).top_k == 3


def test_registry_errors_name_the_problem():
    with pytest.raises(TaskError, match="unknown task 'genre'"):
        create_task("genre")
    with pytest.raises(TaskError, match="cannot import"):
        create_task("no_such_module:Task")
    with pytest.raises(TaskError, match="not a tasks.base.Task"):
        create_task("numpy:ndarray")


def test_multiclass_classes_and_targets():
    task = create_task("instrument")
    items = [item(0, instrument="flute"), item(1, instrument="brass"), item(2, "test", instrument="flute"),
             item(3)]
    assert task.select(items) == items[:3]
    classes = task.classes(items)
    assert classes == ["brass", "flute"]
    assert task.targets(items[:3], classes).tolist() == [1, 0, 1]
    with pytest.raises(TaskError, match="it9.*'organ'"):
        task.targets([item(9, instrument="organ")], classes)
    with pytest.raises(TaskError, match="no item carries"):
        task.classes([item(3)])


def test_multilabel_targets_and_top_k_from_train_only():
    task = create_task("tagging")
    items = [item(0, tags=("rock", "guitar")), item(1, tags=("rock",)), item(2, "test", tags=("jazz",)),
             item(3, tags=())]
    classes = task.classes(items)
    assert classes == ["guitar", "jazz", "rock"]
    np.testing.assert_array_equal(task.targets(items, classes),
                                  [[1, 0, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0]])
    top = create_task("tagging", top_k=1)
    assert top.classes(items) == ["rock"]  # jazz only occurs in test: never counted
    assert top.targets(items, ["rock"]).tolist() == [[1], [1], [0], [0]]


def test_tagging_metrics_skip_and_count_classes_without_positives():
    task = create_task("tagging")
    y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.2], [0.2, 0.5, 0.7], [0.6, 0.3, 0.1], [0.4, 0.2, 0.8]])
    m = task.metrics(y, s, ["a", "b", "c"])
    assert m["n_classes_scored"] == 2 and m["n_classes_skipped"] == 1
    # class a: positives 0.9, 0.6 vs negatives 0.2, 0.4 -> 1.0; class c: 0.7, 0.8 vs 0.2, 0.1 -> 1.0
    assert m["roc_auc_macro"] == 1.0 and m["pr_auc_macro"] == 1.0
    s[0, 0] = 0.3  # one positive of class a now ranks below negative 0.4: AUC_a = 3/4
    assert task.metrics(y, s, ["a", "b", "c"])["roc_auc_macro"] == pytest.approx((0.75 + 1.0) / 2)


def test_scores_shape_and_finiteness_are_checked():
    task = create_task("instrument")
    with pytest.raises(TaskError, match="expected \\[3 items, 2 classes\\]"):
        task.metrics(np.zeros(3, int), np.zeros((3, 4)), ["a", "b"])
    with pytest.raises(TaskError, match="NaN"):
        task.metrics(np.zeros(2, int), np.array([[np.nan, 0.0], [0.0, 1.0]]), ["a", "b"])


def test_pitch_metrics_count_octave_errors_as_pitch_class_hits():
    task = create_task("pitch")
    classes = [48, 60, 62]
    y = np.array([1, 1, 2, 0])  # true 60, 60, 62, 48
    s = np.eye(3)[[1, 0, 1, 1]]  # predicted 60, 48 (octave error), 60, 60 (octave error)
    m = task.metrics(y, s, classes)
    assert m["accuracy"] == 0.25
    assert m["pitch_class_accuracy"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((0 + 0.5 + 0) / 3)
    with pytest.raises(TaskError, match="expected an int"):
        task.label_of(item(0, pitch=60.5))


def test_canonical_key_spellings():
    assert canonical_key("A# minor") == canonical_key("Bb minor") == canonical_key("bb min") == "Bb minor"
    assert canonical_key("F#:maj") == "F# major" and canonical_key("Gb major") == "F# major"
    assert canonical_key("C major") == "C major"
    for bad in ["-", "x", "C minor / F# minor", "G minor/major", "A-A# minor", "D dorian", ""]:
        assert canonical_key(bad) is None, bad
    assert len(set(KEY_LABELS)) == 24


def test_weighted_score_follows_mirex_2017_rule():
    m = weighted_score_matrix()
    idx = {k: i for i, k in enumerate(KEY_LABELS)}
    assert m[idx["C major"], idx["C major"]] == 1.0
    assert m[idx["C major"], idx["G major"]] == 0.5   # fifth above
    assert m[idx["C major"], idx["F major"]] == 0.5   # fifth below (the 2017 rule)
    assert m[idx["C major"], idx["A minor"]] == 0.3   # relative minor
    assert m[idx["A minor"], idx["C major"]] == 0.3   # relative major
    assert m[idx["C major"], idx["C minor"]] == 0.2   # parallel
    assert m[idx["A minor"], idx["D minor"]] == 0.5 and m[idx["A minor"], idx["E minor"]] == 0.5
    assert m[idx["C major"], idx["D major"]] == 0.0 and m[idx["C major"], idx["E minor"]] == 0.0
    # every other pair is exactly mir_eval's value
    for i, ref in enumerate(KEY_LABELS):
        for j, est in enumerate(KEY_LABELS):
            r, e = ref.split(), est.split()
            descending = r[1] == e[1] and (j - i) % 12 == 5 and i // 12 == j // 12
            if not descending:
                assert m[i, j] == mir_eval.key.weighted_score(ref, est), (ref, est)


def test_key_task_metrics_and_label_normalisation():
    task = KeyTask()
    items = [item(0, key="A# minor"), item(1, key="Bb minor"), item(2, key="C major")]
    classes = task.classes(items)
    assert classes == list(KEY_LABELS)
    y = task.targets(items, classes)
    assert y[0] == y[1] == KEY_LABELS.index("Bb minor")
    pred = np.array([KEY_LABELS.index(k) for k in ["Bb minor", "F minor", "G major"]])
    m = task.metrics(y, np.eye(24)[pred], classes)
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["weighted_score"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    np.testing.assert_allclose(key_weighted_scores(["A# minor", "C major"], ["Db major", "F major"]), [0.3, 0.5])
    with pytest.raises(TaskError, match="it7.*drop it"):
        task.classes([item(7, key="C minor / F# minor")])
