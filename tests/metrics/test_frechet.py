"""Fréchet distance: closed forms for Gaussians, an independent sqrtm reference, invariances."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from benchmark.metrics.frechet import (
    frechet_distance,
    gaussian_stats,
    trace_sqrt_product,
)


def _random_spd(d: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d)


def test_one_dimensional_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0, abs=1e-12)


def test_commuting_covariances_closed_form():
    # common eigenvectors: d^2 = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a, b = rng.uniform(0.1, 5, 6), rng.uniform(0.1, 5, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_singular_covariances_closed_form():
    # rank-deficient (fewer samples than dims): exact, no NaN, no imaginary residue
    s1, s2 = np.diag([2.0, 0.0, 0.0]), np.diag([8.0, 0.0, 1.0])
    expected = (np.sqrt(2) - np.sqrt(8)) ** 2 + 1.0
    assert frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(expected, abs=1e-12)


def test_matches_independent_sqrtm_on_non_commuting_matrices():
    rng = np.random.default_rng(1)
    for d in (2, 5, 40):
        s1, s2 = _random_spd(d, rng), _random_spd(d, rng)
        reference = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
        assert trace_sqrt_product(s1, s2) == pytest.approx(reference, rel=1e-8)


def test_identity_symmetry_and_scaling():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    s1, s2 = _random_spd(8, rng), _random_spd(8, rng, rank=3)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-10)
    d12 = frechet_distance(mu1, s1, mu2, s2)
    # (rank-deficient s2: sqrt of round-off-sized eigenvalues limits agreement to ~1e-8)
    assert d12 == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-7)
    # W2 is homogeneous: scaling both distributions by c scales d^2 by c^2
    assert frechet_distance(3 * mu1, 9 * s1, 3 * mu2, 9 * s2) == pytest.approx(9 * d12, rel=1e-7)
    # translating both distributions changes nothing
    assert frechet_distance(mu1 + 5, s1, mu2 + 5, s2) == pytest.approx(d12, rel=1e-7)


def test_sample_estimate_converges_to_closed_form():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20000, 4))
    y = 2.0 * rng.standard_normal((20000, 4)) + np.array([1.0, 0.0, 0.0, 0.0])
    a, b = gaussian_stats(x), gaussian_stats(y)
    # closed form: |mu|^2 + 4 * (1 - 2)^2 = 1 + 4 = 5
    assert frechet_distance(a.mean, a.cov, b.mean, b.cov) == pytest.approx(5.0, abs=0.1)


def test_gaussian_stats_matches_numpy_and_validates():
    x = np.random.default_rng(4).standard_normal((50, 3))
    st = gaussian_stats(x)
    np.testing.assert_allclose(st.cov, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(st.mean, x.mean(0))
    assert st.n == 50 and st.dim == 3
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(x[:1])
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
