import numpy as np
import pytest

from benchmark.probes.stats import (bootstrap_interval, bootstrap_weights, paired_bootstrap, paired_permutation,
                                    percentile_interval)
from tasks.base import accuracy


def test_bootstrap_weights_are_resamples():
    w = bootstrap_weights(50, 200, seed=1)
    assert w.shape == (200, 50)
    assert (w.sum(axis=1) == 50).all() and (w >= 0).all()
    assert np.array_equal(w, bootstrap_weights(50, 200, seed=1))
    # each item is drawn once per replicate on average
    assert w.mean() == pytest.approx(1.0)


def test_percentile_interval_of_known_samples():
    lo, hi = percentile_interval(np.arange(1001, dtype=float), level=0.9)
    assert (lo, hi) == (pytest.approx(50.0), pytest.approx(950.0))
    assert np.isnan(percentile_interval(np.array([np.nan]))[0])


def _accuracy_metric(y, p):
    return lambda w: accuracy(y, p, w)


def test_ci_contains_point_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        y = rng.integers(0, 2, n)
        p = np.where(rng.random(n) < 0.8, y, 1 - y)  # 80 % accurate
        value, lo, hi = bootstrap_interval(_accuracy_metric(y, p), n, n_boot=1000, seed=0)
        assert lo <= value <= hi
        # close to the normal-approximation width 2 * 1.96 * sqrt(p (1 - p) / n)
        assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(value * (1 - value) / n), rel=0.2)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # 16x the items: about 4x narrower


def test_paired_tests_identical_systems_give_p_one():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.7, y, (y + 1) % 3)
    res = paired_bootstrap(_accuracy_metric(y, p), _accuracy_metric(y, p), 200, n_boot=500)
    assert res["delta"] == 0.0 and res["p_value"] == 1.0 and res["ci_low"] == res["ci_high"] == 0.0
    s = np.eye(3)[p]
    perm = paired_permutation(s, s.copy(), lambda sc: accuracy(y, sc.argmax(-1)), n_perm=200)
    assert perm["delta"] == 0.0 and perm["p_value"] == 1.0


def test_paired_tests_detect_a_real_gap():
    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 3, n)
    good = np.where(rng.random(n) < 0.85, y, (y + 1) % 3)
    bad = np.where(rng.random(n) < 0.55, y, (y + 2) % 3)
    res = paired_bootstrap(_accuracy_metric(y, good), _accuracy_metric(y, bad), n, n_boot=1000)
    assert res["delta"] == pytest.approx(accuracy(y, good) - accuracy(y, bad))
    assert res["delta"] > 0.2 and res["p_value"] < 0.01 and res["ci_low"] > 0
    perm = paired_permutation(np.eye(3)[good], np.eye(3)[bad], lambda sc: accuracy(y, sc.argmax(-1)), n_perm=500)
    assert perm["p_value"] < 0.01


def test_paired_bootstrap_is_calibrated_under_the_null():
    """Two independent systems of equal quality: p-values roughly uniform, ~5 % below 0.05."""
    p_values = []
    for seed in range(60):
        rng = np.random.default_rng(100 + seed)
        n = 300
        y = rng.integers(0, 3, n)
        a = np.where(rng.random(n) < 0.7, y, (y + 1) % 3)
        b = np.where(rng.random(n) < 0.7, y, (y + 1) % 3)
        res = paired_bootstrap(_accuracy_metric(y, a), _accuracy_metric(y, b), n, n_boot=400, seed=seed)
        assert res["ci_low"] <= res["delta"] <= res["ci_high"]
        p_values.append(res["p_value"])
    p_values = np.array(p_values)
    assert np.mean(p_values < 0.05) <= 0.15
    assert 0.3 < np.median(p_values) < 0.7
