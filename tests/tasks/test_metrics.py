"""Classification metrics on hand-computed cases, against scikit-learn, and under weights."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from tasks.base import TaskError, accuracy, balanced_accuracy, weighted_mean
from tasks.tagging import average_precision_per_class, roc_auc_per_class, scored_classes


def test_accuracy_hand_computed():
    y, p = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
    assert accuracy(y, p) == 0.75
    # weight 3 on the one error: (1 + 0 + 1 + 1) / 6
    assert accuracy(y, p, np.array([1, 3, 1, 1])) == pytest.approx(0.5)


def test_balanced_accuracy_hand_computed_and_sklearn():
    y, p = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    assert balanced_accuracy(y, p) == pytest.approx((2 / 3 + 1) / 2)
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 6, 200)  # 6th class never true
    with pytest.warns(UserWarning):
        ref = balanced_accuracy_score(y, p)
    assert balanced_accuracy(y, p) == pytest.approx(ref)


def test_weighted_mean_and_weight_validation():
    assert weighted_mean(np.array([1.0, 0.5, 0.0]), np.array([1, 2, 1])) == pytest.approx(0.5)
    with pytest.raises(TaskError, match="do not match"):
        accuracy(np.zeros(3), np.zeros(3), np.ones(4))
    with pytest.raises(TaskError, match="non-negative"):
        accuracy(np.zeros(3), np.zeros(3), -np.ones(3))


def test_roc_auc_and_ap_hand_computed():
    # the textbook case: 3 of the 4 positive/negative pairs are ordered right
    y = np.array([[0], [0], [1], [1]])
    s = np.array([[0.1], [0.4], [0.35], [0.8]])
    assert roc_auc_per_class(y, s)[0] == pytest.approx(0.75)
    # AP: thresholds 0.8 (P=1, R=.5), 0.4 (P=.5), 0.35 (P=2/3, R=1) -> .5*1 + .5*2/3
    assert average_precision_per_class(y, s)[0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a tie between a positive and a negative counts one half
    assert roc_auc_per_class(np.array([[0], [1]]), np.array([[0.5], [0.5]]))[0] == 0.5
    # perfect and reversed rankings
    assert roc_auc_per_class(y, np.array([[0], [1], [2], [3]]))[0] == 1.0
    assert roc_auc_per_class(y, np.array([[3], [2], [1], [0]]))[0] == 0.0


def test_undefined_classes_are_nan_and_counted():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    s = np.random.default_rng(0).random((3, 3))
    auc = roc_auc_per_class(y, s)
    assert np.isfinite(auc[0]) and np.isnan(auc[1]) and np.isnan(auc[2])
    ap = average_precision_per_class(y, s)
    assert np.isnan(ap[1]) and ap[2] == 1.0  # all-positive class: AP 1, but not scored
    assert scored_classes(y).tolist() == [True, False, False]


def test_rank_metrics_match_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 6)) < 0.3).astype(float)
    s = np.round(rng.random((300, 6)) + 0.4 * y, 1)  # many ties
    w = rng.integers(0, 4, 300).astype(float)
    for c in range(6):
        assert roc_auc_per_class(y, s, w)[c] == pytest.approx(
            roc_auc_score(y[:, c], s[:, c], sample_weight=w), abs=1e-12)
        assert average_precision_per_class(y, s, w)[c] == pytest.approx(
            average_precision_score(y[:, c], s[:, c], sample_weight=w), abs=1e-12)


def test_integer_weights_equal_resampling():
    """A bootstrap replicate as weights gives exactly the metric of the resampled set."""
    rng = np.random.default_rng(3)
    y = (rng.random((80, 4)) < 0.4).astype(float)
    s = np.round(rng.random((80, 4)), 2)
    idx = rng.integers(0, 80, 80)
    counts = np.bincount(idx, minlength=80)
    np.testing.assert_allclose(roc_auc_per_class(y[idx], s[idx]), roc_auc_per_class(y, s, counts), atol=1e-12)
    np.testing.assert_allclose(average_precision_per_class(y[idx], s[idx]),
                               average_precision_per_class(y, s, counts), atol=1e-12)
    yc, pc = rng.integers(0, 3, 80), rng.integers(0, 3, 80)
    assert accuracy(yc[idx], pc[idx]) == pytest.approx(accuracy(yc, pc, counts))
    assert balanced_accuracy(yc[idx], pc[idx]) == pytest.approx(balanced_accuracy(yc, pc, counts))


def test_weight_stacks_give_one_value_per_replicate():
    rng = np.random.default_rng(4)
    y = (rng.random((50, 3)) < 0.5).astype(float)
    s = rng.random((50, 3))
    w = rng.integers(0, 3, (7, 50)).astype(float)
    stacked = roc_auc_per_class(y, s, w)
    assert stacked.shape == (7, 3)
    np.testing.assert_allclose(stacked[5], roc_auc_per_class(y, s, w[5]))
    yc, pc = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    acc = accuracy(yc, pc, w)
    assert acc.shape == (7,) and acc[2] == pytest.approx(accuracy(yc, pc, w[2]))
